#!/usr/bin/env bash
# On the GPU machine, in one call, whichever card comes: builds qbench, bench_gptq and the stack's test, then
# - on an H200: first qbench on a matrix of the launched (default) kernels, to refresh the H200 figures the issues
#   name (default configs/issue-points-quick.yaml: fp16, NF4, LLM.int8() and GPTQ 2/3/4/8-bit at beam 1, about 5
#   minutes), then the benchmarks and traces (below) and the stack's check in what time is left;
# - on any other card: the stack's check first (test_gpu_gptq_stack, bit for bit against the launched layers), the
#   benchmarks and traces (v3 from DRAM and from L2, the launched step's launch trace, the stack's phase trace), then
#   the matrix with the stack on (QBENCH_DECODE_STACK=1; default configs/gptq-widths-quick.yaml there).
# Logs and results under $OUT: build.log, tests.log, bench-trace.txt, the results files and reports, reference logs.
#
#   device run: carry [".device-deps"], command: bash scripts/device/refresh_or_trace.sh
# QBENCH_REFRESH_MATRIX (default above; several, space-separated, run in order),
# QBENCH_TRACE_FILTER (default: v3 per linear at batch 1 from DRAM and from L2 at 4 and 8 bits, the launched 7B step at
# 4 and 8 bits with its launch trace, then the stack with its attention prefetch on and off at 4, 2 and 8 bits),
# QBENCH_CHECK_SECONDS (default 570), QBENCH_ONLY_H200=1 (on another card, stop before the build),
# QBENCH_BENCH_RESERVE (on an H200, the seconds the matrix leaves for the benchmarks and the test; default 30: the
# figures come first).
source "$(dirname "$0")/call_setup.sh" "${QBENCH_CHECK_SECONDS:-570}"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr -d '\r')
# QBENCH_ONLY_H200=1: on any other card stop here, before the build (a call that only wants the H200's figures).
if [ -n "${QBENCH_ONLY_H200:-}" ] && [[ "$gpu" != *H200* ]]; then echo "refresh_or_trace.sh: $gpu is not an H200; nothing run"; exit 0; fi
if ! bash scripts/device/build_on_device.sh qbench bench_gptq test_gpu_gptq_stack > "$out/build.log" 2>&1; then
  tail -n 40 "$out/build.log"; echo "refresh_or_trace.sh: the build failed" >&2; exit 1
fi
grep '^build_on_device' "$out/build.log"
use_built_bundle
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
if [[ "$gpu" == *H200* ]]; then matrix=${QBENCH_REFRESH_MATRIX:-configs/issue-points-quick.yaml}
else matrix=${QBENCH_REFRESH_MATRIX:-configs/gptq-widths-quick.yaml}; fi
left() { echo $(( deadline - $(date +%s) - ${1:-0} )); }

run_matrix() {  # stack switch (0 or 1), seconds
  [ "$2" -gt 90 ] || { echo "no time left for $matrix (stack $1)"; return; }
  QBENCH_DECODE_STACK=$1 QBENCH_BUNDLE=.device-bundle-built QBENCH_CALL_SECONDS=$2 \
    bash scripts/device/reference_run.sh $matrix > "$out/reference-stack$1.log" 2>&1  # (a list: word-split on purpose)
  grep '^|' "$out/reference-stack$1.log" | tail -n 8
}
stack_test() {
  local t; t=$(left 10); [ "$t" -gt 150 ] && t=150
  [ "$t" -gt 20 ] || { echo "test_gpu_gptq_stack: no time left"; return; }
  timeout "$t" "$bin/test_gpu_gptq_stack" > "$out/tests.log" 2>&1
  echo "test_gpu_gptq_stack: exit $? $(tail -n 2 "$out/tests.log" | tr '\n' ' ')"
}
stack_trace() {
  local t; t=$(left 10); [ "$t" -gt 220 ] && t=220
  [ "$t" -gt 20 ] || { echo "bench_gptq: no time left"; return; }
  timeout "$t" stdbuf -oL "$bin/bench_gptq" --benchmark_filter="${QBENCH_TRACE_FILTER:-BM_gptq_linear(_l2)?/[012]/1/[48]/|BM_decode_7b_fused/(4|8)/2/|BM_gptq_stack/(4|2|8)/1/}" \
    > "$out/bench-trace.txt" 2>&1
  echo "bench_gptq: exit $?"
  grep -E '^BM_' "$out/bench-trace.txt" | cut -c1-200
  grep -E '^\| (q/k/v|attention|o|gate/up|down) |^launch trace|^chain trace' "$out/bench-trace.txt" | head -n 60
}

if [[ "$gpu" == *H200* ]]; then
  run_matrix 0 "$(left "${QBENCH_BENCH_RESERVE:-30}")"
  stack_trace
  stack_test
else
  stack_test
  stack_trace
  run_matrix 1 "$(left 15)"
fi
