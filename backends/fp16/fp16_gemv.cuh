#pragma once
/// FP16 GEMV for small batches: y[rows, n] = x[rows, k] · wᵀ, w [n, k] row-major fp16, fp32 accumulation, fp16
/// output, rows 1..8 in ONE pass over the weights (so beam 2 or 4 costs about what beam 1 costs).
///
/// Why not cuBLAS: at n = 1 cuBLAS reaches about 62% of the H200's streaming bandwidth on Llama-7B shapes
/// (PERF.md); a decode step is bound by reading the weights once, so this kernel is what sets decode speed.
///
/// Layout of the work: one warp owns `rows_per_warp` (1 or 2) output rows; lane l reads the 16-byte chunks
/// l, l + 32, l + 64, ... of those weight rows (so a warp reads 512 contiguous bytes per row per step, fully
/// coalesced), two groups of chunks in flight alternately; each weight chunk is converted to fp32 once
/// and multiplied with all `rows` activation rows (read through L1, where they stay: at most 8 x k x 2 bytes);
/// a warp shuffle reduction ends each output. With programmatic dependent launch the first weight chunks are
/// loaded before waiting for the kernel that produces x (weights never change).
/// k not a multiple of 8 (or unaligned pointers) takes a scalar path: correct, not fast.
#include "cuda/launch.cuh"

#include <cuda_fp16.h>

#include <cstdint>
#include <string>

namespace qbench {

/// Rows up to which the GEMV serves a forward; above it cuBLAS does (its GEMM is efficient from there).
inline constexpr std::int64_t k_f16_gemv_max_rows = 8;

/// Output rows per warp: 0 = the default for `rows`; pipelined: two groups of loads alternate (else one burst per
/// group). Defaults chosen from the micro-benchmarks (PERF_NOTES.md).
struct f16_gemv_variant {
    int rows_per_warp = 0;
    bool pipelined = true;
};

/// The variant the fp16 linear uses: the defaults, unless QBENCH_GEMV_RPW (1 or 2) or QBENCH_GEMV_PIPE (0 or 1) are
/// set (for A/B measurements without rebuilding). Read once.
f16_gemv_variant default_f16_gemv_variant();

/// y[rows, n] = x[rows, k] · wᵀ for 1 <= rows <= k_f16_gemv_max_rows.
void launch_f16_gemv(const __half* w, const __half* x, __half* y, std::int64_t rows, std::int64_t n, std::int64_t k,
                     const launch_options& o, f16_gemv_variant variant = {});

/// "gemv-f16-pipe-rpw1", "gemv-f16-burst-rpw2", ... or "gemv-f16-scalar": the variant launch_f16_gemv would run.
std::string f16_gemv_path(const void* w, const void* x, std::int64_t rows, std::int64_t k,
                          f16_gemv_variant variant = {});

}  // namespace qbench
