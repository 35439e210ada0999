#pragma once
/// Counter-based random numbers that give bit-identical results on the host and in CUDA kernels.
///
/// Synthetic weights, image embeddings and sampling draws are pure functions of (key, index): no state, no order
/// dependence, so a GPU kernel can generate the same weights as the CPU writer of the safetensors checkpoint, and
/// a sampled token on the GPU uses the same uniform draw as the CPU reference.
///
/// The normal variate is Irwin-Hall with four 16-bit uniforms (sum of four U[0,1), centred, scaled to unit variance):
/// only integer operations and exactly representable float sums, then one multiply, so host and device agree
/// bit for bit (no libm calls whose last ulp could differ). Its tails end at +-3.46 sigma, which is fine for
/// synthetic weights; outliers are added explicitly where wanted.
#include <cstdint>
#include <string_view>

#if defined(__CUDACC__)
#define QB_HOST_DEVICE __host__ __device__
#else
#define QB_HOST_DEVICE
#endif

namespace qbench {

/// SplitMix64 finalizer: a bijective 64-bit mix.
QB_HOST_DEVICE constexpr std::uint64_t mix64(std::uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/// FNV-1a 64-bit hash of a string (host only): turns a tensor name into part of a key.
constexpr std::uint64_t hash_string(std::string_view s) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (char c : s) {
        h ^= static_cast<std::uint8_t>(c);
        h *= 0x100000001b3ull;
    }
    return h;
}

/// Key of a stream: combine a seed with a name hash (and optionally more words).
QB_HOST_DEVICE constexpr std::uint64_t stream_key(std::uint64_t seed, std::uint64_t name_hash) {
    return mix64(seed ^ mix64(name_hash));
}

/// 64 random bits for element `index` of stream `key`.
QB_HOST_DEVICE constexpr std::uint64_t random_bits(std::uint64_t key, std::uint64_t index) {
    return mix64(key + mix64(index));
}

/// Uniform float in [0, 1) with 24 random bits (exact on host and device).
QB_HOST_DEVICE inline float uniform01(std::uint64_t key, std::uint64_t index) {
    return static_cast<float>(random_bits(key, index) >> 40) * (1.0f / 16777216.0f);
}

/// Approximately standard normal (Irwin-Hall n=4), bit-identical on host and device.
QB_HOST_DEVICE inline float normal01(std::uint64_t key, std::uint64_t index) {
    const std::uint64_t r = random_bits(key, index);
    // Each 16-bit lane is an integer in [0, 65535]; their sum is exact in float (< 2^18).
    const float s = static_cast<float>((r & 0xffffu) + ((r >> 16) & 0xffffu) + ((r >> 32) & 0xffffu) + (r >> 48));
    // mean 4 * 32767.5 = 131070, variance 4 * (65536^2 - 1) / 12; scale to unit variance.
    constexpr float k_mean = 131070.0f;
    constexpr float k_inv_std = 1.0f / 37837.2272f;  // sqrt(4 * (65536^2 - 1) / 12) = 37837.2272...
    return (s - k_mean) * k_inv_std;
}

}  // namespace qbench
