#!/usr/bin/env bash
# The test suite: install what is missing, then
#   1. the default build (CUDA kernels compiled when nvcc is here) and every CPU test (ctest -L cpu); GPU tests too
#      when a GPU is visible (they exit 77 = skipped without one);
#   2. a clang build with AddressSanitizer + UndefinedBehaviorSanitizer: the CPU tests again, then each libFuzzer
#      target (safetensors, matrix YAML, results JSON) for QBENCH_FUZZ_SECONDS (default 30) on its seed corpus.
# Any failure, sanitizer report or fuzzer crash fails the script. CI (.ci/run) runs exactly this.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh

echo "== build: default =="
scripts/build.sh default
echo "== tests: default build =="
labels="cpu"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then labels="cpu|gpu"; fi
ctest --test-dir build/default -L "$labels" --output-on-failure -j"${QBENCH_JOBS:-$(nproc)}"

echo "== build: sanitize (clang, ASan + UBSan, fuzzers) =="
scripts/build.sh sanitize
echo "== tests: under ASan + UBSan =="
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The smoke matrix already ran in the default build; under ASan it would only repeat the runner test's cells slowly.
ctest --test-dir build/sanitize -L cpu -E '^smoke_cpu' --output-on-failure -j"${QBENCH_JOBS:-$(nproc)}"

echo "== fuzz =="
seconds=${QBENCH_FUZZ_SECONDS:-30}
for target in safetensors matrix results; do
  corpus=$(mktemp -d)
  cp -r tests/fuzz/corpus/$target/. "$corpus"/ 2>/dev/null || true
  echo "fuzz_$target: ${seconds}s"
  log=$(mktemp)
  if build/sanitize/tests/fuzz/fuzz_$target -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 \
       -print_final_stats=1 "$corpus" > "$log" 2>&1; then
    tail -n 4 "$log"
  else
    rc=$?
    # A finding: show the report (the input is saved as crash-*/leak-*/timeout-* in the working directory).
    echo "fuzz_$target FAILED (exit $rc):"
    grep -v '^INFO\|^#[0-9]' "$log" | tail -n 60
    rm -rf "$corpus" "$log"
    exit 1
  fi
  rm -rf "$corpus" "$log"
done
echo "qbench tests: all passed"
