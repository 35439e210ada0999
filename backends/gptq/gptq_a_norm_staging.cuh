#pragma once
/// How GPTQ kernel v3's Norm kernels (gptq_gemm_a.cu, a_norm_form) form their activations from the residual stream
/// while staging it into shared memory: the exact form (rms_norm(x) * w, bit-identical to launch_rms_norm) and the
/// scaled form (x * w, the inverse RMS left for the epilogue). Device code only, included by gptq_gemm_a.cu.
#include "backends/gptq/gptq_a_ops.cuh"
#include "backends/gptq/gptq_gemm_a.cuh"
#include "cuda/rms_norm.cuh"

#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>

namespace qbench::gptq::a_norm_staging {

using a_ops::sum_group16;

/// Vector v (16 bytes) of row r of a row-major fp16 array with `stride` halves per row.
__device__ __forceinline__ const uint4* row_vec(const __half* base, std::int64_t stride, int r, int v) {
    return reinterpret_cast<const uint4*>(base + static_cast<std::size_t>(r) * stride) + v;
}
__device__ __forceinline__ uint4* row_vec(__half* base, std::int64_t stride, int r, int v) {
    return reinterpret_cast<uint4*>(base + static_cast<std::size_t>(r) * stride) + v;
}

/// The activations of a Norm kernel: rms_norm(x) * norm_weight into shared memory, and their sums per (row, k-block).
/// x is the residual stream; the normed values follow cuda/rms_norm.cuh's reduction order and roundings (bit-identical
/// to launch_rms_norm's fast path): chunk c = vector c of a row (thread c % 512 of round c / 512), W_w = the butterfly
/// of chunks 32w .. 32w + 31 (warp w of that round), the row's sum = the butterfly over the W_w. Two barriers, as the
/// plain copy has one: (1) the rows as they are into shared memory and each warp's W_w; (2) every warp forms the row
/// sums itself from the W_w (the same butterfly, so the same bits in every warp; lane r keeps row r's inverse RMS),
/// norms its own chunks in place with the weights (`norm_w0`: chunk tid, requested before the PDL wait) and sums
/// them per k-block. (The seventh session's form took two more barriers, an L2 round trip for the weights after the
/// wait and a second pass over shared memory.) Register pressure here shapes the main loop's allocation (the weights
/// requested before the wait are live throughout): four rows' loads in flight made ptxas spill a meta record of the
/// ring into local memory, reloaded every k-block, and so did this function out of line (the call's saved registers);
/// with two rows the main loop spills what the plain SwiGLU kernel's does (one integer per k-block).
__device__ __forceinline__ void stage_normed_x(const __half* x, std::int64_t ldx, int rows, int vecs,
                                               const __half* norm_weight, double eps, uint4 norm_w0, __half* xs,
                                               int xstride, float* xsum, int probe) {
    __shared__ double warp_sums[k_a_max_rows][32];
    const int tid = static_cast<int>(threadIdx.x), warp = tid >> 5, lane = tid & 31;
    auto x_vec = [&](int r, int v) { return row_vec(x, ldx, r, v); };
    auto xs_vec = [&](int r, int v) { return row_vec(xs, xstride, r, v); };
    for (int base = 0; base < vecs; base += k_a_threads) {
        if (base + 32 * warp >= vecs) continue;  // warp-uniform: no chunk of this warp is in the row
        const int c = base + tid;
        const bool ok = c < vecs;
        for (int r0 = 0; r0 < rows; r0 += 2) {  // two rows' loads in flight at once
            uint4 u[2];
#pragma unroll
            for (int j = 0; j < 2; ++j) u[j] = ok && r0 + j < rows ? *x_vec(r0 + j, c) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                if (r0 + j >= rows) break;  // uniform
                if (ok) *xs_vec(r0 + j, c) = u[j];
                const double w_sum = (probe & 1) != 0 ? 1.0 : rms_butterfly(ok ? rms_chunk_sumsq(u[j]) : 0.0);
                if (lane == 0) warp_sums[r0 + j][(base >> 5) + warp] = w_sum;
            }
        }
    }
    __syncthreads();
    const int row_warps = (vecs + 31) / 32;
    double lane_sumsq = 0.0;
    float lane_inv = 1.0f;
    if ((probe & 2) == 0) {
        for (int r = 0; r < rows; ++r) {
            const double sumsq = rms_butterfly(lane < row_warps ? warp_sums[r][lane] : 0.0);
            if (lane == r) lane_sumsq = sumsq;
        }
        lane_inv = rms_inv(lane_sumsq, static_cast<std::int64_t>(vecs) * 8, eps);
    }
    for (int base = 0, round = 0; base < vecs; base += k_a_threads, ++round) {  // uniform: every warp takes part
        const int c = base + tid;
        const bool ok = c < vecs;
        uint4 nv = norm_w0;  // the first round's, requested before the PDL wait; later rounds load their own
        if (round > 0) nv = ok ? reinterpret_cast<const uint4*>(norm_weight)[c] : make_uint4(0u, 0u, 0u, 0u);
        for (int r = 0; r < rows; ++r) {
            const float inv = __shfl_sync(0xffffffffu, lane_inv, r);
            const uint4 v = ok ? rms_norm_chunk(*xs_vec(r, c), inv, nv) : make_uint4(0u, 0u, 0u, 0u);
            if (ok) *xs_vec(r, c) = v;
            sum_group16(v, ok, r, c, xsum);
        }
    }
}

