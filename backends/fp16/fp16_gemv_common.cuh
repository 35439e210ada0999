#pragma once
// Internal header of the fp16 GEMV (fp16_gemv.cuh): what its kernel files (fp16_gemv_ffma.cu: the fp32-FMA and scalar
// kernels; fp16_gemv_mma.cu: the tensor-core kernel with its folded RMSNorm) and its host launch and planning
// (fp16_gemv.cu) share. That is a launch's job (gemv_job: which weight rows it reads and where their sums go) with the
// weight load and the epilogue stores of both vectorized kernels, the kernel pointer types, the resolved variant and
// the pick_* functions through which the host code gets a kernel. Everything here is in qbench::f16_gemv_detail and
// is an inline function or constant, a type or a declaration, so several .cu files may include it; the kernels
// themselves stay file-local to their .cu.
#include "backends/fp16/fp16_gemv.cuh"

#include "cuda/rms_norm.cuh"
#include "cuda/swiglu.cuh"

#include <cstddef>
#include <cstdint>

namespace qbench::f16_gemv_detail {

inline constexpr int k_warps_per_block = 4;  // fp32-FMA and scalar kernels

// Weights are read exactly once per forward: load them past L1 (no_allocate) so L1 keeps the activations.
__device__ __forceinline__ uint4 load_weight(const uint4* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

// Which weight rows a launch reads and where their sums go. Rows are numbered "virtually" across the launch:
//  - plain: the segments' rows one after the other (q rows, then k rows, then v rows): virtual row v of segment s
//    is its row v - start[s], written to y[s][r * n_s + v - start[s]] for activation row r;
//  - swiglu: gate row i and up row i are read by the same warp (ffma: virtual rows 2i, 2i + 1) or the same mma tile
//    (rows 8T..8T+7 gate, 8T+8..8T+15 up), and only act[r * n + i] = silu(g) * u is written.
// residual (plain, one segment): y0 is the residual stream, updated in place: y = fp16(y + fp16(sum)), the add
// launch_rms_norm would do with delta = fp16(sum). Each output element has exactly one writer, which reads it first.
// norm_w (mma kernel with NORM only): x is the residual stream and the kernel multiplies with h = rms_norm(x) * norm_w,
// formed in its prologue exactly as launch_rms_norm forms it (rms_norm.cuh).
// Segment lookups use selects, not a run-time index into the parameter arrays (which could spill them to local
// memory).
struct gemv_job {
    const uint4* w0;
    const uint4* w1;
    const uint4* w2;
    __half* y0;
    __half* y1;
    __half* y2;
    int start1, start2;  // first virtual row of segments 1 and 2 (plain); unused segments start at `total`
    int total;           // virtual rows (plain: sum of n; swiglu: 2 n)
    int n;               // swiglu: outputs per matrix
    bool swiglu;
    bool residual;
    const uint4* norm_w;  // NORM kernels: the RMSNorm weight (k halves)
    double eps;           // NORM kernels: the RMSNorm epsilon
};

__device__ __forceinline__ int segment_of(const gemv_job& j, int v) { return v >= j.start2 ? 2 : (v >= j.start1 ? 1 : 0); }
__device__ __forceinline__ const uint4* segment_w(const gemv_job& j, int s) { return s == 0 ? j.w0 : (s == 1 ? j.w1 : j.w2); }
__device__ __forceinline__ int segment_start(const gemv_job& j, int s) { return s == 0 ? 0 : (s == 1 ? j.start1 : j.start2); }
__device__ __forceinline__ int segment_end(const gemv_job& j, int s) { return s == 0 ? j.start1 : (s == 1 ? j.start2 : j.total); }

// Weight row of plain virtual row v (clamped into range: rows past the end are loaded, never stored).
__device__ __forceinline__ const uint4* plain_row(const gemv_job& j, int v, int chunks) {
    v = v < j.total ? v : j.total - 1;
    const int s = segment_of(j, v);
    return segment_w(j, s) + static_cast<std::size_t>(v - segment_start(j, s)) * chunks;
}

// Stores the sum of plain virtual row v for activation row r.
__device__ __forceinline__ void plain_store(const gemv_job& j, int v, int r, float sum) {
    if (v >= j.total) return;
    const int s = segment_of(j, v);
    const int first = segment_start(j, s), n = segment_end(j, s) - first;
    __half* y = s == 0 ? j.y0 : (s == 1 ? j.y1 : j.y2);
    __half* at = y + static_cast<std::size_t>(r) * n + (v - first);
    *at = j.residual ? rms_residual_add(*at, __float2half_rn(sum)) : __float2half_rn(sum);
}

// Gate and up sums of one output, rounded to fp16 as the separate linears' outputs are, then the SwiGLU product.
__device__ __forceinline__ void swiglu_store(const gemv_job& j, int i, int r, float gate, float up) {
    if (i >= j.n) return;
    const float g = __half2float(__float2half_rn(gate)), u = __half2float(__float2half_rn(up));
    j.y0[static_cast<std::size_t>(r) * j.n + i] = __float2half_rn(silu_times(g, u));
}

// Row stride (in 16-byte chunks) of the normed activations in shared memory: 64 bytes of padding put the lane
// quads of rows g and g + 1 in different halves of the 128-byte bank window.
__host__ __device__ constexpr int norm_row_stride(int chunks) { return chunks + 4; }

using vec_kernel = void (*)(gemv_job, const uint4*, int);
using scalar_kernel = void (*)(const __half*, const __half*, __half*, int, int);
using mma_kernel = void (*)(gemv_job, const uint4*, int, int);

// A variant with its defaults filled in for a row count on the current device (resolve in fp16_gemv.cu).
struct resolved {
    f16_gemv_kind kind;
    int k_split, rows_per_warp;
    bool pipelined, contiguous, prefetch_x, two_rounds_ahead;
};

// The fp32-FMA kernel for `rows` activation rows, `rpw` output rows per warp (1, 2 or 4; 4 is always pipelined), and
// the scalar kernel for `rows`: from the launch tables in fp16_gemv_ffma.cu.
vec_kernel pick_ffma(std::int64_t rows, int rpw, bool pipelined);
scalar_kernel pick_scalar(std::int64_t rows);

// The mma kernel of a resolved variant with KS warps per tile, and its NORM kernel (null where the variant has none):
// fp16_gemv_mma.cu, instantiated for KS = 4 and 8.
template <int KS>
mma_kernel pick_mma(const resolved& r);
template <int KS>
mma_kernel pick_mma_norm(const resolved& r);

}  // namespace qbench::f16_gemv_detail
