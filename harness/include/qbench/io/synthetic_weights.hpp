#pragma once
/// Deterministic synthetic weights with realistic statistics, as a pure function of (model, tensor name, seed,
/// element index), so the CPU writer of the safetensors checkpoint and a GPU generator produce identical values.
///
///   key(model, name, seed) = stream_key(seed, hash_string(model + "/" + name))
///   linear weight [out, in]:  fp16( normal01(key, i) * k_linear_gain / sqrt(in) )
///   embed_tokens [V, H]:      fp16( normal01(key, i) * k_embed_std )
///   norm weight [H]:          fp16( 1 + k_norm_jitter * normal01(key, i) ), except outlier channels (below),
///                             whose weight is fp16( k_outlier_gain * (1 + 0.25 * uniform01(key, i)) )
///   outlier channel c of a model: uniform01(stream_key(seed, hash_string(model + "/outliers")), c) < k_outlier_rate
///     (the same channels in every layer, as in real LLMs): after RMSNorm these channels carry |x| of 8-12, the
///     systematic activation outliers LLM.int8() decomposes (threshold 6).
#include "qbench/common/counter_rng.hpp"

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

namespace qbench::synthetic {

inline constexpr float k_linear_gain = 1.0f;
inline constexpr float k_embed_std = 1.0f;
inline constexpr float k_norm_jitter = 0.05f;
inline constexpr float k_outlier_gain = 8.0f;
inline constexpr float k_outlier_rate = 0.004f;  // ~16 of 4096 channels

enum class tensor_role : std::uint8_t { linear, embedding, norm, other };

/// Which role a Hugging Face Llama tensor name has.
tensor_role role_of(std::string_view tensor_name);

inline std::uint64_t tensor_key(std::string_view model, std::string_view tensor_name, std::uint64_t seed) {
    std::string s(model);
    s += '/';
    s += tensor_name;
    return stream_key(seed, hash_string(s));
}
inline std::uint64_t outlier_key(std::string_view model, std::uint64_t seed) {
    std::string s(model);
    s += "/outliers";
    return stream_key(seed, hash_string(s));
}

QB_HOST_DEVICE inline bool is_outlier_channel(std::uint64_t outlier_key, std::int64_t channel) {
    return uniform01(outlier_key, static_cast<std::uint64_t>(channel)) < k_outlier_rate;
}

/// Value (before fp16 rounding) of element i of a linear weight with `in_features` columns.
QB_HOST_DEVICE inline float linear_value(std::uint64_t key, std::uint64_t i, float inv_sqrt_in) {
    return normal01(key, i) * (k_linear_gain * inv_sqrt_in);
}
QB_HOST_DEVICE inline float embedding_value(std::uint64_t key, std::uint64_t i) {
    return normal01(key, i) * k_embed_std;
}
QB_HOST_DEVICE inline float norm_value(std::uint64_t key, std::uint64_t outlier_key, std::uint64_t channel) {
    if (is_outlier_channel(outlier_key, static_cast<std::int64_t>(channel)))
        return k_outlier_gain * (1.0f + 0.25f * uniform01(key, channel));
    return 1.0f + k_norm_jitter * normal01(key, channel);
}
/// 1/sqrt(in) computed once on the host and passed to kernels, so both sides use the same float.
inline float inv_sqrt(std::int64_t in_features) {
    return static_cast<float>(1.0 / std::sqrt(static_cast<double>(in_features)));
}

}  // namespace qbench::synthetic
