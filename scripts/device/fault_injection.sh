#!/usr/bin/env bash
# On the GPU machine (bundle carried): the runner's isolation on real CUDA. Runs the smoke matrix with --device cuda
# while three cells are sabotaged in their child process — a sticky CUDA fault (a kernel writing through a wild
# pointer), a SIGSEGV and a hang past the per-cell timeout — and checks that exactly those cells are `error` with the
# reason recorded and every other cell still completed. Exit 0 when that holds.
#
#   device run: carry [".device-bundle-x"], command: QBENCH_BUNDLE=.device-bundle-x bash scripts/device/fault_injection.sh
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bundle=${QBENCH_BUNDLE:-.device-bundle}
export LD_LIBRARY_PATH="$root/$bundle/lib:${LD_LIBRARY_PATH:-}"
out=${OUT:-/tmp}/fault-injection
mkdir -p "$out"
results="$out/faults.json"
rm -f "$results"
QBENCH_FAULT_INJECTION="gptq 4b g128 beam1=cuda_fault;bnb 8b beam2=crash;fp16 16b beam2=hang" \
  "$root/$bundle/bin/qbench" run configs/smoke.yaml --configs configs --device cuda --timeout 30 \
  --cache-dir /tmp/qbench-fault-cache -o "$results" > "$out/run.log" 2>&1
echo "qbench run exit $? (non-zero expected: some cells are errors)"
python3 - "$results" <<'PY'
import json, sys
cells = json.load(open(sys.argv[1]))["cells"]
sabotaged = {"gptq 4b g128 beam1": "cuda", "bnb 8b beam2": "signal", "fp16 16b beam2": "timeout"}
bad = 0
for r in cells:
    c = r["cell"]
    label = "%s %db%s beam%d" % (c["framework"], c["bits"], " g128" if c["framework"] == "gptq" else "", c["beam"])
    hit = next((k for k in sabotaged if label.startswith(k) or label == k), None)
    print("%-28s %-11s %s" % (label, r["outcome"], r["reason"][:110]))
    if hit:
        ok = r["outcome"] in ("error", "timeout")
    else:
        ok = r["outcome"] in ("ok", "unsupported")
    bad += not ok
print("cells: %d, unexpected outcomes: %d" % (len(cells), bad))
sys.exit(1 if bad or len(cells) != 16 else 0)
PY
