#!/usr/bin/env bash
# Here (a Debian machine with network): downloads the .deb files qbench builds against into .device-deps/ and writes
# the source stamp (commit, dirty flag), so a GPU machine without Debian's -dev packages can build qbench
# (scripts/device/build_on_device.sh). Run it again after committing: the stamp names the commit being carried.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
deps_dir=$root/.device-deps
mkdir -p "$deps_dir"
exclude=$(git -C "$root" rev-parse --git-path info/exclude)
case $exclude in /*) ;; *) exclude=$root/$exclude ;; esac
grep -qxF '/.device-deps/' "$exclude" 2>/dev/null || echo '/.device-deps/' >> "$exclude"
# The runtime and -dev packages of yaml-cpp and Google Benchmark, and the header-only ones.
packages=(libyaml-cpp-dev libyaml-cpp0.7 nlohmann-json3-dev libcli11-dev catch2 libbenchmark-dev libbenchmark1debian)
if ! ls "$deps_dir"/*.deb >/dev/null 2>&1; then
  (cd "$deps_dir" && apt-get download "${packages[@]}")
fi
dirty=0
[ -z "$(git -C "$root" status --porcelain)" ] || dirty=1
echo "$(git -C "$root" rev-parse HEAD) $dirty" > "$deps_dir/source-stamp"
ls -la "$deps_dir"; cat "$deps_dir/source-stamp"
