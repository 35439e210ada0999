#!/usr/bin/env bash
# On a GPU machine with several GPUs (from the repository root, with the bundle carried): runs the shards of one
# matrix side by side, one `qbench run --shard I/N` per GPU, each GPU taking the next unfinished shard, and brings
# every shard's results file back under $OUT. Several calls finish a long study: each leaves valid files (the runs
# get SIGTERM at the deadline and keep every finished cell) and the next call resumes them.
#
#   device run: carry [".device-carry"], command:
#     tar xJf .device-carry/bundle-study.tar.xz && QBENCH_BUNDLE=.device-bundle-study \
#       QBENCH_SHARDS="0 1 2 3 7 4 6" QBENCH_SHARD_COUNT=8 bash scripts/device/reference_study.sh configs/minigpt4.yaml
#
# QBENCH_SHARDS: the shard indices to run, longest first (the list is a queue; a GPU that finishes takes the next);
# QBENCH_SHARD_COUNT: N of --shard I/N (must stay the same across calls and machines, or cells are dealt anew);
# QBENCH_GPUS: how many GPUs to use (default: all that nvidia-smi lists); QBENCH_CALL_SECONDS: this call's budget;
# QBENCH_RESUME_DIR: a carried folder with an earlier call's results files (a fresh machine starts empty).
#
# The shards share one cache (checkpoints, GPTQ artifacts, quality references): synthetic checkpoints are made under
# a lock and every cache entry is renamed into place, so concurrent runs never see half a file. They also share one
# disk: cold loads of cells running at the same time read side by side, so load_read_s includes that contention
# (results/README.md says so; load_read_projected_s does not depend on it).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
[ $# -eq 1 ] || { echo "usage: $0 MATRIX.yaml" >&2; exit 2; }
matrix=$1
name=$(basename "$matrix" .yaml)
bundle=${QBENCH_BUNDLE:-.device-bundle}
qbench="$root/$bundle/bin/qbench"
[ -x "$qbench" ] || { echo "$qbench: not found (carry and unpack the bundle first)" >&2; exit 2; }
export LD_LIBRARY_PATH="$root/$bundle/lib:${LD_LIBRARY_PATH:-}"
export QBENCH_CACHE_DIR=${QBENCH_CACHE_DIR:-/tmp/qbench-cache}
shards=(${QBENCH_SHARDS:?set QBENCH_SHARDS, e.g. \"0 1 2 3\"})
count=${QBENCH_SHARD_COUNT:?set QBENCH_SHARD_COUNT (N of --shard I/N)}
gpus=${QBENCH_GPUS:-$(nvidia-smi -L | grep -c '^GPU')}
out=/tmp/qbench-reference
mkdir -p "$out"
if [ -n "${QBENCH_RESUME_DIR:-}" ] && [ -d "$QBENCH_RESUME_DIR" ]; then
  cp -n "$QBENCH_RESUME_DIR"/*.json "$out"/ 2>/dev/null; chmod u+w "$out"/*.json 2>/dev/null
fi
deadline=$(( $(date +%s) + ${QBENCH_CALL_SECONDS:-540} ))
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-' | tr -d '\r')
nvidia-smi --query-gpu=index,name,driver_version,clocks.sm,clocks.mem,memory.used,memory.total --format=csv \
  | tee "$out/nvidia-smi.txt"
df -h /tmp | tee "$out/disk.txt"
# A claim is a directory made with mkdir (atomic), fresh for each call; a shard whose run ended with status 0 has a
# done marker and is not run again.
claims=$(mktemp -d "$out/claims.XXXXXX")

run_worker() {
  local gpu=$1 s file left rc
  for s in "${shards[@]}"; do
    [ -e "$out/done-$name-$s-of-$count" ] && continue
    mkdir "$claims/$s" 2>/dev/null || continue
    file="$out/${gpu_name}-${name}-shard${s}of${count}.json"
    left=$(( deadline - $(date +%s) ))
    [ "$left" -gt 60 ] || { echo "[gpu $gpu] no time left for shard $s"; return; }
    echo "[gpu $gpu] $(date +%T) shard $s/$count -> $(basename "$file") (${left}s left)"
    CUDA_VISIBLE_DEVICES=$gpu timeout --signal=TERM --kill-after=20 "$left" \
      "$qbench" run "$matrix" --configs configs --device cuda --resume --shard "$s/$count" -o "$file" \
      --work-dir "$out/work-$name-shard$s" --timeout "${QBENCH_CELL_TIMEOUT:-600}" >>"$out/$name-shard$s.log" 2>&1
    rc=$?
    echo "[gpu $gpu] $(date +%T) shard $s/$count exit $rc"
    [ "$rc" -eq 0 ] && touch "$out/done-$name-$s-of-$count"
  done
}

for (( g = 0; g < gpus; g++ )); do run_worker "$g" & done
wait
rm -rf "$claims"

cd "$out"
for f in "${gpu_name}-${name}"-shard*of"${count}".json; do
  [ -e "$f" ] || continue
  "$qbench" report "$f" --configs "$root/configs" > "${f%.json}-report.md" 2>&1 || true
  python3 - "$f" <<'EOF' 2>/dev/null || true
import json, sys, collections
d = json.load(open(sys.argv[1]))
n = collections.Counter(c["outcome"] for c in d["cells"])
print(f"{sys.argv[1]}: {len(d['cells'])} cells", dict(n))
EOF
done
ls done-* 2>/dev/null
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/study-results.tar.gz" ./*.json ./*-report.md 2>/dev/null
  find . -maxdepth 1 \( -name '*.log' -o -name '*.txt' \) > logs.list
  find work-* -name '*.log' -size -5M >> logs.list 2>/dev/null
  tar czf "$OUT/study-logs.tar.gz" -T logs.list 2>/dev/null
  ls -la "$OUT"
fi
