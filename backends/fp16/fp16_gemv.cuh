#pragma once
/// FP16 GEMV for small batches: y[rows, n] = x[rows, k] · wᵀ, w [n, k] row-major fp16, fp32 accumulation, fp16
/// output, rows 1..8 in ONE pass over the weights (a beam of 4 reads the weights once, as a beam of 1 does).
///
/// Why not cuBLAS: at n = 1 cuBLAS reaches about 62% of the H200's streaming bandwidth on Llama-7B shapes
/// (PERF.md); a decode step is bound by reading the weights once, so this kernel is what sets decode speed.
///
/// Two kernels (fp16_gemv_mma.cu and fp16_gemv_ffma.cu have the layouts):
///  - mma (sm_80+, the default there at every row count unless QBENCH_GEMV_MMA_FROM says otherwise): 16 weight rows x the activation
///    rows as the n = 8 columns of mma.m16n8k16 (f16 in, f32 accumulation); each lane loads 16 contiguous bytes of
///    two weight rows and one activation row per step, so an activation load serves 16 output rows and no
///    conversions are needed: as fast at 8 rows as at 1. k_split warps per 16-row tile divide K (strided or
///    contiguous ranges); two rounds of 4 steps are in flight per warp, optionally with their activations.
///  - ffma (the sm_75 path): a warp owns 1, 2 or 4 output rows (QBENCH_GEMV_RPW), lane l reads the 16-byte
///    chunks l, l + 32, ... (512 contiguous bytes per warp and row per step), converts to fp32 and multiplies with
///    every activation row.
/// Both serve a "job": one linear, up to three linears of one input in one launch (q, k, v), or gate and up with the
/// SwiGLU product formed in the epilogue (each output is bit-identical to the separate launches).
/// Folded RMSNorm (decode, mma kernel only): the residual add moves into the epilogue of the linear that produces the
/// block output (o_proj, down_proj: x = fp16(x + fp16(x_in · wᵀ)) in place), and the RMSNorm into the prologue of
/// the linears that read its output (q/k/v, gate/up, lm_head: each block forms h = rms_norm(x) * g for all rows in
/// shared memory, with launch_rms_norm's reduction order, so h is bit-identical). A decode layer is then 5 kernels.
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

/// How the mma kernel's warps walk K: strided (warp w takes 32-half steps w, w + k_split, ...: the warps of a block
/// read neighbouring 64-byte pieces at once) or contiguous (warp w owns one K range: each lane quad streams its rows).
enum class f16_mma_layout : std::uint8_t { automatic, strided, contiguous };

/// Which kernel and how it is tiled; defaults chosen from the micro-benchmarks (PERF_NOTES.md).
struct f16_gemv_variant {
    f16_gemv_kind kind = f16_gemv_kind::automatic;  ///< automatic: mma on sm_80+ (QBENCH_GEMV_MMA_FROM), else ffma
    int k_split = 0;        ///< mma: warps per 16-row tile (4 or 8); 0 = 8
    int rows_per_warp = 0;  ///< ffma: output rows per warp (1, 2 or 4; 4 is always pipelined); 0 = 2
    bool pipelined = true;  ///< ffma: two groups of loads alternate (else one burst per group)
    f16_mma_layout layout = f16_mma_layout::automatic;  ///< mma: K walk; automatic = contiguous
    int prefetch_x = -1;    ///< mma: activations loaded with the weights, a round ahead (1) or at use (0); -1 = 1
    int ahead_rounds = 0;   ///< mma with prefetch_x: weight rounds requested before the PDL wait (1 or 2); 0 = 2
};

/// One of several linears that read the same activations (q, k and v of a layer): w [n, k], y [rows, n].
struct f16_gemv_segment {
    const __half* w = nullptr;
    __half* y = nullptr;
    std::int64_t n = 0;
};
inline constexpr int k_f16_gemv_max_segments = 3;

