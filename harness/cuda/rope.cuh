#pragma once
/// Rotary position embeddings, Hugging Face rotate-half layout: element i pairs with i + d/2,
///   out[i]       = x[i] * cos(a_i) - x[i + d/2] * sin(a_i)
///   out[i + d/2] = x[i + d/2] * cos(a_i) + x[i] * sin(a_i),   a_i = position * inv_freq[i]   (fp32)
/// and the KV-cache append of the prefill.
///
/// KV cache of one layer: [slots][max_len][kv_heads][head_dim] fp16, K and V separately. A slot is one sequence
/// (beam); position p of beam b lives in the slot the beam's slot table names for p (attention.cuh).
#include "cuda/launch.cuh"

#include <cuda_fp16.h>

#include <cstdint>

namespace qbench {

#if defined(__CUDACC__)
/// cos and sin of float(position) * inv_freq (one fp32 multiply), evaluated in double, rounded to float (rope_angle).
__device__ __forceinline__ void rope_angle_dev(std::int64_t position, float inv_freq, float& c, float& s) {
    const double angle = __fmul_rn(static_cast<float>(position), inv_freq);
    double sd, cd;
    sincos(angle, &sd, &cd);
    c = __double2float_rn(cd);
    s = __double2float_rn(sd);
}

/// Rotates one (i, i + d/2) pair as rope_ref does: in double without fused multiply-adds, rounded to float, then to
/// fp16 (the results are fp16 values).
__device__ __forceinline__ void rope_rotate(float x1, float x2, float c, float s, __half& y1, __half& y2) {
    y1 = __float2half_rn(__double2float_rn(__dsub_rn(__dmul_rn(x1, c), __dmul_rn(x2, s))));
    y2 = __float2half_rn(__double2float_rn(__dadd_rn(__dmul_rn(x2, c), __dmul_rn(x1, s))));
}
#endif

/// Prefill: rows r < `rows` at positions pos0 + r. q [rows, heads*d] is rotated in place; k [rows, kv_heads*d] is
/// rotated and written with v [rows, kv_heads*d] into slot 0 of the caches (positions pos0 ...).
void launch_rope_append(__half* q, const __half* k, const __half* v, const float* inv_freq, std::int64_t rows,
                        std::int64_t pos0, int heads, int kv_heads, int head_dim, __half* k_cache, __half* v_cache,
                        const launch_options& o);

}  // namespace qbench
