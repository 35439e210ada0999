#!/usr/bin/env bash
# On the GPU machine, in one call: builds qbench and the tests of the persistent GPTQ decode stack, checks the stack
# (test_gpu_gptq_stack: the executor's decode with it and without, bit for bit), then, if it passed, runs qbench itself
# on configs/gptq-widths-quick.yaml (fp16 and GPTQ 2/3/4/8-bit at beam 1: the stack's cells) until the call's deadline,
# then the chain and executor tests with the time left. Logs and results under $OUT (tests.log, build.log, the results
# file and its report from reference_run.sh).
#
#   device run: carry [".device-deps"], command: bash scripts/device/stack_check.sh
# QBENCH_CHECK_SECONDS: the whole script's budget (default 570); QBENCH_STACK_MATRIX: the matrix to run instead.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
out=${OUT:-$root/out}
mkdir -p "$out"
deadline=$(( $(date +%s) + ${QBENCH_CHECK_SECONDS:-570} ))
if ! bash scripts/device/build_on_device.sh qbench test_gpu_gptq_stack test_gpu_gptq_chain test_gpu_executor > "$out/build.log" 2>&1; then
  tail -n 40 "$out/build.log"; echo "stack_check.sh: the build failed" >&2; exit 1
fi
grep '^build_on_device' "$out/build.log"
export LD_LIBRARY_PATH=$root/.device-bundle-built/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bin=$root/.device-bundle-built/bin
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
if run_test test_gpu_gptq_stack 150; then
  left=$(( deadline - $(date +%s) - 60 ))
  if [ "$left" -gt 120 ]; then
    QBENCH_BUNDLE=.device-bundle-built QBENCH_CALL_SECONDS=$left \
      bash scripts/device/reference_run.sh "${QBENCH_STACK_MATRIX:-configs/gptq-widths-quick.yaml}" > "$out/reference.log" 2>&1
    tail -n 30 "$out/reference.log"
  fi
fi
for t in test_gpu_gptq_chain test_gpu_executor; do
  left=$(( deadline - $(date +%s) ))
  [ "$left" -gt 20 ] || { echo "$t: no time left"; continue; }
  run_test "$t" "$left"
done
