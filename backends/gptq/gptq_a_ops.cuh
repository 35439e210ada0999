#pragma once
/// The device operations kernel v3 (gptq_gemm_a.cu) and the persistent chain (gptq_chain.cu) share, so that both
/// compute the same bits: the fp16 pair view of a word, the m16n8k16 mma, the per-(row, k-block) activation sums, a
/// chunk's products and a k-block's correction.
#include "backends/gptq/gptq_a_layout.hpp"

#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

namespace qbench::gptq::a_ops {

__device__ __forceinline__ half2 as_half2(std::uint32_t v) {
    half2 h;
    std::memcpy(&h, &v, sizeof(h));
    return h;
}

__device__ __forceinline__ std::uint32_t as_u32(half2 h) {
    std::uint32_t v;
    std::memcpy(&v, &h, sizeof(v));
    return v;
}

/// d += A * B, fp32 accumulators (sm_75: the same fragments as two m16n8k8, k positions 0..7 then 8..15).
__device__ __forceinline__ void mma_16816(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    asm("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(b0));
    asm("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[2]), "r"(a[3]), "r"(b1));
#endif
}

/// The sum of a (row r, k-block) of activations for the zero correction, from the 16 consecutive lanes of a half-warp
/// that hold its 16 vectors (v = the vector's index in the row): each adds its 8 values, shuffles combine them, and the
/// group's first lane stores the sum. Every lane of the warp must call it.
__device__ __forceinline__ void sum_group16(const uint4& u, bool valid, int r, int v, float* xsum) {
    const float2 f0 = __half22float2(as_half2(u.x)), f1 = __half22float2(as_half2(u.y));
    const float2 f2 = __half22float2(as_half2(u.z)), f3 = __half22float2(as_half2(u.w));
    float sum = ((f0.x + f0.y) + (f1.x + f1.y)) + ((f2.x + f2.y) + (f3.x + f3.y));
#pragma unroll
    for (int o = 8; o >= 1; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (valid && (v & 15) == 0) xsum[(v >> 4) * 8 + r] = sum;
}

/// The lane's activations of a chunk: XV 16-byte vectors in shared memory at xp, as the mmas' B operands unchanged.
template <int XV>
__device__ __forceinline__ void load_x_words(const __half* xp, std::uint32_t (&xw)[4 * XV]) {
#pragma unroll
    for (int j = 0; j < XV; ++j) {
        const uint4 v = reinterpret_cast<const uint4*>(xp)[j];
        xw[4 * j + 0] = v.x;
        xw[4 * j + 1] = v.y;
        xw[4 * j + 2] = v.z;
        xw[4 * j + 3] = v.w;
    }
}

/// A chunk's products into acc: its weight words w decoded into A fragments (a_fragment), MMAS mmas with xw.
template <int Bits, int XV, int MMAS>
__device__ __forceinline__ void chunk_mmas(const std::uint32_t (&w)[a_lane_words(Bits)], const std::uint32_t (&xw)[4 * XV],
                                           float (&acc)[4]) {
#pragma unroll
    for (int m = 0; m < MMAS; ++m) {
        std::uint32_t af[4];
        a_fragment<Bits>(w, m, af);
        mma_16816(acc, af, xw[2 * m], xw[2 * m + 1]);
    }
}

/// A k-block's sums into the running outputs: the zero correction and the scale of its record (md: the lane's scales
/// and zero terms of rows r0 / r1 as fp16 pairs; gptq_a_layout.hpp, "zeros"); sp points at the activations' sums of
/// batch rows 2t, 2t+1 over the k-block ([k-block][8 rows]) and moves on to the next k-block's.
template <int Bits>
__device__ __forceinline__ void correct_block(float (&out)[4], const float (&acc)[4], uint2 md, const float*& sp) {
    const float2 s = __half22float2(as_half2(md.x));
    const float2 c = __half22float2(as_half2(md.y));
    const float2 sx = *reinterpret_cast<const float2*>(sp);
    sp += 8;
    const float s1 = s.y * (1.0f / static_cast<float>(1 << a_r1_shift(Bits)));  // r1's f (layout)
    out[0] = fmaf(s.x, fmaf(-c.x, sx.x, acc[0]), out[0]);
    out[1] = fmaf(s.x, fmaf(-c.x, sx.y, acc[1]), out[1]);
    out[2] = fmaf(s1, fmaf(-c.y, sx.x, acc[2]), out[2]);
    out[3] = fmaf(s1, fmaf(-c.y, sx.y, acc[3]), out[3]);
}

}  // namespace qbench::gptq::a_ops
