#!/usr/bin/env bash
# Configures and builds one CMake preset (default: "default"): scripts/build.sh [PRESET] [extra cmake -D options]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
preset=${1:-default}
shift || true
jobs=${QBENCH_JOBS:-$(nproc)}
cmake --preset "$preset" -S "$root" "$@" >/dev/null
cmake --build --preset "$preset" -j"$jobs"
