#include "qbench/engine/reference_ops.hpp"

#include "qbench/common/errors.hpp"
#include "qbench/common/half.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace qbench {

void rms_norm_ref(const float* x, std::int64_t rows, std::int64_t hidden, const float* weight, double eps, float* y) {
    for (std::int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * hidden;
        float* yr = y + r * hidden;
        double sum_sq = 0;
        for (std::int64_t i = 0; i < hidden; ++i) sum_sq += static_cast<double>(xr[i]) * xr[i];
        const double mean = sum_sq / static_cast<double>(hidden);
        // HF: hidden.float() * rsqrt(variance + eps), cast to fp16, then times the fp16 weight (an fp16 product).
        const float inv_rms = static_cast<float>(1.0 / std::sqrt(mean + eps));
        for (std::int64_t i = 0; i < hidden; ++i) {
            const float normed = round_to_half(xr[i] * inv_rms);
            yr[i] = round_to_half(normed * weight[i]);  // product of two fp16 values: exact in float
        }
    }
}

std::vector<float> rope_inv_freq(std::int64_t head_dim, double theta) {
    if (head_dim <= 0 || head_dim % 2 != 0)
        throw error("rope_inv_freq: head_dim must be positive and even, got " + std::to_string(head_dim));
    std::vector<float> inv_freq(static_cast<std::size_t>(head_dim / 2));
    for (std::int64_t i = 0; i < head_dim / 2; ++i)
        inv_freq[i] =
            static_cast<float>(std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim)));
    return inv_freq;
}

rope_rotation rope_angle(std::int64_t position, float inv_freq) {
    const float angle = static_cast<float>(position) * inv_freq;  // fp32, as HF's t * inv_freq outer product
    return {static_cast<float>(std::cos(static_cast<double>(angle))),
            static_cast<float>(std::sin(static_cast<double>(angle)))};
}

void rope_ref(std::span<float> x, std::int64_t heads, std::int64_t head_dim, std::span<const std::int64_t> positions,
              double theta) {
    const std::int64_t tokens = static_cast<std::int64_t>(positions.size());
    if (static_cast<std::int64_t>(x.size()) != tokens * heads * head_dim)
        throw error("rope_ref: x has " + std::to_string(x.size()) + " elements, expected tokens * heads * head_dim = " +
                    std::to_string(tokens * heads * head_dim));
    const std::vector<float> inv_freq = rope_inv_freq(head_dim, theta);
    const std::int64_t half = head_dim / 2;
    for (std::int64_t t = 0; t < tokens; ++t) {
        for (std::int64_t i = 0; i < half; ++i) {
            const rope_rotation rot = rope_angle(positions[t], inv_freq[i]);
            const double c = rot.cos, s = rot.sin;
            for (std::int64_t h = 0; h < heads; ++h) {
                float* head = x.data() + (t * heads + h) * head_dim;
                const double a = head[i], b = head[i + half];
                head[i] = round_to_half(static_cast<float>(a * c - b * s));
                head[i + half] = round_to_half(static_cast<float>(b * c + a * s));
            }
        }
    }
}

void attention_ref(const float* q, const float* k, const float* v, std::int64_t tokens, std::int64_t past,
                   std::int64_t heads, std::int64_t kv_heads, std::int64_t head_dim, float* out) {
    if (kv_heads <= 0 || heads % kv_heads != 0)
        throw error("attention_ref: heads (" + std::to_string(heads) + ") must be a multiple of kv_heads (" +
                    std::to_string(kv_heads) + ")");
    const std::int64_t group = heads / kv_heads;
    const std::int64_t q_stride = heads * head_dim;
    const std::int64_t kv_stride = kv_heads * head_dim;
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
    std::vector<double> scores(static_cast<std::size_t>(past + tokens));
    std::vector<double> acc(static_cast<std::size_t>(head_dim));
    for (std::int64_t t = 0; t < tokens; ++t) {
        const std::int64_t visible = past + t + 1;  // causal: positions [0, past + t]
        for (std::int64_t h = 0; h < heads; ++h) {
            const float* qh = q + t * q_stride + h * head_dim;
            const std::int64_t kvh = h / group;
            double max_score = -INFINITY;
            for (std::int64_t p = 0; p < visible; ++p) {
                const float* kp = k + p * kv_stride + kvh * head_dim;
                double dot = 0;
                for (std::int64_t i = 0; i < head_dim; ++i) dot += static_cast<double>(qh[i]) * kp[i];
                scores[p] = dot * scale;
                if (scores[p] > max_score) max_score = scores[p];
            }
            double denom = 0;
            for (std::int64_t p = 0; p < visible; ++p) {
                scores[p] = std::exp(scores[p] - max_score);
                denom += scores[p];
            }
            std::fill(acc.begin(), acc.end(), 0.0);
            for (std::int64_t p = 0; p < visible; ++p) {
                const double w = scores[p] / denom;
                const float* vp = v + p * kv_stride + kvh * head_dim;
                for (std::int64_t i = 0; i < head_dim; ++i) acc[i] += w * vp[i];
            }
            float* oh = out + t * q_stride + h * head_dim;
            for (std::int64_t i = 0; i < head_dim; ++i)
                oh[i] = round_to_half(static_cast<float>(acc[i]));
        }
    }
}

void swiglu_ref(const float* gate, const float* up, std::int64_t n, float* out) {
    for (std::int64_t i = 0; i < n; ++i) {
        const double g = gate[i];
        const double silu = g / (1.0 + std::exp(-g));
        out[i] = round_to_half(static_cast<float>(silu * up[i]));
    }
}

void residual_add_ref(float* h, const float* delta, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) h[i] = round_to_half(h[i] + delta[i]);
}

void round_to_half_inplace(std::span<float> x) {
    for (float& value : x) value = round_to_half(value);
}

}  // namespace qbench
