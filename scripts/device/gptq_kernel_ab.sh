#!/usr/bin/env bash
# On the GPU machine, in one call: build the GPTQ test and bench targets (and qbench), run the GPTQ GPU tests, then
# time kernel v2 against kernel v3 (bench_gptq once per variant, QBENCH_AB_VARIANTS, default "v2:cs v3:cs v3:na" =
# kernel:load policy[:v3 x staging[:pairing]]):
# per linear at Llama-7B shapes (batch 1 and 4) and the whole 7B decode step's linears (BM_decode_7b), with a short
# table last. Logs under $OUT: build.log, tests.log, bench-<kernel>-<load>.txt, summary.txt.
#
#   device run: carry [".device-deps"], command: bash scripts/device/gptq_kernel_ab.sh
# QBENCH_AB_FILTER overrides the benchmark filter; QBENCH_AB_NCU=FILTER adds Nsight Compute per variant (below);
# QBENCH_AB_SKIP_TESTS=1 skips the tests; QBENCH_AB_EXTRA_TESTS
# names more test targets to build and run after the GPTQ ones (e.g. "test_gpu_f16_gemv test_gpu_executor").
# QBENCH_AB_BUILDS="name:DEF[,DEF...] ..." times more builds of the same tree after the main one: each is bench_gptq
# built apart (its own build directory and bundle) with kernel v3's build-time alternatives (QBENCH_GPTQ_AB_DEFINES,
# backends/gptq/CMakeLists.txt), e.g. "steady:QBENCH_GPTQ_STEADY_LOOP_BITS=0x11c", and runs every variant; logs
# bench-<name>-<variant>.txt. The tests and the executables in .device-bundle-built/ stay those of the main build.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
out=${OUT:-$root/out}
mkdir -p "$out"
export QBENCH_CONFIG_DIR=$root/configs
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv | tee "$out/summary.txt"
# shellcheck disable=SC2086  # QBENCH_AB_EXTRA_TESTS is a list of targets
if ! bash scripts/device/build_on_device.sh qbench test_gptq_a_layout test_gpu_gptq_kernels test_gpu_gptq_fused bench_gptq ${QBENCH_AB_EXTRA_TESTS:-} \
      > "$out/build.log" 2>&1; then
  tail -n 60 "$out/build.log"; echo "gptq_kernel_ab.sh: the build failed" >&2; exit 1
fi
grep '^build_on_device' "$out/build.log" | tee -a "$out/summary.txt"
bin=$root/.device-bundle-built/bin
export LD_LIBRARY_PATH=$root/.device-bundle-built/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

if [ -z "${QBENCH_AB_SKIP_TESTS:-}" ]; then
  : > "$out/tests.log"
  for t in test_gptq_a_layout test_gpu_gptq_kernels test_gpu_gptq_fused ${QBENCH_AB_EXTRA_TESTS:-}; do
    start=$(date +%s)
    timeout "${QBENCH_AB_TEST_TIMEOUT:-300}" "$bin/$t" >> "$out/tests.log" 2>&1
    rc=$?
    echo "test $t: exit $rc ($(( $(date +%s) - start )) s) $(grep -E '^(All tests passed|test cases:)' "$out/tests.log" | tail -1)" | tee -a "$out/summary.txt"
  done
  grep -E -A4 'FAILED' "$out/tests.log" | head -n 40  # with the expression or exception that failed
  grep -E '(v3|mma).*rel_l2=' "$out/tests.log" | grep -E 'batch= 1 ' | head -n 30
fi

