#!/usr/bin/env bash
# On the GPU machine, in one call: is GPTQ v3's folded RMSNorm faster than the separate RMSNorm kernels?
#   1. build qbench and the GPTQ GPU test / bench targets (build_on_device.sh);
#   2. the folded-norm GPU test (bit-identical to launch_rms_norm + separate launches), the rest of the GPTQ GPU tests
#      last if time is left;
#   3. bench_gptq BM_decode_7b_fused/4 (modes 0 separate, 1 fused, 2 fused + RMSNorm kernels, 3 folded) at beams 1/2/4;
#   4. qbench itself on configs/gptq-7b-quick.yaml twice: QBENCH_FP16_FOLD_NORM=0 (no fold) and unset (each backend's
#      preference: GPTQ v3 folds, fp16 does not), results files <gpu>-gptq-7b-quick-nofold.json / <gpu>-gptq-7b-quick.json.
# Every step checks the call's deadline (QBENCH_CALL_SECONDS, default 560) and logs go to $OUT as they are written.
#
#   device run: carry [".device-deps"], command: bash scripts/device/gptq_fold_ab.sh
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-$root/out}
mkdir -p "$out"
deadline=$(( $(date +%s) + ${QBENCH_CALL_SECONDS:-560} ))
left() { echo $(( deadline - $(date +%s) )); }
export QBENCH_CONFIG_DIR=$root/configs QBENCH_CACHE_DIR=${QBENCH_CACHE_DIR:-/tmp/qbench-cache}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv | tee "$out/summary.txt"
if ! bash scripts/device/build_on_device.sh qbench test_gpu_gptq_kernels test_gpu_gptq_fused bench_gptq > "$out/build.log" 2>&1; then
  tail -n 60 "$out/build.log"; echo "gptq_fold_ab.sh: the build failed" >&2; exit 1
fi
grep '^build_on_device' "$out/build.log" | tee -a "$out/summary.txt"
bin=$root/.device-bundle-built/bin
export LD_LIBRARY_PATH=$root/.device-bundle-built/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

run_test() {  # name [catch2 filter]
  local start rc; start=$(date +%s)
  timeout $(( $(left) > 10 ? $(left) - 5 : 5 )) "$bin/$1" ${2:+"$2"} > "$out/test-$1${2:+-norm}.log" 2>&1
  rc=$?
  echo "test $1 ${2:-}: exit $rc ($(( $(date +%s) - start )) s) $(grep -E '^(All tests passed|test cases:)' "$out/test-$1${2:+-norm}.log" | tail -1)" | tee -a "$out/summary.txt"
}
run_test test_gpu_gptq_fused '[norm]'

if [ "$(left)" -gt 120 ]; then
  timeout $(( $(left) - 60 )) "$bin/bench_gptq" --benchmark_filter='BM_decode_7b_fused/4/' > "$out/bench-fold.txt" 2>&1
  echo "bench_gptq: exit $?" | tee -a "$out/summary.txt"
  sed -n '/^Llama-7B/,$p' "$out/bench-fold.txt" | tee -a "$out/summary.txt"
fi

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-' | tr -d '\r')
for variant in nofold default; do
  [ "$(left)" -gt 60 ] || { echo "no time left for the $variant run" | tee -a "$out/summary.txt"; continue; }
  file="$out/${gpu}-gptq-7b-quick$([ "$variant" = nofold ] && echo -nofold).json"
  if [ "$variant" = nofold ]; then export QBENCH_FP16_FOLD_NORM=0; else unset QBENCH_FP16_FOLD_NORM; fi
  timeout --signal=TERM --kill-after=15 $(( $(left) - 20 )) "$bin/qbench" run configs/gptq-7b-quick.yaml --configs configs \
      --device cuda --resume -o "$file" --work-dir "/tmp/qbench-work-$variant" > "$out/qbench-$variant.log" 2>&1
  echo "qbench $variant: exit $?" | tee -a "$out/summary.txt"
  grep '^|' "$out/qbench-$variant.log" | tail -n 8 | tee -a "$out/summary.txt"
done
unset QBENCH_FP16_FOLD_NORM

for t in test_gpu_gptq_kernels test_gpu_gptq_fused; do
  [ "$(left)" -gt 30 ] || { echo "no time left for $t" | tee -a "$out/summary.txt"; continue; }
  run_test "$t"
done
