#!/usr/bin/env bash
# The GPU suite, in one call on the GPU machine (device `run`), from the repository root, over the bundles that
# scripts/device/bundle.sh prepared here (.device-bundle*/bin, .device-bundle*/lib):
#   1. nvidia-smi header (clocks, power, temperature as found: never changed)
#   2. every GPU test binary found (.device-bundle*/bin/test_gpu_*), optionally under compute-sanitizer
#   3. every benchmark binary found (.device-bundle*/bin/bench_*): micro-benchmarks and end-to-end decode
#   4. a short table last (the reply carries the end of the output)
# Data-driven: adding a test_gpu_* or bench_* binary to a bundle adds it here. Logs go to $OUT (few files, as the
# device tool returns at most 8): env.txt, tests.log, benches.log, summary.txt, and any *.json a bench writes.
#
# usage:  scripts/device/gpu_suite.sh [--build [--targets "T1 T2 .."]] [--tests-only | --benches-only] [--filter REGEX]
#                                     [--sanitize]
# --build: first build qbench there from the carried tree (scripts/device/build_on_device.sh: the Debian packages it
#   needs travel in .device-deps/, made here by scripts/device/fetch_build_deps.sh) and use only that build, so one
#   call does build, GPU tests and the performance table:
#     device run: carry [".device-deps"], command: bash scripts/device/gpu_suite.sh --build 2>&1
#   --targets limits the build to those CMake targets (default: all), e.g. when a call has little time left.
# QBENCH_BENCH_DECODE_ARGS replaces bench_decode's default arguments (e.g. "--models vicuna-7b-v0 --ablate-ab 1").
# Without --build it runs the bundles bundle.sh prepared here (carry [".device-bundle"]):
#     device run: carry [".device-bundle"], command: bash scripts/device/gpu_suite.sh 2>&1
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-$root/out}
mkdir -p "$out"
export QBENCH_CONFIG_DIR=$root/configs
export PYTHONUNBUFFERED=1

run_tests=1 run_benches=1 filter='.' sanitize=0 build=0 targets=
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=1 ;;
    --targets) targets=$2; shift ;;
    --tests-only) run_benches=0 ;;
    --benches-only) run_tests=0 ;;
    --filter) filter=$2; shift ;;
    --sanitize) sanitize=1 ;;
    *) echo "gpu_suite.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

shopt -s nullglob
if [ $build -eq 1 ]; then
  echo "== build (log: $out/build.log)"
  # shellcheck disable=SC2086
  if ! bash scripts/device/build_on_device.sh $targets > "$out/build.log" 2>&1; then
    tail -n 40 "$out/build.log"; echo "gpu_suite.sh: the build failed" >&2; exit 1
  fi
  grep '^build_on_device' "$out/build.log"
  bundles=(.device-bundle-built/)
else
  bundles=(.device-bundle*/)
fi
if [ ${#bundles[@]} -eq 0 ]; then
  echo "gpu_suite.sh: no .device-bundle*/ here: run scripts/device/bundle.sh first and carry the bundle" >&2
  exit 2
fi
for b in "${bundles[@]}"; do export LD_LIBRARY_PATH=$root/${b}lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}; done

# Extra arguments per benchmark binary (none for binaries not listed).
bench_args() {
  case $(basename "$1") in
    bench_f16_gemv) echo "" ;;
    bench_decode) echo "${QBENCH_BENCH_DECODE_ARGS:---reps 3} --json $out/bench_decode.json" ;;
    *) echo "" ;;
  esac
}

{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm)"
  nvidia-smi --query-gpu=name,driver_version,pstate,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw,power.limit,ecc.mode.current --format=csv 2>&1
  nvidia-smi 2>&1 | head -20
  echo "bundles: ${bundles[*]}"
  for b in "${bundles[@]}"; do ls -l "$b"bin; done
} > "$out/env.txt"
head -3 "$out/env.txt"

summary=()
if [ $run_tests -eq 1 ]; then
  : > "$out/tests.log"
  for t in ${bundles[@]/%/bin/test_gpu_*}; do  # unquoted: the patterns glob (nullglob)
    name=$(basename "$t")
    [[ $name =~ $filter ]] || continue
    cmd=("$t")
    [ $sanitize -eq 1 ] && command -v compute-sanitizer >/dev/null && cmd=(compute-sanitizer --tool memcheck --error-exitcode 99 "$t")
    echo "=== $name" | tee -a "$out/tests.log"
    start=$(date +%s%N)
    "${cmd[@]}" >> "$out/tests.log" 2>&1
    rc=$?
    secs=$(( ($(date +%s%N) - start) / 1000000000 ))
    case $rc in 0) verdict=pass ;; 77) verdict=skip ;; *) verdict="FAIL(rc=$rc)" ;; esac
    tail -3 "$out/tests.log"
    summary+=("$(printf '%-32s %-12s %5d s' "$name" "$verdict" "$secs")")
  done
fi

if [ $run_benches -eq 1 ]; then
  : > "$out/benches.log"
  for b in ${bundles[@]/%/bin/bench_*}; do
    name=$(basename "$b")
    [[ $name =~ $filter ]] || continue
    echo "=== $name $(bench_args "$b")" | tee -a "$out/benches.log"
    start=$(date +%s%N)
    # shellcheck disable=SC2046
    "$b" $(bench_args "$b") >> "$out/benches.log" 2>&1
    rc=$?
    secs=$(( ($(date +%s%N) - start) / 1000000000 ))
    summary+=("$(printf '%-32s %-12s %5d s' "$name" "$([ $rc -eq 0 ] && echo done || echo "FAIL(rc=$rc)")" "$secs")")
  done
fi

{
  echo "== GPU suite summary"
  printf '%s\n' "${summary[@]}"
  if [ -s "$out/benches.log" ]; then
    echo "== fp16 GEMV vs cuBLAS (util = weight bytes/s over the stream bandwidth)"
    grep -E '^BM_(f16_gemv|cublas_f16).*rows:(1|4)/' "$out/benches.log" | cut -c1-170 | head -28
    grep -E '^BM_llama7b_linears' "$out/benches.log" | cut -c1-170 | head -12
    echo "== decode"
    sed -n '/^summary (stream/,$p' "$out/benches.log" | head -30
  fi
} | tee "$out/summary.txt"
