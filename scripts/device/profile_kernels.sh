#!/usr/bin/env bash
# Nsight Compute profile of chosen decode kernels on the GPU machine: where a kernel's warps wait (stall reasons,
# the source lines they wait on), how busy its pipes and memory are. Counters need a Firecracker kind (H200.md:
# gVisor has none); clocks are left alone (--clock-control none, METHOD.md).
#
# usage (from the repository root, after build_on_device.sh / gpu_suite.sh --build left .device-bundle-built/):
#   scripts/device/profile_kernels.sh [SPEC...]      SPEC = name@binary@benchmark_filter@kernel (ncu's --kernel-name,
#                                                    e.g. regex:mma_gemm)
# QBENCH_NCU_SOURCE=1 also writes the per-SASS-instruction page of each kernel ($OUT/src-NAME.csv: stall samples
# per instruction).
# with no SPEC, the batch-1 kernels of a Llama-7B gate/up linear of each backend (gptq 4-bit, bnb nf4, fp16).
# Output: one text file, $OUT/ncu.txt (the device tool returns few files).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-$root/out}
mkdir -p "$out"
bundle=${QBENCH_BUNDLE:-.device-bundle-built}
export LD_LIBRARY_PATH=$root/$bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
bin=$root/$bundle/bin

specs=("$@")
if [ ${#specs[@]} -eq 0 ]; then
  specs=(
    "gptq4-gateup@bench_gptq@BM_gptq_linear/1/1/4/@regex:mma_gemm_kernel"
    "bnb-nf4-gateup@bench_bnb@BM_bnb_gemv_4bit/shape:1/fp4:0/dq:0/m:1/variant:0/graph:1/@regex:team"
    "fp16-gateup@bench_bnb@BM_fp16_gemv/shape:1/m:1/@regex:f16_gemv"
  )
fi
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$ncu" ] || { echo "profile_kernels.sh: no ncu here" >&2; exit 2; }
report=$out/ncu.txt
echo "# $($ncu --version | tail -1)" > "$report"
sections=(--section SpeedOfLight --section MemoryWorkloadAnalysis --section SchedulerStats --section WarpStateStats
          --section Occupancy --section LaunchStats --section InstructionStats --section SourceCounters
          --metrics 'regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio$')
for spec in "${specs[@]}"; do
  IFS=@ read -r name binary filter kernel <<< "$spec"
  echo "== $name ($binary '$filter', kernel $kernel)" | tee -a "$report"
  start=$(date +%s)
  # Skip the first launches (warm-up, the device's own streaming probe); one kernel is enough for the counters.
  export_args=()
  [ "${QBENCH_NCU_SOURCE:-0}" = 1 ] && export_args=(--export "/tmp/ncu-$name" --force-overwrite)
  timeout 240 "$ncu" --clock-control none --kernel-name "$kernel" --launch-skip 8 --launch-count 1 "${sections[@]}" \
    --print-summary none --print-details all "${export_args[@]}" "$bin/$binary" --benchmark_filter="$filter" >> "$report" 2>&1
  echo "== $name: exit $? in $(( $(date +%s) - start )) s" | tee -a "$report"
  if [ "${QBENCH_NCU_SOURCE:-0}" = 1 ] && [ -f "/tmp/ncu-$name.ncu-rep" ]; then
    "$ncu" --import "/tmp/ncu-$name.ncu-rep" --page source --print-source sass --csv > "$out/src-$name.csv" 2>&1
  fi
done
grep -E '^==|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Issue Slots Busy|No Eligible|Active Warps Per|Eligible Warps|Warp Cycles Per Issued|Registers Per|Achieved Occupancy|Executed Ipc A' "$report"
