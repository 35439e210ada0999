#pragma once
/// The device operations kernel v3 (gptq_gemm_a.cu) and the persistent chain (gptq_chain.cu) share, so that both
/// compute the same bits: the fp16 pair view of a word, the m16n8k16 mma, and the per-(row, k-block) activation sums.
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

namespace qbench::gptq::a_ops {

__device__ __forceinline__ half2 as_half2(std::uint32_t v) {
    half2 h;
    std::memcpy(&h, &v, sizeof(h));
    return h;
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

}  // namespace qbench::gptq::a_ops
