#pragma once
/// RMSNorm with the residual add folded in (one pass over the row instead of two kernels), and the pieces a GEMV
/// needs to form the same normed activations in its own prologue (fp16 decode folds the norm into the next linear).
///
/// Bit-exactness contract (what a folded prologue must reproduce, and what the fast kernel below does):
///   residual add   x = fp16(float(x) + float(delta))                               (rms_residual_add)
///   chunk c        the 8 halves x[8c .. 8c + 7]; s_c = ((((0 + (x0² + x1²)) + (x2² + x3²)) + ...) in double
///                  (rms_chunk_sumsq; squares of fp16 values are exact in double and in fp32 alike -- 11-bit
///                  significands, 2^-48 <= x² < 2^32 -- so they are formed in fp32 and only the sums run in double)
///   warp w         W_w = xor-butterfly sum (offsets 16, 8, 4, 2, 1) of s_{32w} .. s_{32w+31}, 0 past the row
///   row            sumsq = the same butterfly over W_0 .. W_31, 0 past ceil(chunks / 32) (rms_butterfly)
///   inverse RMS    inv = float(1 / sqrt(sumsq / hidden + eps)) in double                (rms_inv)
///   output         h = fp16(fp16(x * inv) * w) with two fp32 products                  (rms_norm_out)
/// This holds for hidden % 8 == 0, hidden <= 8 * k_rms_norm_max_chunks and 16-byte aligned rows (the fast path);
/// other shapes take a strided kernel with its own order (and are never folded).
#include "cuda/launch.cuh"

#include <cuda_fp16.h>

#include <cstdint>

namespace qbench {

/// Chunks of 8 halves the fast (and foldable) path handles per row: one per thread of a 1024-thread block.
inline constexpr std::int64_t k_rms_norm_max_chunks = 1024;

/// For each of `rows` rows of width `hidden`: when `delta` is not null, x = fp16(x + delta) (the residual stream,
/// updated in place); then out = fp16( fp16(x * inv) * weight ), inv = float(1 / sqrt(mean(x^2) + eps)) with the
/// mean in double (rms_norm_ref).
void launch_rms_norm(__half* x, const __half* delta, const __half* weight, double eps, std::int64_t rows,
                     std::int64_t hidden, __half* out, const launch_options& o);

/// Whether launch_rms_norm takes its fast path for these sizes and pointers (null pointers count as aligned): the
/// path whose reduction order a folded GEMV prologue reproduces.
bool rms_norm_fast_path(const void* x, const void* delta, const void* weight, const void* out, std::int64_t hidden);

/// Whether a block of `block_warps` whole warps can form the RMSNorm of rows of `hidden` with
/// rms_norm_row_by_warps<max_per> (each warp standing for at most max_per of the fast kernel's warps).
inline bool rms_norm_warps_fit(std::int64_t hidden, int block_warps, int max_per) {
    const std::int64_t warps = (hidden / 8 + 31) / 32;
    return block_warps > 0 && (warps + block_warps - 1) / block_warps <= max_per;
}

#if defined(__CUDACC__)
/// fp16(x + delta) as the residual add rounds it (one fp32 add, one rounding).
__device__ __forceinline__ __half rms_residual_add(__half x, __half delta) {
    return __float2half_rn(__fadd_rn(__half2float(x), __half2float(delta)));
}

/// s_c of one 16-byte chunk of 8 halves, in the contract's order.
__device__ __forceinline__ double rms_chunk_sumsq(const uint4& chunk) {
    const __half2* h = reinterpret_cast<const __half2*>(&chunk);
    double s = 0.0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const float2 f = __half22float2(h[j]);
        // Exact products in fp32 (see the contract above): the same doubles as __dmul_rn of the converted values, at
        // fp32 speed, which matters in the folded GEMV prologues where every CTA of a launch forms the sums.
        const double a2 = __fmul_rn(f.x, f.x), b2 = __fmul_rn(f.y, f.y);
        s = __dadd_rn(s, __dadd_rn(a2, b2));
    }
    return s;
}

