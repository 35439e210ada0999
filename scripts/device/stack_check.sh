#!/usr/bin/env bash
# On the GPU machine, in one call: builds qbench and the tests of the persistent GPTQ decode stack, checks the stack
# (test_gpu_gptq_stack: the executor's decode with it and without, bit for bit), then, if it passed, runs qbench itself
# on configs/gptq-widths-quick.yaml (fp16 and GPTQ 2/3/4/8-bit at beam 1) with the stack (QBENCH_DECODE_STACK=1) and
# then with the layers launched (the A/B on one machine), then the chain and executor tests with the time left. Logs
# and results under $OUT (build.log, tests.log, reference.log, launched.log, both results files and the report).
#
#   device run: carry [".device-deps"], command: bash scripts/device/stack_check.sh
# QBENCH_CHECK_SECONDS: the whole script's budget (default 570); QBENCH_STACK_MATRIX: the matrix to run instead.
source "$(dirname "$0")/call_setup.sh" "${QBENCH_CHECK_SECONDS:-570}"
if ! bash scripts/device/build_on_device.sh qbench test_gpu_gptq_stack test_gpu_gptq_chain test_gpu_executor > "$out/build.log" 2>&1; then
  tail -n 40 "$out/build.log"; echo "stack_check.sh: the build failed" >&2; exit 1
fi
grep '^build_on_device' "$out/build.log"
use_built_bundle
: > "$out/tests.log"
run_test() {  # name, timeout
  local start rc; start=$(date +%s)
  echo "===== $1" >> "$out/tests.log"
  timeout "$2" "$bin/$1" > "$out/test.tmp" 2>&1; rc=$?
  cat "$out/test.tmp" >> "$out/tests.log"
  echo "$1: exit $rc ($(( $(date +%s) - start )) s) $(tail -n 2 "$out/test.tmp" | tr '\n' ' ')"
  rm -f "$out/test.tmp"
  return $rc
}
matrix=${QBENCH_STACK_MATRIX:-configs/gptq-widths-quick.yaml}
if run_test test_gpu_gptq_stack 150; then
  # The stack's cells (QBENCH_DECODE_STACK=1; it is off by default), leaving ~100 s for the launched A/B below.
  left=$(( deadline - $(date +%s) - 100 ))
  if [ "$left" -gt 120 ]; then
    QBENCH_DECODE_STACK=1 QBENCH_BUNDLE=.device-bundle-built QBENCH_CALL_SECONDS=$left \
      bash scripts/device/reference_run.sh "$matrix" > "$out/reference.log" 2>&1
    tail -n 12 "$out/reference.log"
  fi
  # The same cells with the layers launched, on the same machine, the GPTQ artifacts from the cache.
  left=$(( deadline - $(date +%s) - 20 ))
  if [ "$left" -gt 40 ]; then
    gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-' | tr -d '\r')
    QBENCH_DECODE_STACK=0 QBENCH_CACHE_DIR=${QBENCH_CACHE_DIR:-/tmp/qbench-cache} timeout "$left" "$bin/qbench" run "$matrix" \
      --configs configs --device cuda -o "$out/${gpu}-$(basename "$matrix" .yaml)-launched.json" --work-dir /tmp/qbench-launched \
      > "$out/launched.log" 2>&1
    grep '^|' "$out/launched.log" | tail -n 8
  fi
fi
for t in test_gpu_gptq_chain test_gpu_executor; do
  left=$(( deadline - $(date +%s) ))
  [ "$left" -gt 20 ] || { echo "$t: no time left"; continue; }
  run_test "$t" "$left"
done
