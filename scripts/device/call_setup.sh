# Sourced (not run) by the device-call scripts: `source "$(dirname "$0")/call_setup.sh" SECONDS`. Sets strict mode
# (without -e: a failed step must not lose the logs of the others), moves to the repository root ($root), makes the
# output directory ($out: $OUT on the GPU machine, else ./out) and sets $deadline, SECONDS from now. After a build by
# build_on_device.sh, `use_built_bundle` puts its libraries on the path and sets $bin to its executables.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
out=${OUT:-$root/out}
mkdir -p "$out"
deadline=$(( $(date +%s) + ${1:?call_setup.sh: the call seconds} ))
use_built_bundle() {
  export LD_LIBRARY_PATH=$root/.device-bundle-built/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  bin=$root/.device-bundle-built/bin
}
