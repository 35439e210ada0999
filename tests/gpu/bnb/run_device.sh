#!/usr/bin/env bash
# One device call for the bnb backend: GPU tests, then the micro-benchmarks and the Llama-7B linear stack, with a
# short table at the end. Expects the bundle made by
#   QBENCH_BUNDLE_NAME=bnb scripts/device/bundle.sh test_gpu_bnb_kernels test_gpu_bnb_linear bench_bnb test_bnb
# usage (on the GPU machine, repository root): tests/gpu/bnb/run_device.sh [bench filter]
set -uo pipefail
bundle=${BNB_BUNDLE:-.device-bundle-bnb}
out=${OUT:-/tmp/bnb-out}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/$bundle/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,temperature.gpu,power.draw --format=csv \
  | tee "$out/gpu.txt"
status=0
run_test() {  # name, time limit
  local start=$(date +%s)
  timeout "$2" "$bundle/bin/$1" 2>&1 | tail -c 30000 > "$out/$1.log"
  local rc=${PIPESTATUS[0]}
  echo "$1: exit $rc ($(( $(date +%s) - start )) s): $(grep -E '^(All tests passed|test cases:)' "$out/$1.log" | tail -1)"
  [ "$rc" = 0 ] || { status=1; grep -E 'FAILED|with expansion|REQUIRE|CHECK|shape|worst|error' "$out/$1.log" | head -30; }
}
run_test test_bnb 60
filter=${1:-.}
start=$(date +%s)
timeout ${BENCH_LIMIT:-170} "$bundle/bin/bench_bnb" --benchmark_filter="$filter" --benchmark_out="$out/bench_bnb.json" \
  --benchmark_out_format=json --benchmark_counters_tabular=true > "$out/bench_bnb.txt" 2>&1
echo "bench_bnb: exit $? ($(( $(date +%s) - start )) s)"
head -2 "$out/bench_bnb.txt"
run_test test_gpu_bnb_kernels ${KERNEL_TEST_LIMIT:-120}
run_test test_gpu_bnb_linear ${LINEAR_TEST_LIMIT:-90}
python3 - "$out/bench_bnb.json" <<'PY' || tail -40 "$out/bench_bnb.txt"
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{'benchmark (args)':34s} {'label':44s} {'us':>8s} {'GB/s':>5s} {'f4500':>5s} {'tok/s':>6s}")
for b in d["benchmarks"]:
    name = b["name"].replace("BM_", "").replace("/manual_time", "").replace("/iterations:60", "")
    name = name.replace("/iterations:40", "").replace("/iterations:30", "")
    for k in ("shape:", "fp4:", "dq:", "m:", "variant:", "t10:", "format:", "pdl:"):
        name = name.replace(k, "")
    print(f"{name[:34]:34s} {b.get('label','')[:44]:44s} {b['real_time']:8.1f} {b.get('GB_per_s',0):5.0f} "
          f"{b.get('frac_4500',0):5.3f} {b.get('tokens_per_s',0):6.1f}")
PY
exit $status
