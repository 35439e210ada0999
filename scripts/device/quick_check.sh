#!/usr/bin/env bash
# On the GPU machine, the shortest useful call: builds only the named targets, runs the named GPU tests (each with an
# optional Catch2 filter), then bench_gptq with a filter. For a change that touches one kernel, when device time is
# short. Logs under $OUT: build.log, tests.log, bench.txt.
#
#   device run: carry [".device-deps"], command:
#     QBENCH_QC_TESTS="test_gpu_gptq_fused:[norm]" QBENCH_QC_BENCH='BM_decode_7b_fused/4/(2|5)/' bash scripts/device/quick_check.sh
# QBENCH_QC_TESTS: "target[:filter] ..." (default none); QBENCH_QC_BENCH: bench_gptq's filter (default none: no bench);
# QBENCH_QC_MATRIX: a matrix qbench then runs once per setting of QBENCH_QC_ENVS ("VAR=VALUE ...", e.g.
# "QBENCH_NORM_IN_EPILOGUE=0 QBENCH_NORM_IN_EPILOGUE=1"; default one run as is), each into its own results file, the
# GPTQ artifacts shared through the cache (an end-to-end A/B on one machine); QBENCH_QC_FILTER: qbench's --filter
# values ("framework=fp16,bnb ..."; default none); QBENCH_QC_SECONDS bounds the whole script (default 300).
source "$(dirname "$0")/call_setup.sh" "${QBENCH_QC_SECONDS:-300}"
targets=()
for spec in ${QBENCH_QC_TESTS:-}; do targets+=("${spec%%:*}"); done
[ -z "${QBENCH_QC_BENCH:-}" ] || targets+=(bench_gptq)
[ -z "${QBENCH_QC_MATRIX:-}" ] || targets+=(qbench)
[ ${#targets[@]} -gt 0 ] || { echo "quick_check.sh: nothing to do (QBENCH_QC_TESTS, QBENCH_QC_BENCH)"; exit 2; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
if ! bash scripts/device/build_on_device.sh "${targets[@]}" > "$out/build.log" 2>&1; then
  tail -n 40 "$out/build.log"; echo "quick_check.sh: the build failed" >&2; exit 1
fi
grep '^build_on_device' "$out/build.log"
use_built_bundle
: > "$out/tests.log"
for spec in ${QBENCH_QC_TESTS:-}; do
  t=${spec%%:*}; filter=""; [ "$spec" = "$t" ] || filter=${spec#*:}
  left=$(( deadline - $(date +%s) - 10 ))
  [ "$left" -gt 10 ] || { echo "$t: no time left"; continue; }
  start=$(date +%s)
  echo "===== $t $filter" >> "$out/tests.log"
  if [ -n "$filter" ]; then timeout "$left" "$bin/$t" "$filter" >> "$out/tests.log" 2>&1; else timeout "$left" "$bin/$t" >> "$out/tests.log" 2>&1; fi
  echo "$t $filter: exit $? ($(( $(date +%s) - start )) s) $(grep -E '^(All tests passed|test cases:)' "$out/tests.log" | tail -1)"
done
grep -E -B2 -A6 'FAILED' "$out/tests.log" | head -n 40
if [ -n "${QBENCH_QC_BENCH:-}" ]; then
  left=$(( deadline - $(date +%s) - 5 ))
  if [ "$left" -gt 15 ]; then
    timeout "$left" stdbuf -oL "$bin/bench_gptq" --benchmark_filter="$QBENCH_QC_BENCH" > "$out/bench.txt" 2>&1
    echo "bench_gptq: exit $?"
    grep -E '^BM_|^\| |^launch trace|^The |^[0-9]' "$out/bench.txt" | cut -c1-180 | tail -n 40
  else
    echo "bench_gptq: no time left"
  fi
fi
if [ -n "${QBENCH_QC_MATRIX:-}" ]; then
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-' | tr -d '\r')
  name=$(basename "$QBENCH_QC_MATRIX" .yaml)
  filters=()
  for f in ${QBENCH_QC_FILTER:-}; do filters+=(--filter "$f"); done
  for setting in ${QBENCH_QC_ENVS:-as-is}; do
    left=$(( deadline - $(date +%s) - 5 ))
    [ "$left" -gt 30 ] || { echo "qbench $setting: no time left"; continue; }
    # Only [A-Za-z0-9._-] in file names: the device tool does not bring back names with '=' in them.
    tag=$(printf '%s' "$setting" | sed -E 's/^QBENCH_//' | tr -c 'A-Za-z0-9\n' '-')
    envs=(); [ "$setting" = as-is ] || envs=("$setting")
    env "${envs[@]}" QBENCH_CACHE_DIR=${QBENCH_CACHE_DIR:-/tmp/qbench-cache} timeout --signal=TERM --kill-after=10 "$left" \
      "$bin/qbench" run "$QBENCH_QC_MATRIX" --configs configs --device cuda "${filters[@]}" -o "$out/$gpu-$name-$tag.json" \
      --work-dir "/tmp/qc-$tag" > "$out/qbench-$tag.log" 2>&1
    echo "qbench $setting: exit $?"
    grep '^|' "$out/qbench-$tag.log" | tail -n 8
  done
fi
