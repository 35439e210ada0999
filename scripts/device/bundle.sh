#!/usr/bin/env bash
# Builds qbench here (Release, sm_90 by default) and copies the executables plus the shared libraries the GPU
# machine lacks (Debian's yaml-cpp and Google Benchmark; CUDA's own libraries are there) into .device-bundle/,
# which a `device` run carries (carry: [".device-bundle"]). QBENCH_BUNDLE_NAME=x uses .device-bundle-x/ and
# build-device-x/ instead, so several bundles can be prepared side by side. The GPU machine has no Debian -dev packages, so
# building here and carrying the binaries is the cheap path; they ran there unchanged (PERF.md).
#
# usage: scripts/device/bundle.sh [TARGET...]      (default: every executable)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
suffix=${QBENCH_BUNDLE_NAME:+-$QBENCH_BUNDLE_NAME}
build=${QBENCH_DEVICE_BUILD:-/work/build-device$suffix}
bundle=$root/.device-bundle$suffix
# Keep bundles out of git (also right in a worktree, where .git is a file; a copied tree without git has nothing to do).
if exclude=$(git -C "$root" rev-parse --git-path info/exclude 2>/dev/null); then
  case $exclude in /*) ;; *) exclude=$root/$exclude ;; esac
  if [ -d "$(dirname "$exclude")" ]; then
    grep -qxF '/.device-bundle*/' "$exclude" 2>/dev/null || echo '/.device-bundle*/' >> "$exclude"
  fi
fi
# QBENCH_CMAKE_ARGS: extra configure arguments, e.g. -G Ninja -DCMAKE_PREFIX_PATH=... (build_on_device.sh).
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DQBENCH_CUDA_ARCHITECTURES="${QBENCH_CUDA_ARCHITECTURES:-90}" \
      -DQBENCH_BUILD_TESTS=ON -DQBENCH_BUILD_BENCHES=ON ${QBENCH_CMAKE_ARGS:-} >/dev/null
if [ $# -gt 0 ]; then
  cmake --build "$build" -j"$(nproc)" --target "$@"
else
  cmake --build "$build" -j"$(nproc)"
fi
rm -rf "$bundle"; mkdir -p "$bundle/bin" "$bundle/lib"
find "$build" -type f -executable \( -name 'qbench' -o -name 'test_*' -o -name 'bench_*' \) -not -path '*/CMakeFiles/*' \
  -exec cp {} "$bundle/bin/" \;
# Whatever the binaries load from Debian's yaml-cpp and Google Benchmark packages (names vary: libbenchmark.so.1debian).
for bin in "$bundle"/bin/*; do
  ldd "$bin" 2>/dev/null | awk '/libyaml-cpp|libbenchmark/ {print $3}'
done | sort -u | while read -r p; do [ -n "$p" ] && cp -L "$p" "$bundle/lib/"; done
strip --strip-debug "$bundle"/bin/* 2>/dev/null || true
du -sh "$bundle"
