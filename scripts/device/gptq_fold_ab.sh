#!/usr/bin/env bash
# On the GPU machine, in one call: is GPTQ v3's folded RMSNorm faster than the separate RMSNorm kernels, and where
# does its time go? Steps (QBENCH_FOLD_STEPS, in this order, default "normtest bench e2e tests"):
#   normtest  the folded-norm GPU test (bit-identical to launch_rms_norm + the separate launches) and the RMSNorm
#             kernel's test against the CPU reference
#   bench     bench_gptq BM_decode_7b_fused/4 (modes 0 separate, 1 fused, 2 fused + RMSNorm kernels, 3 folded,
#             4 only the residual adds folded) at beams 1/2/4
#   ncu       Nsight Compute: each v3 kernel of the first layers at beam 1 in modes 2, 3 and 4, timed alone
#             (gpu__time_duration, --clock-control none), so a folded kernel's time sits beside the plain one's
#   probe     the folded kernels' prologue taken apart (QBENCH_GPTQ_NORM_PROBE=0..3: all, without the sums of squares,
#             without the row sums and inverse RMS, without both; wrong outputs, timing only): bench_gptq mode 3 and
#             ncu's time of layer 0's folded q/k/v and gate/up kernels for each
#   e2e       qbench on configs/gptq-7b-quick.yaml twice: QBENCH_FP16_FOLD_NORM=0 and =1, results files
#             <gpu>-gptq-7b-quick-nofold.json / <gpu>-gptq-7b-quick-fold.json
#   tests     the GPTQ GPU tests (kernels, fused)
#   bnbtests  the bnb GPU tests (kernels, fused, linear, pdl)
# First it builds what the steps need (build_on_device.sh). Every step checks the call's deadline
# (QBENCH_CALL_SECONDS, default 560); logs go to $OUT as they are written, summary.txt gathers the results.
#
#   device run: carry [".device-deps"], command: QBENCH_FOLD_STEPS="bench ncu" bash scripts/device/gptq_fold_ab.sh
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-$root/out}
mkdir -p "$out"
deadline=$(( $(date +%s) + ${QBENCH_CALL_SECONDS:-560} ))
left() { echo $(( deadline - $(date +%s) )); }
steps=" ${QBENCH_FOLD_STEPS:-normtest bench e2e tests} "
has() { [[ $steps == *" $1 "* ]]; }
export QBENCH_CONFIG_DIR=$root/configs QBENCH_CACHE_DIR=${QBENCH_CACHE_DIR:-/tmp/qbench-cache}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem --format=csv | tee "$out/summary.txt"

targets=()
has e2e && targets+=(qbench)
{ has normtest || has tests; } && targets+=(test_gpu_gptq_kernels test_gpu_gptq_fused test_gpu_kernels test_gpu_f16_gemv)
{ has bench || has ncu || has probe; } && targets+=(bench_gptq)
has bnbtests && targets+=(test_gpu_bnb_kernels test_gpu_bnb_fused test_gpu_bnb_linear test_gpu_bnb_pdl)
if ! bash scripts/device/build_on_device.sh "${targets[@]}" > "$out/build.log" 2>&1; then
  tail -n 60 "$out/build.log"; echo "gptq_fold_ab.sh: the build failed" >&2; exit 1
fi
grep '^build_on_device' "$out/build.log" | tee -a "$out/summary.txt"
bin=$root/.device-bundle-built/bin
export LD_LIBRARY_PATH=$root/.device-bundle-built/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

run_test() {  # name [catch2 filter]
  local start rc log="$out/test-$1${2:+-filtered}.log"
  [ "$(left)" -gt 30 ] || { echo "no time left for $1" | tee -a "$out/summary.txt"; return; }
  start=$(date +%s)
  timeout $(( $(left) - 10 )) "$bin/$1" ${2:+"$2"} > "$log" 2>&1
  rc=$?
  echo "test $1 ${2:-}: exit $rc ($(( $(date +%s) - start )) s) $(grep -E '^(All tests passed|test cases:)' "$log" | tail -1)" | tee -a "$out/summary.txt"
}

if has normtest; then run_test test_gpu_gptq_fused '[norm]'; run_test test_gpu_kernels 'rms_norm*'; run_test test_gpu_f16_gemv '[fold]'; fi

