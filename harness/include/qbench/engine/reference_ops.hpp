#pragma once
/// The decoder's non-linear pieces on the CPU, as plain loops: the oracle every GPU kernel is checked against.
///
/// Each function implements one rule of engine/generation.hpp ("Numerics") and rounds its output to fp16 values
/// exactly where that contract says the GPU stores fp16. Inputs are fp16 values held in floats; reductions run in
/// double. Layouts are row-major:
///
///   activations   [rows, H]                    one row per token
///   q             [tokens, heads, head_dim]     = [tokens, heads * head_dim]
///   k, v          [positions, kv_heads, head_dim]
///
/// RoPE (Hugging Face rotate-half): within each head, element i pairs with element i + d/2 (not 2i with 2i+1):
///
///   head vector   | x0 x1 ... x(d/2-1) | x(d/2) ... x(d-1) |
///                   \___ first half ___/ \__ second half __/
///   out[i]       = x[i] cos(a_i) - x[i + d/2] sin(a_i)
///   out[i + d/2] = x[i + d/2] cos(a_i) + x[i] sin(a_i),      a_i = position * inv_freq[i]
#include <cstdint>
#include <span>
#include <vector>

namespace qbench {

/// y[r] = fp16( fp16(x[r] * inv_rms(x[r])) * w ), inv_rms = float(1 / sqrt(mean(x^2) + eps)) with the mean in double.
/// `x` and `y` may alias (in place).
void rms_norm_ref(const float* x, std::int64_t rows, std::int64_t hidden, const float* weight, double eps, float* y);

/// inv_freq[i] = float(theta^(-2i/d)) for i in [0, d/2), evaluated in double and rounded once to float. The CUDA
/// executor uploads this same table, so both sides start from identical frequencies.
std::vector<float> rope_inv_freq(std::int64_t head_dim, double theta);

/// cos and sin of the angle float(position) * inv_freq (one fp32 multiply), evaluated in double and rounded to float.
struct rope_rotation {
    float cos;
    float sin;
};
rope_rotation rope_angle(std::int64_t position, float inv_freq);

/// Rotates x [tokens, heads, head_dim] in place; token t sits at positions[t]. Each output element is computed from
/// the float cos/sin above in double and rounded once to fp16.
void rope_ref(std::span<float> x, std::int64_t heads, std::int64_t head_dim, std::span<const std::int64_t> positions,
              double theta);

/// Causal attention of `tokens` queries over the keys and values of one sequence. Query t sits at position past + t
/// and sees positions [0, past + t]; `k` and `v` hold at least past + tokens rows of [kv_heads * head_dim].
/// Query head h reads kv head h / (heads / kv_heads) (GQA; MHA when kv_heads == heads).
/// score = (q . k) / sqrt(head_dim) and softmax in double; out [tokens, heads * head_dim] is rounded to fp16.
/// Covers causal prefill (past = 0) and single-query decode over a KV cache (tokens = 1).
void attention_ref(const float* q, const float* k, const float* v, std::int64_t tokens, std::int64_t past,
                   std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim, float* out);

/// out[i] = fp16( silu(gate[i]) * up[i] ), silu(g) = g / (1 + exp(-g)), evaluated in double with no intermediate
/// rounding. `out` may alias `gate` or `up`.
void swiglu_ref(const float* gate, const float* up, std::int64_t n, float* out);

/// The residual add: h[i] = fp16( float(h[i]) + float(delta[i]) ), one fp32 add then one rounding (as the GPU does).
void residual_add_ref(float* h, const float* delta, std::int64_t n);

/// Rounds every element to the nearest fp16 value (round to nearest even), where the GPU would store fp16.
void round_to_half_inplace(std::span<float> x);

}  // namespace qbench