/// The xor butterfly over a warp's 32 lanes (every lane gets the same sum: each step adds the same two values).
__device__ __forceinline__ double rms_butterfly(double v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = __dadd_rn(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

/// The inverse RMS from the row's sum of squares (rms_norm_ref: mean in double, rounded once to float).
__device__ __forceinline__ float rms_inv(double sumsq, std::int64_t hidden, double eps) {
    return static_cast<float>(1.0 / sqrt(sumsq / static_cast<double>(hidden) + eps));
}

/// One normed element: fp16(fp16(x * inv) * w).
__device__ __forceinline__ __half rms_norm_out(float x, float inv, __half w) {
    const float normed = __half2float(__float2half_rn(__fmul_rn(x, inv)));
    return __float2half_rn(__fmul_rn(normed, __half2float(w)));
}

/// A chunk of 8 normed halves from 8 residual halves and 8 norm weights.
__device__ __forceinline__ uint4 rms_norm_chunk(const uint4& x, float inv, const uint4& w) {
    const __half* xh = reinterpret_cast<const __half*>(&x);
    const __half* wh = reinterpret_cast<const __half*>(&w);
    uint4 out;
    __half* oh = reinterpret_cast<__half*>(&out);
#pragma unroll
    for (int j = 0; j < 8; ++j) oh[j] = rms_norm_out(__half2float(xh[j]), inv, wh[j]);
    return out;
}

/// The norm weights thread (warp, lane) of a block of `block_warps` warps applies in rms_norm_row_by_warps: chunk
/// (warp + block_warps * j) * 32 + lane for j < MaxPer (zero past the row).
template <int MaxPer>
__device__ __forceinline__ void rms_norm_weights_by_warps(const __half* weight, int hidden, int block_warps,
                                                          uint4 (&w)[MaxPer]) {
    const int chunks = hidden / 8;
    const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
#pragma unroll
    for (int j = 0; j < MaxPer; ++j) {
        const int c = (warp + block_warps * j) * 32 + lane;
        w[j] = c < chunks ? __ldg(reinterpret_cast<const uint4*>(weight) + c) : make_uint4(0u, 0u, 0u, 0u);
    }
}

/// out = the contract's RMSNorm of one row x (already updated; read past L1, since other SMs may have written it),
/// by a block of `block_warps` warps, each standing for the fast kernel's warps w, w + block_warps, ... so that rows of
/// up to k_rms_norm_max_chunks chunks reduce in its order (bit-identical to launch_rms_norm). MaxPer bounds the fast
/// kernel's warps per warp (rms_norm_warps_fit); w: the weights from rms_norm_weights_by_warps. warp_sums: 32 doubles
/// of shared memory. Every thread of the block calls it; it ends with a barrier (warp_sums may be reused).
template <int MaxPer>
__device__ __forceinline__ void rms_norm_row_by_warps(const __half* x, int hidden, const uint4 (&w)[MaxPer], double eps,
                                                      __half* out, double* warp_sums, int block_warps) {
    const int chunks = hidden / 8, warps = (chunks + 31) / 32;
    const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
    const uint4* row = reinterpret_cast<const uint4*>(x);
    uint4 xv[MaxPer];
#pragma unroll
    for (int j = 0; j < MaxPer; ++j) {
        const int c = (warp + block_warps * j) * 32 + lane;
        xv[j] = c < chunks ? __ldcg(row + c) : make_uint4(0u, 0u, 0u, 0u);
    }
#pragma unroll
    for (int j = 0; j < MaxPer; ++j) {
        const int vw = warp + block_warps * j, c = vw * 32 + lane;
        if (vw >= warps) continue;  // warp-uniform
        const double s = rms_butterfly(c < chunks ? rms_chunk_sumsq(xv[j]) : 0.0);
        if (lane == 0) warp_sums[vw] = s;
    }
    __syncthreads();
    const float inv = rms_inv(rms_butterfly(lane < warps ? warp_sums[lane] : 0.0), hidden, eps);
#pragma unroll
    for (int j = 0; j < MaxPer; ++j) {
        const int c = (warp + block_warps * j) * 32 + lane;
        if (c < chunks) reinterpret_cast<uint4*>(out)[c] = rms_norm_chunk(xv[j], inv, w[j]);
    }
    __syncthreads();
}

/// The next RMSNorm in the epilogue of the launch that updates the residual stream (fused_linear::
/// forward_residual_normed): called by every thread of every CTA once its outputs are stored. Each CTA arrives on a
/// counter after a fence over its threads' stores; the last to arrive forms out[r] = rms_norm(y[r]) * weight for the
/// `rows` rows of `hidden` (rms_norm_row_by_warps: launch_rms_norm's bits), then re-arms the counter for the next
/// launch (which arrives only after this one completes). Every CTA requests its share of the norm weights before it
/// arrives, so the last one does not wait for them (DRAM: the weight stream evicts them from L2) after the arrivals.
/// scratch: 33 doubles of shared memory no thread reads any more. Out of line: the caller's main loop keeps its
/// registers.
template <int MaxPer>
__device__ __noinline__ void last_block_rms_norm(const __half* y, int hidden, int rows, __half* out,
                                                 const __half* weight, double eps, unsigned* arrivals,
                                                 double* scratch) {
    const int block_warps = static_cast<int>(blockDim.x) >> 5;
    uint4 w[MaxPer];
    rms_norm_weights_by_warps<MaxPer>(weight, hidden, block_warps, w);
    unsigned* last = reinterpret_cast<unsigned*>(scratch + 32);
    // The arrival as cooperative groups' grid barrier makes it: the CTA's barrier, then one thread's fence (cumulative
    // over the CTA's stores the barrier ordered before it) and atomic; after the last arrival, that thread's fence
    // and the barrier order every other CTA's outputs before this CTA's reads.
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        const bool is_last = atomicAdd(arrivals, 1u) == gridDim.x - 1;
        if (is_last) __threadfence();
        *last = is_last ? 1u : 0u;
    }
    __syncthreads();
    if (*last == 0) return;
    for (int r = 0; r < rows; ++r)
        rms_norm_row_by_warps<MaxPer>(y + static_cast<std::size_t>(r) * hidden, hidden, w, eps,
                                      out + static_cast<std::size_t>(r) * hidden, scratch, block_warps);
    if (threadIdx.x == 0) atomicExch(arrivals, 0u);
}
#endif  // __CUDACC__

}  // namespace qbench
