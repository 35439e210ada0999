#!/usr/bin/env bash
# One device call for the engine/fp16 performance work (issue 3): GPU tests, the GEMV micro-benchmarks, end-to-end
# decode with the defaults and with each A/B switch, and optionally per-kernel times of a decode step under ncu.
# Run from the repository root on the GPU machine with the bundle carried (.device-bundle-engine, built here by
# `QBENCH_BUNDLE_NAME=engine scripts/device/bundle.sh ...`). Logs under $OUT (at most 8 files come back).
#
# usage: tests/bench/engine_perf.sh [--no-tests] [--no-gemv] [--no-ab] [--ncu] [--qbench]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-$root/out}
mkdir -p "$out"
bundle=$root/.device-bundle-engine
export LD_LIBRARY_PATH=$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export QBENCH_CONFIG_DIR=$root/configs
tests=1 gemv=1 ab=1 ncu=0 qb=0
for a in "$@"; do
  case $a in
    --no-tests) tests=0 ;; --no-gemv) gemv=0 ;; --no-ab) ab=0 ;; --ncu) ncu=1 ;; --qbench) qb=1 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
t0=$(date +%s)
stamp() { echo "[+$(( $(date +%s) - t0 )) s] $*"; }
nvidia-smi --query-gpu=name,driver_version,pstate,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv 2>&1

if [ $tests -eq 1 ]; then
  : > "$out/tests.log"
  for t in test_gpu_device_context test_gpu_kernels test_gpu_f16_gemv test_gpu_executor; do
    stamp "test $t"
    echo "=== $t" >> "$out/tests.log"
    timeout 150 "$bundle/bin/$t" >> "$out/tests.log" 2>&1
    rc=$?
    echo "$t rc=$rc" | tee -a "$out/tests.log"
    tail -2 "$out/tests.log"
  done
fi

if [ $gemv -eq 1 ]; then
  stamp "bench_f16_gemv"
  timeout 120 "$bundle/bin/bench_f16_gemv" > "$out/gemv.log" 2>&1
  echo "bench_f16_gemv rc=$?"
fi

: > "$out/decode.log"
decode() {  # decode LABEL ENV... -- ARGS...
  local label=$1; shift
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  stamp "decode $label"
  echo "=== $label ${envs[*]} $*" >> "$out/decode.log"
  env "${envs[@]}" timeout 150 "$bundle/bin/bench_decode" "$@" > "$out/decode_cur.log" 2>&1
  echo "rc=$?" >> "$out/decode_cur.log"
  cat "$out/decode_cur.log" >> "$out/decode.log"
  sed -n '/^summary (stream/,$p' "$out/decode_cur.log" | sed "s/^/$label: /"
}
decode default QBENCH_X=1 -- --models vicuna-7b-v0,vicuna-13b-v0 --beams 1,2,4 --reps 2 --json "$out/bench_decode.json"
if [ $ab -eq 1 ]; then
  short=(--models vicuna-7b-v0 --beams 1,4 --reps 2 --variants 0 --fold-ab 0)
  decode ahead1 QBENCH_GEMV_AHEAD=1 -- "${short[@]}"
  decode nofuse QBENCH_FUSE_LINEARS=0 -- "${short[@]}"
fi
rm -f "$out/decode_cur.log"

if [ $qb -eq 1 ]; then
  stamp "qbench run h200-quick fp16"
  timeout 110 "$bundle/bin/qbench" run configs/h200-quick.yaml --device cuda --filter framework=fp16 --filter instance=local -o "$out/r.json" \
    > "$out/qbench.log" 2>&1
  echo "qbench rc=$?"; tail -25 "$out/qbench.log"
fi

if [ $ncu -eq 1 ] && command -v ncu >/dev/null; then
  stamp "ncu"
  timeout 45 ncu --clock-control none --metrics gpu__time_duration.sum --csv -c 900 \
    "$bundle/bin/bench_decode" --models vicuna-7b-v0 --beams 1 --new-tokens 6 --reps 1 --variants 0 --fold-ab 0 > "$out/ncu.csv" 2>&1
  echo "ncu rc=$?"
  # Per kernel name: launches and median duration, over the last 300 launches (decode steps, not the prefill).
  tail -n 300 "$out/ncu.csv" | awk -F'","' '{n=$5; sub(/\(.*/, "", n); d=$NF; gsub(/[",]/, "", d); print n "\t" d}' |
    sort | awk -F'\t' '{c[$1]++; s[$1]+=$2} END {for (k in c) printf "%-70s %5d %9.1f us avg\n", k, c[k], s[k]/c[k]/1000}' |
    sort -k2 -nr | head -20
  echo "kernels in the last decode step: $(tail -n 400 "$out/ncu.csv" | grep -c embed_tokens) embed launches in the last 400"
fi

stamp "summary"
{
  echo "== GEMV (util = weight bytes/s over the stream bandwidth)"
  grep -E '^BM_' "$out/gemv.log" 2>/dev/null | sed -E 's/ +/ /g' | awk '{for(i=1;i<=NF;i++) if ($i ~ /^util=/) u=$i; print $1, $2, $3, u, $NF, $(NF-1), $(NF-2)}' |
    sed -E 's/\/iterations:[0-9]+\/manual_time//' | cut -c1-150
}
grep -h "^default: \|beam . costs\|folded RMSNorm" "$out/decode.log" | head -34
