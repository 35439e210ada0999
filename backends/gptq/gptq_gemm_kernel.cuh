#pragma once
/// The fused GPTQ kernel template (see gptq_gemm.cuh for the work split). Included only by the per-width
/// translation units gptq_gemm_b{2,3,4,8}.cu, each of which instantiates rows 1..8 for its width.
#include "backends/gptq/gptq_a_ops.cuh"
#include "backends/gptq/gptq_decode.hpp"
#include "backends/gptq/gptq_gemm.cuh"

#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

namespace qbench::gptq::detail {

using a_ops::as_half2;

__device__ __forceinline__ std::uint32_t component(const uint4& v, int c) {
    return c == 0 ? v.x : (c == 1 ? v.y : (c == 2 ? v.z : v.w));
}

/// Weights are read exactly once per forward: stream them (evict-first) past L1 so x stays cached.
__device__ __forceinline__ uint4 load_stream(const uint4* p) { return __ldcs(p); }

/// The x pairs of word w of a slab: pairs w*ppw .. w*ppw+ppw-1 (halves 2p, 2p+1), from a slab-aligned row pointer.
template <int Bits>
__device__ __forceinline__ void load_x_word(const __half* xrow, int w, half2* xp) {
    using g = pair_geometry<Bits>;
    if constexpr (Bits == 4) {
        const uint4 v = __ldg(reinterpret_cast<const uint4*>(xrow) + w);
        xp[0] = as_half2(v.x);
        xp[1] = as_half2(v.y);
        xp[2] = as_half2(v.z);
        xp[3] = as_half2(v.w);
    } else if constexpr (Bits == 2) {
        const uint4 a = __ldg(reinterpret_cast<const uint4*>(xrow) + 2 * w);
        const uint4 b = __ldg(reinterpret_cast<const uint4*>(xrow) + 2 * w + 1);
        xp[0] = as_half2(a.x);
        xp[1] = as_half2(a.y);
        xp[2] = as_half2(a.z);
        xp[3] = as_half2(a.w);
        xp[4] = as_half2(b.x);
        xp[5] = as_half2(b.y);
        xp[6] = as_half2(b.z);
        xp[7] = as_half2(b.w);
    } else if constexpr (Bits == 8) {
        const uint2 v = __ldg(reinterpret_cast<const uint2*>(xrow) + w);
        xp[0] = as_half2(v.x);
        xp[1] = as_half2(v.y);
    } else {
        const auto* p = reinterpret_cast<const unsigned int*>(xrow) + w * g::pairs_per_word;
#pragma unroll
        for (int j = 0; j < g::pairs_per_word; ++j) xp[j] = as_half2(__ldg(p + j));
    }
}

template <int Bits, int Rows>
__device__ __forceinline__ void process_slab(const fused_args& a, const uint4 (&wv)[Bits], int tile, int s, int quad,
                                             float (&acc)[Rows][4]) {
    using g = pair_geometry<Bits>;
    constexpr int ppw = g::pairs_per_word;
    const int grp = __ldg(a.slab_group + s);
    const std::size_t meta = (static_cast<std::size_t>(tile) * a.groups + grp) * 32 + quad * 4;
    const uint2 sc = __ldg(reinterpret_cast<const uint2*>(a.scales + meta));
    const std::uint32_t zz = __ldg(reinterpret_cast<const unsigned int*>(a.zeros + meta));
    half2 s2[4];
    s2[0] = __half2half2(__low2half(as_half2(sc.x)));
    s2[1] = __half2half2(__high2half(as_half2(sc.x)));
    s2[2] = __half2half2(__low2half(as_half2(sc.y)));
    s2[3] = __half2half2(__high2half(as_half2(sc.y)));
    // (M + z) for every column and pair position: hsub2 with it leaves q - z exactly.
    std::uint32_t zp[4][ppw];
    std::uint32_t z0[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
        const std::uint32_t z = (zz >> (8 * c)) & 0xffu;
        z0[c] = zero_pair(0, z);
#pragma unroll
        for (int j = 0; j < ppw; ++j) zp[c][j] = zero_pair(g::field_shift(j), z);
    }

    half2 hacc[Rows][4];
#pragma unroll
    for (int r = 0; r < Rows; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) hacc[r][c] = __float2half2_rn(0.0f);

    const __half* xslab = a.x + static_cast<std::size_t>(s) * 32;
#pragma unroll
    for (int w = 0; w < Bits; ++w) {
        half2 xp[Rows][ppw];
#pragma unroll
        for (int r = 0; r < Rows; ++r) load_x_word<Bits>(xslab + r * a.ldx, w, xp[r]);
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const std::uint32_t u = component(wv[w], c);
#pragma unroll
            for (int j = 0; j < ppw; ++j) {
                const half2 v = as_half2(decode_pair<Bits>(u, j));
                const half2 d = __hsub2(v, as_half2(zp[c][j]));
                const half2 wt = __hmul2(d, s2[c]);
#pragma unroll
                for (int r = 0; r < Rows; ++r) hacc[r][c] = __hfma2(xp[r][j], wt, hacc[r][c]);
            }
        }
    }
    if constexpr (g::special_pair) {
        half2 xs[Rows];
#pragma unroll
        for (int r = 0; r < Rows; ++r) xs[r] = __ldg(reinterpret_cast<const half2*>(xslab + r * a.ldx) + 15);
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const half2 v = as_half2(decode_special_pair3(component(wv[0], c), component(wv[1], c), component(wv[2], c)));
            const half2 d = __hsub2(v, as_half2(z0[c]));
            const half2 wt = __hmul2(d, s2[c]);
#pragma unroll
            for (int r = 0; r < Rows; ++r) hacc[r][c] = __hfma2(xs[r], wt, hacc[r][c]);
        }
    }
