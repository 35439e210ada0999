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
for t in test_bnb test_gpu_bnb_kernels test_gpu_bnb_linear; do
  start=$(date +%s)
  timeout 200 "$bundle/bin/$t" 2>&1 | tail -c 20000 > "$out/$t.log"
  rc=${PIPESTATUS[0]}
  echo "$t: exit $rc ($(( $(date +%s) - start )) s): $(grep -E '^(All tests passed|test cases:)' "$out/$t.log" | tail -1)"
  [ "$rc" = 0 ] || { status=1; grep -E 'FAILED|with expansion|REQUIRE|CHECK|shape|worst' "$out/$t.log" | head -40; }
done
filter=${1:-.}
timeout 240 "$bundle/bin/bench_bnb" --benchmark_filter="$filter" --benchmark_out="$out/bench_bnb.json" \
  --benchmark_out_format=json --benchmark_counters_tabular=true > "$out/bench_bnb.txt" 2>&1
echo "bench_bnb: exit $?"
head -3 "$out/bench_bnb.txt"
python3 - "$out/bench_bnb.json" <<'PY' || true
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{'benchmark':58s} {'label':44s} {'us':>8s} {'GB/s':>7s} {'f4500':>6s} {'tok/s':>7s}")
for b in d["benchmarks"]:
    gbs = b.get("GB_per_s", 0) / (1e9 if b.get("GB_per_s", 0) > 1e6 else 1)
    print(f"{b['name'][:58]:58s} {b.get('label','')[:44]:44s} {b['real_time']:8.2f} {gbs:7.0f} "
          f"{b.get('frac_4500',0):6.3f} {b.get('tokens_per_s',0):7.1f}")
PY
exit $status
