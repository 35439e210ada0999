#!/usr/bin/env bash
# On the GPU machine, in one short call: builds bench_gptq and the chain's test, checks the chain (test_gpu_gptq_chain:
# v3's bits, the polling producer and the trace included), then times the persistent chain and the 7B decode stack
# with their switches (BM_gptq_chain, BM_gptq_stack: producer, L2 look-ahead) and prints each one's trace: where a
# phase's time goes (tests/gpu/gptq/chain_trace.hpp). Logs under $OUT: build.log, tests.log, bench-trace.txt.
#
#   device run: carry [".device-deps"], command: bash scripts/device/chain_trace.sh
# QBENCH_TRACE_FILTER: the benchmark filter (default 'BM_gptq_chain|BM_gptq_stack'); QBENCH_TRACE_SECONDS bounds it (150);
# QBENCH_TRACE_NO_TEST=1 builds and runs the benchmark alone (the shortest call).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
out=${OUT:-$root/out}
mkdir -p "$out"
targets=(bench_gptq)
[ -n "${QBENCH_TRACE_NO_TEST:-}" ] || targets+=(test_gpu_gptq_chain)
if ! bash scripts/device/build_on_device.sh "${targets[@]}" > "$out/build.log" 2>&1; then
  tail -n 40 "$out/build.log"; echo "chain_trace.sh: the build failed" >&2; exit 1
fi
grep '^build_on_device' "$out/build.log"
export LD_LIBRARY_PATH=$root/.device-bundle-built/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bin=$root/.device-bundle-built/bin
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
if [ -z "${QBENCH_TRACE_NO_TEST:-}" ]; then
  timeout 90 "$bin/test_gpu_gptq_chain" > "$out/tests.log" 2>&1
  echo "test_gpu_gptq_chain: exit $? $(tail -n 2 "$out/tests.log" | tr '\n' ' ')"
fi
timeout "${QBENCH_TRACE_SECONDS:-150}" stdbuf -oL "$bin/bench_gptq" --benchmark_filter="${QBENCH_TRACE_FILTER:-BM_gptq_chain|BM_gptq_stack}" \
  > "$out/bench-trace.txt" 2>&1
echo "bench_gptq: exit $?"
grep -E '^BM_' "$out/bench-trace.txt" | awk '{print $1, $2, $NF}' | cut -c1-100
grep -E '^\| (q/k/v|attention|o|gate/up|down|4096->4096) ' "$out/bench-trace.txt" | head -n 40
