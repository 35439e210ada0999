#pragma once
/// FP16 GEMV for small batches: y[rows, n] = x[rows, k] · wᵀ, w [n, k] row-major fp16, fp32 accumulation, fp16
/// output, rows 1..8 in ONE pass over the weights (a beam of 4 reads the weights once, as a beam of 1 does).
///
/// Why not cuBLAS: at n = 1 cuBLAS reaches about 62% of the H200's streaming bandwidth on Llama-7B shapes
/// (PERF.md); a decode step is bound by reading the weights once, so this kernel is what sets decode speed.
///
/// Two kernels (fp16_gemv.cu has the layouts):
///  - mma (sm_80+, the default there from 3 rows on): 16 weight rows x the activation rows as the n = 8 columns of
///    mma.m16n8k16 (f16 in, f32 accumulation); each lane loads 16 contiguous bytes of two weight rows and one
///    activation row per step, so an activation load serves 16 output rows and no conversions are needed: as fast at
///    8 rows as at 1. k_split warps per 16-row tile divide K; two rounds of 4 steps are in flight per warp.
///  - ffma (the default at 1-2 rows, and the sm_75 path): a warp owns 1 or 2 output rows, lane l reads the 16-byte chunks l, l + 32, ...
///    (512 contiguous bytes per warp and row per step), converts to fp32 and multiplies with every activation row.
/// Weights are loaded past L1 (ld.global.nc.L1::no_allocate); with programmatic dependent launch the first weight
/// loads are issued before waiting for the kernel that produces x (weights never change).
/// k not a multiple of 8 (or unaligned pointers) takes a scalar path: correct, not fast.
#include "cuda/launch.cuh"

#include <cuda_fp16.h>

#include <cstdint>
#include <string>

namespace qbench {

/// Rows up to which the GEMV serves a forward; above it cuBLAS does (its GEMM is efficient from there).
inline constexpr std::int64_t k_f16_gemv_max_rows = 8;

enum class f16_gemv_kind : std::uint8_t { automatic, mma, ffma };

/// Which kernel and how it is tiled; defaults chosen from the micro-benchmarks (PERF_NOTES.md).
struct f16_gemv_variant {
    f16_gemv_kind kind = f16_gemv_kind::automatic;  ///< automatic: ffma at 1-2 rows, mma from 3 (sm_80+)
    int k_split = 0;        ///< mma: warps per 16-row tile (4 or 8); 0 = 8
    int rows_per_warp = 0;  ///< ffma: output rows per warp (1 or 2); 0 = 2
    bool pipelined = true;  ///< ffma: two groups of loads alternate (else one burst per group)
};

/// The variant the fp16 linear uses: the defaults, unless QBENCH_GEMV (mma | ffma), QBENCH_GEMV_KSPLIT (4 | 8),
/// QBENCH_GEMV_RPW (1 | 2) or QBENCH_GEMV_PIPE (0 | 1) say otherwise (A/B measurements without rebuilding). Read once.
f16_gemv_variant default_f16_gemv_variant();

/// y[rows, n] = x[rows, k] · wᵀ for 1 <= rows <= k_f16_gemv_max_rows.
void launch_f16_gemv(const __half* w, const __half* x, __half* y, std::int64_t rows, std::int64_t n, std::int64_t k,
                     const launch_options& o, f16_gemv_variant variant = {});

/// The kernel launch_f16_gemv would run, e.g. "gemv-f16-mma-ks8", "gemv-f16-ffma-pipe-rpw2", "gemv-f16-scalar".
std::string f16_gemv_path(const void* w, const void* x, std::int64_t rows, std::int64_t n, std::int64_t k,
                          f16_gemv_variant variant = {});

}  // namespace qbench
