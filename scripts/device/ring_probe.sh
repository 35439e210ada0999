#!/usr/bin/env bash
# On the GPU machine, in one call: builds bench_gptq and the tests of the bulk-copy ring, the grid barrier,
# write_once.cuh and the persistent GPTQ chain, runs the phase probe's schedules (BM_phase_stream,
# backends/gptq/PERF_NOTES.md, fourteenth and fifteenth sessions) and the chain against v3 (BM_gptq_chain), then those
# tests and (unless QBENCH_PROBE_SKIP_GPTQ_TESTS=1) the GPTQ kernel tests. Logs under $OUT: build.log, bench-ring.txt
# (the summary tables are its last part), tests.log (every test's output, one after another: $OUT returns 8 files).
#
#   device run: carry [".device-deps"], command: bash scripts/device/ring_probe.sh
# QBENCH_PROBE_FILTER overrides the benchmark filter (default: 2 / 4 / 8 bits with the norm boundaries, with and
# without work: one kernel per phase, no barrier, the persistent ring with release barriers, relaxed ones, none, and
# the hinted write-once flags, the last two also with each stage gathered by 16 copies as v3's layout needs: the
# comparison the fifteenth session's design rests on; and BM_gptq_chain, v3 against the persistent chain);
# QBENCH_PROBE_SECONDS bounds the benchmark (default 100).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
out=${OUT:-$root/out}
mkdir -p "$out"
tests=(test_gpu_bulk_ring test_gpu_grid_barrier test_gpu_write_once test_gpu_gptq_chain)
[ -n "${QBENCH_PROBE_SKIP_GPTQ_TESTS:-}" ] || tests+=(test_gptq_a_layout test_gpu_gptq_kernels test_gpu_gptq_fused)
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
  timeout "${QBENCH_PROBE_TEST_TIMEOUT:-120}" "$bin/$t" > "$out/test.tmp" 2>&1
  rc=$?
  cat "$out/test.tmp" >> "$out/tests.log"
  echo "$t: exit $rc ($(( $(date +%s) - start )) s) $(tail -n 2 "$out/test.tmp" | tr '\n' ' ')"
done
rm -f "$out/test.tmp"