#pragma unroll
    for (int r = 0; r < Rows; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const float2 f = __half22float2(hacc[r][c]);
            acc[r][c] += f.x + f.y;
        }
}

template <int Bits, int Rows>
__global__ void __launch_bounds__(k_fused_threads, Rows <= 4 ? 2 : 1) fused_gemm_kernel(fused_args a) {
    constexpr bool prefetch = Bits <= 4;
    const int tile = static_cast<int>(blockIdx.x);
    const int split = static_cast<int>(blockIdx.y);
    const int tid = static_cast<int>(threadIdx.x);
    const int quad = tid & 7;
    const int srow = tid >> 3;
    const int s_begin = static_cast<int>((static_cast<long long>(split) * a.slabs) / a.splits);
    const int s_end = static_cast<int>((static_cast<long long>(split + 1) * a.slabs) / a.splits);
    const uint4* wq = reinterpret_cast<const uint4*>(a.qweight) + static_cast<std::size_t>(tile) * a.slabs * Bits * 8;

    float acc[Rows][4];
#pragma unroll
    for (int r = 0; r < Rows; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[r][c] = 0.0f;

    int s = s_begin + srow;
    uint4 cur[Bits];
    if (s < s_end) {
#pragma unroll
        for (int w = 0; w < Bits; ++w) cur[w] = load_stream(wq + (static_cast<std::size_t>(s) * Bits + w) * 8 + quad);
    }
    pdl_wait();  // x and y belong to the previous kernels; the weights above never change
    pdl_trigger();
    while (s < s_end) {
        const int s_next = s + 32;
        if constexpr (prefetch) {
            uint4 nxt[Bits];
            if (s_next < s_end) {
#pragma unroll
                for (int w = 0; w < Bits; ++w)
                    nxt[w] = load_stream(wq + (static_cast<std::size_t>(s_next) * Bits + w) * 8 + quad);
            }
            process_slab<Bits, Rows>(a, cur, tile, s, quad, acc);
            if (s_next < s_end) {
#pragma unroll
                for (int w = 0; w < Bits; ++w) cur[w] = nxt[w];
            }
        } else {
            process_slab<Bits, Rows>(a, cur, tile, s, quad, acc);
            if (s_next < s_end) {
#pragma unroll
                for (int w = 0; w < Bits; ++w)
                    cur[w] = load_stream(wq + (static_cast<std::size_t>(s_next) * Bits + w) * 8 + quad);
            }
        }
        s = s_next;
    }

    // Threads of a warp with the same quad hold the same columns (4 slab rows per warp): reduce them first.
#pragma unroll
    for (int r = 0; r < Rows; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            float v = acc[r][c];
            v += __shfl_xor_sync(0xffffffffu, v, 8);
            v += __shfl_xor_sync(0xffffffffu, v, 16);
            acc[r][c] = v;
        }
    constexpr int warps = k_fused_threads / 32;
    __shared__ float red[warps][Rows][32];
    __shared__ bool is_last;
    const int warp = tid >> 5, lane = tid & 31;
    if (lane < 8) {
#pragma unroll
        for (int r = 0; r < Rows; ++r)
#pragma unroll
            for (int c = 0; c < 4; ++c) red[warp][r][lane * 4 + c] = acc[r][c];
    }
    __syncthreads();
    const std::size_t ld_partial = static_cast<std::size_t>(a.tiles) * 32;
    if (tid < Rows * 32) {
        const int r = tid / 32, col = tid % 32;
        float t = 0.0f;
#pragma unroll
        for (int wp = 0; wp < warps; ++wp) t += red[wp][r][col];
        const int n = tile * 32 + col;
        if (a.splits == 1) {
            if (n < a.n) a.y[static_cast<std::size_t>(r) * a.n + n] = __float2half_rn(t);
        } else {
            a.partials[(static_cast<std::size_t>(split) * Rows + r) * ld_partial + n] = t;
        }
    }
    if (a.splits == 1) return;
    __threadfence();  // publish this CTA's partials before counting it in
    __syncthreads();
    if (tid == 0) is_last = atomicAdd(a.counters + tile, 1u) == static_cast<unsigned>(a.splits - 1);
    __syncthreads();
    if (!is_last) return;
    __threadfence();  // see every other CTA's partials
    if (tid < Rows * 32) {
        const int r = tid / 32, col = tid % 32;
        const int n = tile * 32 + col;
        float t = 0.0f;
        for (int sp = 0; sp < a.splits; ++sp) t += __ldcg(a.partials + (static_cast<std::size_t>(sp) * Rows + r) * ld_partial + n);
        if (n < a.n) a.y[static_cast<std::size_t>(r) * a.n + n] = __float2half_rn(t);
    }
    if (tid == 0) a.counters[tile] = 0u;  // ready for the next launch
}

template <int Bits, int Rows>
void launch_fused(const fused_args& args, dim3 grid, const launch_options& o) {
    launch_kernel(fused_gemm_kernel<Bits, Rows>, grid, dim3(k_fused_threads), 0, o, args);
}

template <int Bits>
struct fused_table {
    static constexpr fused_launcher launchers[k_fused_max_rows] = {
        &launch_fused<Bits, 1>, &launch_fused<Bits, 2>, &launch_fused<Bits, 3>, &launch_fused<Bits, 4>,
        &launch_fused<Bits, 5>, &launch_fused<Bits, 6>, &launch_fused<Bits, 7>, &launch_fused<Bits, 8>};
    static const void* kernel(int rows) {
        static const void* const kernels[k_fused_max_rows] = {
            reinterpret_cast<const void*>(&fused_gemm_kernel<Bits, 1>), reinterpret_cast<const void*>(&fused_gemm_kernel<Bits, 2>),
            reinterpret_cast<const void*>(&fused_gemm_kernel<Bits, 3>), reinterpret_cast<const void*>(&fused_gemm_kernel<Bits, 4>),
            reinterpret_cast<const void*>(&fused_gemm_kernel<Bits, 5>), reinterpret_cast<const void*>(&fused_gemm_kernel<Bits, 6>),
            reinterpret_cast<const void*>(&fused_gemm_kernel<Bits, 7>), reinterpret_cast<const void*>(&fused_gemm_kernel<Bits, 8>)};
        return rows >= 1 && rows <= k_fused_max_rows ? kernels[rows - 1] : nullptr;
    }
};

}  // namespace qbench::gptq::detail