filter=${QBENCH_AB_FILTER:-'BM_gptq_linear/[0-2]/(1|4)/(4|8)/|BM_decode_7b/(16|4|8)/|BM_decode_7b_fused/(4|16)/'}
# Variants: kernel:load policy (cs = ld.global.cs, na = past L1)[:v3's x staging (plain, pairs, quads, async)
# [:v3's CTA pairing (QBENCH_GPTQ_PAIR: 0, 1, beams, auto)[:VAR=VALUE ...: more environment, e.g.
# QBENCH_GPTQ_CARVEOUT=100 or QBENCH_GPTQ_PAIR_SPREAD=1]]]
variants=${QBENCH_AB_VARIANTS:-"v2:cs v3:cs v3:na"}
run_variants() {  # $1: the bin directory, $2: a prefix for the log names ("" for the main build)
  local bin=$1 prefix=$2 kv k load xcopy pair extra name more ncu_this
  for kv in $variants; do
    IFS=: read -r k load xcopy pair extra <<< "$kv"
    name=$prefix$k-${load:-cs}-${xcopy:-plain}${pair:+-pair$pair}
    env_of=(QBENCH_GPTQ_KERNEL="$k" QBENCH_GPTQ_LOAD="${load:-cs}" QBENCH_GPTQ_XCOPY="${xcopy:-plain}" QBENCH_GPTQ_PAIR="${pair:-0}")
    if [ -n "${extra:-}" ]; then
      IFS=: read -r -a more <<< "$extra"
      env_of+=("${more[@]}")
      name=$name-$(printf '%s' "$extra" | tr -c 'A-Za-z0-9=\n' '_' | sed -E 's/QBENCH_GPTQ_//g')
    fi
    env "${env_of[@]}" "$bin/bench_gptq" --benchmark_filter="$filter" > "$out/bench-$name.txt" 2>&1
    echo "bench_gptq $prefix$kv: exit $?" | tee -a "$out/summary.txt"
    # QBENCH_AB_NCU=FILTER: Nsight Compute (clocks and caches as found) on the v3 kernels of the first launches of that
    # benchmark filter, per variant: duration, DRAM throughput, occupancy, warp stalls.
    # QBENCH_AB_NCU_ONLY: the variants (as written in QBENCH_AB_VARIANTS) to profile; unset: every one.
    ncu_this=1
    [ -z "${QBENCH_AB_NCU_ONLY:-}" ] || case " $QBENCH_AB_NCU_ONLY " in *" $kv "*) ;; *) ncu_this=0 ;; esac
    if [ -n "${QBENCH_AB_NCU:-}" ] && [ "$ncu_this" = 1 ] && command -v ncu >/dev/null; then
      env "${env_of[@]}" timeout "${QBENCH_AB_NCU_TIMEOUT:-120}" ncu --clock-control none --cache-control none \
          --kernel-name regex:a_gemm_kernel --launch-count "${QBENCH_AB_NCU_LAUNCHES:-2}" \
          --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
          --section MemoryWorkloadAnalysis --section SchedulerStats \
          "$bin/bench_gptq" --benchmark_filter="$QBENCH_AB_NCU" > "$out/ncu-$name.txt" 2>&1
      echo "ncu $prefix$kv: exit $?" | tee -a "$out/summary.txt"
      grep -E '^  [a-z_].*a_gemm_kernel|Duration|DRAM Throughput|Achieved Occupancy|Warp Cycles Per Issued|Block Size|L1/TEX Hit|Mem Busy|Max Bandwidth|Issued Warp|Shared Memory Configuration Size' \
          "$out/ncu-$name.txt" | tee -a "$out/summary.txt"
    fi
  done
}
[ -n "${QBENCH_AB_SKIP_MAIN:-}" ] || run_variants "$bin" ""  # QBENCH_AB_SKIP_MAIN=1: only the QBENCH_AB_BUILDS
for build in ${QBENCH_AB_BUILDS:-}; do
  IFS=: read -r bname bdefs <<< "$build"
  if ! QBENCH_BUNDLE_NAME=built-$bname QBENCH_DEVICE_BUILD=/tmp/qbench-build-$bname \
       QBENCH_EXTRA_CMAKE_ARGS="-DQBENCH_GPTQ_AB_DEFINES=${bdefs//,/;}" \
       bash scripts/device/build_on_device.sh bench_gptq > "$out/build-$bname.log" 2>&1; then
    tail -n 30 "$out/build-$bname.log"; echo "gptq_kernel_ab.sh: build $bname failed" | tee -a "$out/summary.txt"; continue
  fi
  echo "build $bname ($bdefs): $(grep '^build_on_device: built' "$out/build-$bname.log")" | tee -a "$out/summary.txt"
  rm -f "$out/build-$bname.log"  # (at most 8 files come back)
  run_variants "$root/.device-bundle-built-$bname/bin" "$bname-"
done
for f in "$out"/bench-*.txt; do k=$(basename "$f" .txt)
  echo "== $k: per linear (time, GB/s, fraction of the stream) and the decode step's linears"
  grep -E '^BM_gptq_linear' "$f" | sed -E 's/ +/ /g' | cut -d' ' -f1,2,3,6,7
  sed -n '/^Llama-7B decode step, linears only/,$p' "$f"
done | tee -a "$out/summary.txt"
