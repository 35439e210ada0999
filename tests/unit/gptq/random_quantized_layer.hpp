#pragma once
// A random GPTQ layer for the CPU layout tests (no CUDA): codes, zeros and fp16 scales from the counter RNG; with
// act_order the rows of each group are a random permutation (g_idx of column j = position of j / group size).
// `salt` keeps each test's draw as it was; `scale_of(u)` maps a uniform draw in [0, 1) to a scale before rounding to
// fp16 (the GPU tests use a spread like a real layer's).
#include "backends/gptq/gptq_format.hpp"
#include "backends/gptq/gptq_pack.hpp"

#include "qbench/common/counter_rng.hpp"
#include "qbench/common/half.hpp"

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <string_view>
#include <vector>

namespace qbench::gptq::test {

inline float default_scale(float u) { return 0.001f + 0.01f * u; }

template <class ScaleOf = float (*)(float)>
quantized_linear random_quantized_layer(std::int64_t K, std::int64_t N, std::int64_t bits, std::int64_t gs,
                                        bool act_order, std::uint64_t seed, std::string_view salt,
                                        ScaleOf scale_of = &default_scale) {
    const auto sz = [](std::int64_t v) { return static_cast<std::size_t>(v); };
    const auto key = stream_key(seed, hash_string(salt));
    std::uint64_t ctr = 0;
    quantized_linear q;
    q.in_features = K;
    q.out_features = N;
    q.bits = bits;
    q.group_size = gs;
    const std::int64_t G = q.groups();
    const auto levels = static_cast<std::uint64_t>(max_code(bits)) + 1;
    q.codes.resize(sz(N * K));
    for (auto& c : q.codes) c = static_cast<std::uint8_t>(random_bits(key, ctr++) % levels);
    q.zeros.resize(sz(G * N));
    for (auto& z : q.zeros) z = static_cast<std::uint8_t>(random_bits(key, ctr++) % levels);
    q.scales.resize(sz(G * N));
    for (auto& s : q.scales) s = round_to_half(scale_of(uniform01(key, ctr++)));
    q.g_idx.resize(sz(K));
    const std::int64_t e = effective_group(gs, K);
    std::vector<std::int32_t> order(sz(K));
    std::iota(order.begin(), order.end(), 0);
    if (act_order)
        for (std::int64_t i = K - 1; i > 0; --i)
            std::swap(order[sz(i)], order[sz(static_cast<std::int64_t>(random_bits(key, ctr++) % static_cast<std::uint64_t>(i + 1)))]);
    for (std::int64_t pos = 0; pos < K; ++pos) q.g_idx[sz(order[sz(pos)])] = static_cast<std::int32_t>(pos / e);
    return q;
}

}  // namespace qbench::gptq::test