/// The RMSNorm a GEMV forms in its prologue: the launch's x is the residual stream, and the kernel multiplies with
/// h = rms_norm(x) * weight exactly as launch_rms_norm(x, nullptr, weight, eps, ...) writes it (rms_norm.cuh).
struct f16_gemv_norm {
    const __half* weight = nullptr;  ///< [k] fp16, 16-byte aligned
    double eps = 0;
};

/// The variant the fp16 linear uses: the defaults, unless QBENCH_GEMV (mma | ffma), QBENCH_GEMV_KSPLIT (4 | 8),
/// QBENCH_GEMV_RPW (1 | 2 | 4), QBENCH_GEMV_PIPE (0 | 1), QBENCH_GEMV_LAYOUT (strided | contiguous),
/// QBENCH_GEMV_XPRE (0 | 1) or QBENCH_GEMV_AHEAD (1 | 2) say otherwise (A/B measurements without rebuilding). Read once.
f16_gemv_variant default_f16_gemv_variant();

/// y[rows, n] = x[rows, k] · wᵀ for 1 <= rows <= k_f16_gemv_max_rows.
void launch_f16_gemv(const __half* w, const __half* x, __half* y, std::int64_t rows, std::int64_t n, std::int64_t k,
                     const launch_options& o, f16_gemv_variant variant = {});

/// y_i[rows, n_i] = x[rows, k] · w_iᵀ for up to k_f16_gemv_max_segments linears in ONE launch (one stream of all
/// their weights). Needs f16_gemv_fusable(); otherwise throws qbench::error.
/// With `norm`, x is the residual stream and the linears read rms_norm(x) (needs f16_gemv_norm_foldable()).
void launch_f16_gemv_group(const f16_gemv_segment* segments, int count, const __half* x, std::int64_t rows,
                           std::int64_t k, const launch_options& o, f16_gemv_variant variant = {},
                           const f16_gemv_norm* norm = nullptr);

/// The Llama MLP's first half in one launch: act[rows, n] = fp16(silu(g) * u) with g = fp16(x · w_gateᵀ) and
/// u = fp16(x · w_upᵀ) rounded as the separate linears and swiglu round them (silu in double, as swiglu_ref).
/// Needs f16_gemv_fusable(); otherwise throws qbench::error.
/// With `norm` as in launch_f16_gemv_group.
void launch_f16_gemv_swiglu(const __half* w_gate, const __half* w_up, const __half* x, __half* act,
                            std::int64_t rows, std::int64_t n, std::int64_t k, const launch_options& o,
                            f16_gemv_variant variant = {}, const f16_gemv_norm* norm = nullptr);

/// The residual add in the epilogue: x[rows, n] = fp16(x + fp16(a[rows, k] · wᵀ)) in place, bit-identical to
/// launch_f16_gemv into a delta buffer followed by launch_rms_norm's add. Needs f16_gemv_fusable(w, a, rows, k).
void launch_f16_gemv_residual(const __half* w, const __half* a, __half* x, std::int64_t rows, std::int64_t n,
                              std::int64_t k, const launch_options& o, f16_gemv_variant variant = {});

/// Whether the `norm` launches above take these pointers and sizes with this variant on the current device: fusable,
/// k / 8 <= k_rms_norm_max_chunks, the mma kernel in its default layout (so never on sm_75, where the separate
/// RMSNorm kernel stays), and the normed rows fit in shared memory.
bool f16_gemv_norm_foldable(const void* w, const void* x, const void* norm_weight, std::int64_t rows, std::int64_t k,
                            f16_gemv_variant variant = {});

/// Whether the fused launches above take these pointers and sizes (16-byte aligned, k % 8 == 0, 1..8 rows).
bool f16_gemv_fusable(const void* w, const void* x, std::int64_t rows, std::int64_t k);

/// The kernel launch_f16_gemv would run, e.g. "gemv-f16-mma-ks8", "gemv-f16-ffma-pipe-rpw2", "gemv-f16-scalar".
std::string f16_gemv_path(const void* w, const void* x, std::int64_t rows, std::int64_t n, std::int64_t k,
                          f16_gemv_variant variant = {});

}  // namespace qbench
