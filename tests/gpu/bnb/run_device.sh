#!/usr/bin/env bash
# One device call for the bnb backend: GPU kernel tests, the fused-linear tests (forward_group / forward_swiglu
# bit-identical to the separate path), the benchmarks in bench_bnb's registration order (the Llama-7B linear stack in
# the default and the 32-warp launch shapes, the fused stack, the per-layer kernels in those shapes, then the older
# experimental shapes, so a run cut off by BENCH_LIMIT loses only those), the device-linear tests, a SASS opcode census
# of the batch-1 kernels, and a short table at the end. Expects the bundle made by
#   QBENCH_BUNDLE_NAME=bnb scripts/device/bundle.sh test_gpu_bnb_kernels test_gpu_bnb_linear test_gpu_bnb_fused \
#     test_gpu_bnb_pdl bench_bnb
# usage (on the GPU machine, repository root): tests/gpu/bnb/run_device.sh [bench filter]
# Time limits (seconds) by environment: KERNEL_TEST_LIMIT, FUSED_TEST_LIMIT, PDL_TEST_LIMIT, BENCH_LIMIT,
# LINEAR_TEST_LIMIT; STACK_REPEAT=0 skips the second pass of the stack. BNB_BUNDLE names the bundle directory
# (e.g. .device-bundle-built, what scripts/device/build_on_device.sh makes on the GPU machine).
set -uo pipefail
bundle=${BNB_BUNDLE:-.device-bundle-bnb}
out=${OUT:-/tmp/bnb-out}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/$bundle/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,temperature.gpu,power.draw --format=csv
status=0
run_test() {  # name, time limit
  [ -x "$bundle/bin/$1" ] || { echo "$1: not in the bundle"; return; }
  local start=$(date +%s)
  timeout "$2" "$bundle/bin/$1" 2>&1 | tail -c 60000 > "$out/$1.log"
  local rc=${PIPESTATUS[0]}
  echo "$1: exit $rc ($(( $(date +%s) - start )) s): $(grep -E '^(All tests passed|test cases:)' "$out/$1.log" | tail -1)"
  [ "$rc" = 0 ] || { status=1; grep -E 'FAILED|with expansion|REQUIRE|CHECK|shape|worst|error' "$out/$1.log" | head -30; }
}
run_test test_gpu_bnb_kernels ${KERNEL_TEST_LIMIT:-110}
run_test test_gpu_bnb_fused ${FUSED_TEST_LIMIT:-120}
run_test test_gpu_bnb_pdl ${PDL_TEST_LIMIT:-60}
filter=${1:-'BM_linear_stack_7b|BM_bnb_gemv_4bit|BM_bnb_int8_fused|BM_bnb_int8/shape:./m:1/|BM_fp16'}
start=$(date +%s)
timeout ${BENCH_LIMIT:-170} "$bundle/bin/bench_bnb" --benchmark_filter="$filter" --benchmark_out="$out/bench_bnb.json" \
  --benchmark_out_format=json --benchmark_counters_tabular=true > "$out/bench_bnb.txt" 2>&1
echo "bench_bnb: exit $? ($(( $(date +%s) - start )) s)"
head -2 "$out/bench_bnb.txt"
# The stack once more, for the run-to-run spread (STACK_REPEAT=0 skips it).
if [ "${STACK_REPEAT:-1}" != 0 ]; then
  timeout 90 "$bundle/bin/bench_bnb" --benchmark_filter='BM_linear_stack_7b' --benchmark_out="$out/stack_repeat.json" \
    --benchmark_out_format=json > /dev/null 2>&1
  echo "stack repeat: exit $?"
fi
run_test test_gpu_bnb_linear ${LINEAR_TEST_LIMIT:-50}
if command -v cuobjdump >/dev/null; then
  # Opcode census per batch-1 kernel (the instructions a 16-byte chunk costs are the loop body's).
  cuobjdump --dump-sass "$bundle/bin/bench_bnb" 2>/dev/null | awk '
    /Function :/ { fn=$3; keep = (fn ~ /team_kernel|gemv_4bit_warp_kernelILi1ELi2ELi2/) }
    keep && /\/\*[0-9a-f]+\*\// { op=""; for (i=2;i<=NF;i++) if ($i !~ /^@/) { op=$i; break } sub(/;$/,"",op); split(op,p,"."); n[fn" "p[1]]++ }
    END { for (k in n) print k, n[k] }' | sort > "$out/sass_census.txt"
  echo "sass census: $(wc -l < "$out/sass_census.txt") lines"
fi
python3 - "$out/bench_bnb.json" "$out/stack_repeat.json" <<'PY' || tail -60 "$out/bench_bnb.txt"
import json, sys
d = json.load(open(sys.argv[1]))
try:
    rep = {b["name"]: b["real_time"] for b in json.load(open(sys.argv[2]))["benchmarks"]}
except Exception:
    rep = {}
print(f"{'benchmark (args)':30s} {'label':50s} {'us':>8s} {'GB/s':>5s} {'f4500':>5s} {'tok/s':>6s} {'rep us':>7s}")
for b in d["benchmarks"]:
    name = b["name"].replace("BM_", "").replace("/manual_time", "")
    for it in ("/iterations:60", "/iterations:40", "/iterations:30"):
        name = name.replace(it, "")
    for k in ("shape:", "fp4:", "dq:", "m:", "variant:", "t10:", "format:", "pdl:", "config:", "graph:", "fuse:"):
        name = name.replace(k, "")
    print(f"{name[:30]:30s} {b.get('label','')[:50]:50s} {b['real_time']:8.1f} {b.get('GB_per_s',0):5.0f} "
          f"{b.get('frac_4500',0):5.3f} {b.get('tokens_per_s',0):6.1f} {rep.get(b['name'], 0):7.1f}")
PY
exit $status
