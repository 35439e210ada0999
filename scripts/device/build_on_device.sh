#!/usr/bin/env bash
# Builds qbench on the GPU machine itself and leaves the executables in .device-bundle-built/ (the layout bundle.sh
# makes here), so gpu_suite.sh --build can run build, GPU tests and benchmarks in one call.
#
# The GPU machine has nvcc, CMake, ninja and a C++ compiler, but none of Debian's -dev packages qbench builds against
# (yaml-cpp, nlohmann-json, CLI11, Catch2, Google Benchmark), and it cannot download anything. So the .deb files
# travel with the call: scripts/device/fetch_build_deps.sh puts them (about 1.2 MB) and a stamp of the source commit
# into .device-deps/ here; this script unpacks them with dpkg -x into a private prefix (never into /) and points
# CMake at it.
#
#   device run: carry [".device-deps"], command: bash scripts/device/build_on_device.sh [TARGET...]
# QBENCH_CUDA_ARCHITECTURES (default 90), QBENCH_DEVICE_BUILD (default /tmp/qbench-build) as for bundle.sh;
# QBENCH_BUNDLE_NAME (default built: .device-bundle-built/) and QBENCH_EXTRA_CMAKE_ARGS (more configure arguments)
# let a second build of the same tree stand beside the first (gptq_kernel_ab.sh, QBENCH_AB_BUILDS).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
deps_dir=$root/.device-deps
prefix=${QBENCH_DEPS_PREFIX:-/tmp/qbench-deps}
shopt -s nullglob
debs=("$deps_dir"/*.deb)
[ ${#debs[@]} -gt 0 ] || { echo "build_on_device.sh: no .deb files in $deps_dir (run scripts/device/fetch_build_deps.sh here and carry .device-deps)" >&2; exit 2; }
mkdir -p "$prefix"
for deb in "${debs[@]}"; do dpkg -x "$deb" "$prefix"; done
# The copied tree has no .git: the stamp says which commit it is (cmake/git_version.cmake reads these).
if [ -f "$deps_dir/source-stamp" ]; then
  read -r QBENCH_SOURCE_COMMIT QBENCH_SOURCE_DIRTY < "$deps_dir/source-stamp"
  export QBENCH_SOURCE_COMMIT QBENCH_SOURCE_DIRTY
fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
echo "build_on_device: $(nproc) cores, $(cmake --version | head -1), $(nvcc --version | tail -1), $(c++ --version | head -1)"
echo "build_on_device: source ${QBENCH_SOURCE_COMMIT:-unknown} (dirty ${QBENCH_SOURCE_DIRTY:--1})"
start=$(date +%s)
QBENCH_BUNDLE_NAME=${QBENCH_BUNDLE_NAME:-built} QBENCH_DEVICE_BUILD=${QBENCH_DEVICE_BUILD:-/tmp/qbench-build} \
QBENCH_CMAKE_ARGS="${generator[*]} -DCMAKE_PREFIX_PATH=$prefix/usr ${QBENCH_EXTRA_CMAKE_ARGS:-}" \
  bash "$root/scripts/device/bundle.sh" "$@"
echo "build_on_device: built in $(( $(date +%s) - start )) s"
