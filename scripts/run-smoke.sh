#!/usr/bin/env bash
# The main job: install what is missing, build, and run the smoke matrix (configs/smoke.yaml) on the local GPU when
# there is one, else on the CPU reference; prints a table of the cells and writes qbench-results/smoke-<time>.json.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
scripts/build.sh default
exec build/default/harness/cli/qbench run configs/smoke.yaml --device auto "$@"