/// The scaled form's per-warp sums of squares W_w of each row (rms_norm.cuh's contract), written while x is staged
/// and read by the epilogue. Shared memory of the scaled kernels only (a static array in the kernel would also cost
/// the others' largest launches their second CTA per SM).
__device__ __forceinline__ double (*scaled_norm_sums())[32] {
    __shared__ double sums[k_a_max_rows][32];
    return sums;
}

/// The activations of a scaled-form kernel (a_args::norm_scaled): fp16(x * norm_weight) into shared memory with their
/// sums per (row, k-block), and each row's W_w (scaled_norm_sums) from x itself, in one pass and under the plain
/// copy's one barrier. Chunk c = vector c of a row is thread c % 512's in round c / 512 (rms_norm.cuh's chunks, so
/// warp w of round j forms the contract's W_{16j + w}); the weights are in L2 by then (prefetched before the PDL wait)
/// and load beside x.
__device__ __forceinline__ void stage_scaled_x(const __half* x, std::int64_t ldx, int rows, int vecs,
                                               const __half* norm_weight, __half* xs, int xstride, float* xsum) {
    double (*warp_sums)[32] = scaled_norm_sums();
    const int tid = static_cast<int>(threadIdx.x), warp = tid >> 5, lane = tid & 31;
    auto x_vec = [&](int r, int v) { return row_vec(x, ldx, r, v); };
    auto xs_vec = [&](int r, int v) { return row_vec(xs, xstride, r, v); };
    for (int base = 0; base < vecs; base += k_a_threads) {
        if (base + 32 * warp >= vecs) continue;  // warp-uniform: no chunk of this warp is in the row
        const int c = base + tid;
        const bool ok = c < vecs;
        const uint4 nv = ok ? reinterpret_cast<const uint4*>(norm_weight)[c] : make_uint4(0u, 0u, 0u, 0u);
        for (int r = 0; r < rows; ++r) {  // one row at a time: the ring's first chunks are in registers already
            const uint4 u = ok ? *x_vec(r, c) : make_uint4(0u, 0u, 0u, 0u);
            uint4 p;
            p.x = a_ops::as_u32(__hmul2(a_ops::as_half2(u.x), a_ops::as_half2(nv.x)));
            p.y = a_ops::as_u32(__hmul2(a_ops::as_half2(u.y), a_ops::as_half2(nv.y)));
            p.z = a_ops::as_u32(__hmul2(a_ops::as_half2(u.z), a_ops::as_half2(nv.z)));
            p.w = a_ops::as_u32(__hmul2(a_ops::as_half2(u.w), a_ops::as_half2(nv.w)));
            if (ok) *xs_vec(r, c) = p;
            sum_group16(p, ok, r, c, xsum);
            const double w_sum = rms_butterfly(ok ? rms_chunk_sumsq(u) : 0.0);
            if (lane == 0) warp_sums[r][(base >> 5) + warp] = w_sum;
        }
    }
}

/// The inverse RMS of row r of a scaled-form launch (after the barrier that follows the staging): the contract's row
/// butterfly over W_0 .. W_31 formed by one thread (every lane of a xor butterfly ends with the same sum, so this is
/// its tree: the leaves in bit-reversed order, added pairwise through a stack of 5 partial sums), then rms_inv; the
/// same float as the RMSNorm kernel's.
__device__ __forceinline__ float scaled_row_inv(int r, int vecs, double eps) {
    const double* w = scaled_norm_sums()[r];
    const int used = (vecs + 31) / 32;  // W_w past the row were never written: zero, as the butterfly takes them
    double partial[5] = {0.0, 0.0, 0.0, 0.0, 0.0}, sum = 0.0;
#pragma unroll
    for (int j = 0; j < 32; ++j) {
        const int i = ((j & 1) << 4) | ((j & 2) << 2) | (j & 4) | ((j & 8) >> 2) | ((j & 16) >> 4);
        double v = i < used ? w[i] : 0.0;
        int level = 0;
#pragma unroll
        for (; level < 5 && ((j >> level) & 1) != 0; ++level) v = __dadd_rn(partial[level], v);
        if (level < 5) partial[level] = v;
        else sum = v;
    }
    return rms_inv(sum, static_cast<std::int64_t>(vecs) * 8, eps);
}

}  // namespace qbench::gptq::a_norm_staging
