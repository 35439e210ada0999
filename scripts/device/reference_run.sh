#!/usr/bin/env bash
# On the GPU machine (from the repository root, with the bundle carried): runs qbench itself on the GPU — the
# smoke matrix, then a matrix of real model shapes — and leaves the results files, reports and logs under $OUT.
#
#   device run: carry [".device-bundle"], command: bash scripts/device/reference_run.sh [MATRIX...]
# Default matrices: configs/smoke.yaml configs/h200-quick.yaml. Cells run with --resume into $OUT, so a call cut
# short keeps every finished cell; QBENCH_RESUME_DIR=dir (carried) holds an earlier call's results files to go on from,
# QBENCH_RETRY_FAILED=1 runs their error/timeout cells again (qbench run --retry-failed); QBENCH_SHARD=I/N runs one
# shard (qbench run --shard I/N) into <gpu>-<matrix>-shardIofN.json, for `qbench merge` later.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bundle=${QBENCH_BUNDLE:-.device-bundle}
export LD_LIBRARY_PATH="$root/$bundle/lib:${LD_LIBRARY_PATH:-}"
export QBENCH_CACHE_DIR=${QBENCH_CACHE_DIR:-/tmp/qbench-cache}
# Results files go straight to a directory that survives between calls while the machine stays warm; $OUT (at most
# 8 files back) gets copies, the reports and one tarball of logs. The whole script ends before the device call's
# limit: each qbench run gets SIGTERM at the deadline, stops its running cell, and leaves a valid file for --resume.
out=/tmp/qbench-reference
mkdir -p "$out"
# A fresh machine starts empty: results of an earlier call (fetched from its $OUT and carried back in) seed --resume.
if [ -n "${QBENCH_RESUME_DIR:-}" ] && [ -d "$QBENCH_RESUME_DIR" ]; then
  cp -n "$QBENCH_RESUME_DIR"/*.json "$out"/ 2>/dev/null; chmod u+w "$out"/*.json 2>/dev/null
fi
deadline=$(( $(date +%s) + ${QBENCH_CALL_SECONDS:-540} ))
qbench="$root/$bundle/bin/qbench"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-' | tr -d '\r')
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv | tee "$out/nvidia-smi.txt"
matrices=("$@")
[ ${#matrices[@]} -gt 0 ] || matrices=(configs/smoke.yaml configs/h200-quick.yaml)
for m in "${matrices[@]}"; do
  name=$(basename "$m" .yaml)
  shard=(); suffix=""
  if [ -n "${QBENCH_SHARD:-}" ]; then shard=(--shard "$QBENCH_SHARD"); suffix="-shard${QBENCH_SHARD/\//of}"; fi
  file="$out/${gpu}-${name}${suffix}.json"
  echo "== qbench run $m -> $file"
  left=$(( deadline - $(date +%s) ))
  [ "$left" -gt 30 ] || { echo "no time left for $m"; continue; }
  retry=(); [ -n "${QBENCH_RETRY_FAILED:-}" ] && retry=(--retry-failed)
  timeout --signal=TERM --kill-after=20 "$left" "$qbench" run "$m" --configs configs --device cuda --resume "${retry[@]}" "${shard[@]}" \
      -o "$file" --work-dir "$out/work-$name" --timeout "${QBENCH_CELL_TIMEOUT:-420}" >"$out/${name}.log" 2>&1
  echo "exit $?"; grep -v '^|' "$out/${name}.log" | grep -- '->' | tail -n 40; grep '^|' "$out/${name}.log" | tail -n 20
  "$qbench" report "$file" --configs configs > "$out/${gpu}-${name}${suffix}-report.md" 2>&1 || true
done
if [ -n "${OUT:-}" ]; then
  cp "$out"/*.json "$out"/*-report.md "$OUT"/ 2>/dev/null
  tar czf "$OUT/reference-logs.tar.gz" -C "$out" --exclude='*.json' . 2>/dev/null
fi
ls -la "$out" "${OUT:-$out}"
