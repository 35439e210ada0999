#!/usr/bin/env bash
# On the GPU machine, in one call: builds bench_gptq and the tests of the persistent GPTQ chain and decode stack
# (backends/gptq/gptq_chain.cuh), times the chain against v3's launches (BM_gptq_chain), then runs the tests: the chain
# and the stack against v3 and the launched layers bit for bit, the executor (whose attention kernel now runs
# attention_block.cuh), write_once.cuh and (unless QBENCH_PROBE_SKIP_GPTQ_TESTS=1) the fused GPTQ and kernel tests.
# Logs under $OUT: build.log, bench-ring.txt, tests.log (every test's output, one after another: $OUT returns 8 files).
#
#   device run: carry [".device-deps"], command: bash scripts/device/ring_probe.sh
# QBENCH_PROBE_FILTER overrides the benchmark filter (default: the phase probe's schedules at 2 / 4 / 8 bits, one
# kernel per phase, no barrier, release barriers and the hinted flags, the last two with one 8 KB copy a stage (shape
# 0) and gathered from 16 copies of 512 bytes (shape 2: what the stack's first form did, which the copies held back:
# backends/gptq/PERF_NOTES.md, sixteenth session), and BM_gptq_chain); QBENCH_PROBE_SECONDS bounds the benchmark
# (default 100), QBENCH_PROBE_TEST_TIMEOUT each test (default 90).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
out=${OUT:-$root/out}
mkdir -p "$out"
tests=(test_gpu_gptq_chain test_gpu_gptq_stack test_gpu_executor test_gpu_write_once)
[ -n "${QBENCH_PROBE_SKIP_GPTQ_TESTS:-}" ] || tests+=(test_gpu_gptq_fused test_gpu_gptq_kernels)
if ! bash scripts/device/build_on_device.sh bench_gptq "${tests[@]}" > "$out/build.log" 2>&1; then
  tail -n 40 "$out/build.log"; echo "ring_probe.sh: the build failed" >&2; exit 1
fi
grep '^build_on_device' "$out/build.log"
export LD_LIBRARY_PATH=$root/.device-bundle-built/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bin=$root/.device-bundle-built/bin
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv
filter=${QBENCH_PROBE_FILTER:-'BM_phase_stream/[248]/((0|3|4|8)/1/0|(7|14)/1/[02])/|BM_gptq_chain'}
# Line-buffered, so that a run cut by the timeout keeps the benchmarks it finished.
timeout "${QBENCH_PROBE_SECONDS:-100}" stdbuf -oL "$bin/bench_gptq" --benchmark_filter="$filter" > "$out/bench-ring.txt" 2>&1
echo "bench_gptq: exit $?"
grep -E '^BM_' "$out/bench-ring.txt" | awk '{print $1, $2, $NF}' | cut -c1-120
sed -n '/bulk copy/,$p' "$out/bench-ring.txt"
: > "$out/tests.log"
for t in "${tests[@]}"; do
  start=$(date +%s)
  echo "===== $t" >> "$out/tests.log"
  timeout "${QBENCH_PROBE_TEST_TIMEOUT:-90}" "$bin/$t" > "$out/test.tmp" 2>&1
  rc=$?
  cat "$out/test.tmp" >> "$out/tests.log"
  echo "$t: exit $rc ($(( $(date +%s) - start )) s) $(tail -n 2 "$out/test.tmp" | tr '\n' ' ')"
done
rm -f "$out/test.tmp"