if has bench && [ "$(left)" -gt 120 ]; then
  timeout $(( $(left) - 60 )) "$bin/bench_gptq" --benchmark_filter='BM_decode_7b_fused/4/' > "$out/bench-fold.txt" 2>&1
  echo "bench_gptq: exit $?" | tee -a "$out/summary.txt"
  sed -n '/^Llama-7B/,$p' "$out/bench-fold.txt" | tee -a "$out/summary.txt"
fi

if has ncu; then
  # The first graph a mode builds is beam 1; its first 12 v3 launches are layers 0-2 (q/k/v, o, gate/up, down).
  for mode in 2 3 4; do
    [ "$(left)" -gt 60 ] || { echo "no time left for ncu mode $mode" | tee -a "$out/summary.txt"; continue; }
    timeout $(( $(left) - 30 )) ncu --clock-control none --cache-control none --kernel-name-base function \
        --kernel-name regex:a_gemm_kernel --launch-count 12 \
        --metrics gpu__time_duration.sum,dram__bytes_read.sum,launch__grid_size,launch__registers_per_thread,launch__shared_mem_per_block_dynamic \
        --csv "$bin/bench_gptq" --benchmark_filter="BM_decode_7b_fused/4/$mode/" > "$out/ncu-mode$mode.csv" 2> "$out/ncu-mode$mode.err"
    echo "ncu mode $mode: exit $?" | tee -a "$out/summary.txt"
    # ID, kernel (template arguments), grid, metric, value
    grep '^"[0-9]' "$out/ncu-mode$mode.csv" | awk -F'","' '{gsub(/"/, "", $NF); print $1, $5, $(NF-2), $NF}' \
        | sed -E 's/^"//; s/\(qbench::gptq::a_args\)//' | tee -a "$out/summary.txt"
  done
fi

if has probe; then
  for probe in 0 1 2 3; do
    [ "$(left)" -gt 60 ] || { echo "no time left for probe $probe" | tee -a "$out/summary.txt"; continue; }
    QBENCH_GPTQ_NORM_PROBE=$probe timeout $(( $(left) - 30 )) "$bin/bench_gptq" --benchmark_filter='BM_decode_7b_fused/4/3/' \
        > "$out/bench-probe$probe.txt" 2>&1
    echo "probe $probe: $(grep -E '^BM_decode_7b_fused' "$out/bench-probe$probe.txt" | sed -E 's/ +/ /g' | cut -d' ' -f1,2,3)" | tee -a "$out/summary.txt"
    QBENCH_GPTQ_NORM_PROBE=$probe timeout $(( $(left) - 30 )) ncu --clock-control none --cache-control none \
        --kernel-name-base function --kernel-name regex:a_gemm_kernel --launch-count 8 --metrics gpu__time_duration.sum \
        --csv "$bin/bench_gptq" --benchmark_filter='BM_decode_7b_fused/4/3/' > "$out/ncu-probe$probe.csv" 2> /dev/null
    grep '^"[0-9]' "$out/ncu-probe$probe.csv" | awk -F'","' '{gsub(/"/, "", $NF); print $1, $5, $NF}' \
        | sed -E 's/^"//; s/\(qbench::gptq::a_args\)//; s/void .*a_gemm_kernel/a_gemm_kernel/' | tee -a "$out/summary.txt"
  done
fi

if has e2e; then
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-' | tr -d '\r')
  for fold in 0 1; do
    [ "$(left)" -gt 60 ] || { echo "no time left for the fold=$fold run" | tee -a "$out/summary.txt"; continue; }
    name=$([ "$fold" = 0 ] && echo nofold || echo fold)
    QBENCH_FP16_FOLD_NORM=$fold timeout --signal=TERM --kill-after=15 $(( $(left) - 20 )) "$bin/qbench" run \
        configs/gptq-7b-quick.yaml --configs configs --device cuda --resume -o "$out/${gpu}-gptq-7b-quick-$name.json" \
        --work-dir "/tmp/qbench-work-$name" > "$out/qbench-$name.log" 2>&1
    echo "qbench fold=$fold: exit $?" | tee -a "$out/summary.txt"
    grep '^|' "$out/qbench-$name.log" | tail -n 6 | tee -a "$out/summary.txt"
  done
fi

if has tests; then for t in test_gpu_gptq_kernels test_gpu_gptq_fused; do run_test "$t"; done; fi
if has bnbtests; then for t in test_gpu_bnb_kernels test_gpu_bnb_fused test_gpu_bnb_linear test_gpu_bnb_pdl; do run_test "$t"; done; fi
