#pragma once
/// Device helpers shared by the bnb kernels: the quantization decision functions (the same functions as
/// bnb_quant_ref.cpp, so the GPU and the CPU reference agree bit for bit) and the block absmax of a 4-bit weight.
/// Explicitly rounded intrinsics (__fmul_rn, __fadd_rn, __fdiv_rn) keep nvcc from contracting into FMAs where the
/// reference rounds twice.
#include "backends/bnb/bnb_kernels.cuh"

#include <cuda_fp16.h>

namespace qbench::bnb::detail {

/// dQuantizeNF4: number of thresholds strictly below x (NaN -> 0).
__device__ __forceinline__ unsigned quantize_nf4(float x) {
    constexpr std::array<float, 15> thresholds = k_nf4_thresholds;  // a constant copy: immediates in device code
    unsigned q = 0;
#pragma unroll
    for (int i = 0; i < 15; ++i) q += x > thresholds[i] ? 1u : 0u;
    return q;
}

/// dQuantizeFP4: sign bit, then the magnitude rank mapped to its 3-bit code.
__device__ __forceinline__ unsigned quantize_fp4(float x) {
    const unsigned sign = x < 0.0f ? 8u : 0u;
    const float a = fabsf(x);
    constexpr std::array<float, 7> thresholds = k_fp4_thresholds;
    unsigned rank = 0;
#pragma unroll
    for (int i = 0; i < 7; ++i) rank += a > thresholds[i] ? 1u : 0u;
    // rank -> code {0,1,6,7,4,5,2,3} packed 4 bits each.
    return sign | ((0x32547610u >> (4 * rank)) & 0xfu);
}

template <quant_type Q>
__device__ __forceinline__ unsigned quantize_4bit(float x) {
    if constexpr (Q == quant_type::nf4)
        return quantize_nf4(x);
    else
        return quantize_fp4(x);
}

/// dQuantize<0> over a sorted 256-entry code (in shared memory).
__device__ __forceinline__ unsigned quantize_dynamic(const float* code, float x) {
    int pivot = 127, upper_pivot = 255, lower_pivot = 0;
    float lower = -1.0f, upper = 1.0f;
    float val = code[pivot];
    for (int i = 64; i > 0; i >>= 1) {
        if (x > val) {
            lower_pivot = pivot;
            lower = val;
            pivot += i;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= i;
        }
        val = code[pivot];
    }
    if (upper_pivot == 255) upper = code[255];
    if (lower_pivot == 0) lower = code[0];
    if (x > val) {
        const float midpoint = __fmul_rn(__fadd_rn(upper, val), 0.5f);
        return static_cast<unsigned>(x > midpoint ? upper_pivot : pivot);
    }
    const float midpoint = __fmul_rn(__fadd_rn(lower, val), 0.5f);
    return static_cast<unsigned>(x < midpoint ? lower_pivot : pivot);
}

/// The effective absmax of block b: plain, or code2[q] * absmax2 + offset rounded twice (as the reference).
__device__ __forceinline__ float block_absmax(const device_4bit_view& w, std::int64_t b) {
    if (w.absmax != nullptr) return __ldg(w.absmax + b);
    const float c = __ldg(w.nested_code + __ldg(w.absmax_codes + b));
    const float a2 = __ldg(w.nested_absmax + b / w.nested_blocksize);
    return __fadd_rn(__fmul_rn(c, a2), w.nested_offset);
}

/// 16 bytes through the non-coherent read-only path: weights never change during a kernel.
__device__ __forceinline__ uint4 load_nc16(const void* p) { return __ldg(static_cast<const uint4*>(p)); }

}  // namespace qbench::bnb::detail
