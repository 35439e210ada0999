#!/usr/bin/env bash
# Installs the Debian packages qbench builds and tests with, if any is missing. The CUDA toolkit (nvcc, cuBLAS) is
# expected on the machine already; without it qbench builds the CPU reference only.
set -euo pipefail
packages=(cmake g++ make clang libclang-rt-14-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev catch2
          libbenchmark-dev python3-matplotlib python3-jsonschema)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "qbench setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
