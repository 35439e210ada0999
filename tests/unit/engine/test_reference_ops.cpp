// The reference ops against direct formulas, and the KV cache's reorder.
#include "qbench/common/counter_rng.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/common/half.hpp"
#include "qbench/engine/cpu_kv_cache.hpp"
#include "qbench/engine/reference_ops.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

using namespace qbench;

namespace {

std::vector<float> random_halves(std::uint64_t seed, std::size_t n, float scale = 1.0f) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = round_to_half(scale * normal01(stream_key(seed, 77), i));
    return v;
}

// One fp16 step at the magnitude of `x` (the spacing of fp16 values there).
double half_ulp(double x) {
    const double a = std::max(std::abs(x), 6.103515625e-05);  // smallest normal
    return std::ldexp(1.0, static_cast<int>(std::floor(std::log2(a))) - 10);
}

}  // namespace

TEST_CASE("rope_ref matches the rotate-half formula", "[engine][rope]") {
    const std::int64_t heads = 3, d = 8, half = d / 2;
    const std::vector<std::int64_t> positions{0, 1, 7, 1000};
    const double theta = 10000.0;
    std::vector<float> x = random_halves(1, positions.size() * heads * d);
    const std::vector<float> original = x;
    rope_ref(x, heads, d, positions, theta);

    for (std::size_t t = 0; t < positions.size(); ++t) {
        for (std::int64_t h = 0; h < heads; ++h) {
            const float* in = original.data() + (t * heads + h) * d;
            const float* out = x.data() + (t * heads + h) * d;
            for (std::int64_t i = 0; i < half; ++i) {
                // Direct formula in double: pairs (i, i + d/2), angle = position * theta^(-2i/d).
                const double angle = static_cast<double>(positions[t]) * std::pow(theta, -2.0 * i / d);
                const double first = in[i] * std::cos(angle) - in[i + half] * std::sin(angle);
                const double second = in[i + half] * std::cos(angle) + in[i] * std::sin(angle);
                // The contract's fp32 angle differs from the double one by < 1e-4 rad at position 1000.
                CHECK(std::abs(out[i] - first) <= half_ulp(first) + 1e-4 * std::abs(in[i + half]) + 1e-7);
                CHECK(std::abs(out[i + half] - second) <= half_ulp(second) + 1e-4 * std::abs(in[i]) + 1e-7);
                CHECK(out[i] == round_to_half(out[i]));
            }
        }
    }
    // Position 0 is the identity; the rotation keeps each pair's norm (up to fp16 rounding).
    for (std::int64_t j = 0; j < heads * d; ++j) CHECK(x[j] == original[j]);
    for (std::int64_t i = 0; i < half; ++i) {
        const double before = std::hypot(original[3 * heads * d + i], original[3 * heads * d + i + half]);
        const double after = std::hypot(x[3 * heads * d + i], x[3 * heads * d + i + half]);
        CHECK(std::abs(before - after) < 4 * half_ulp(before) + 1e-6);
    }
}

TEST_CASE("rope_inv_freq and rope_angle follow the contract", "[engine][rope]") {
    const auto inv = rope_inv_freq(128, 10000.0);
    REQUIRE(inv.size() == 64);
    CHECK(inv[0] == 1.0f);
    CHECK(inv[32] == static_cast<float>(std::pow(10000.0, -0.5)));
    const rope_rotation r = rope_angle(3, inv[1]);
    const float angle = 3.0f * inv[1];
    CHECK(r.cos == static_cast<float>(std::cos(static_cast<double>(angle))));
    CHECK(r.sin == static_cast<float>(std::sin(static_cast<double>(angle))));
    CHECK_THROWS_AS(rope_inv_freq(7, 10000.0), qbench::error);
}

TEST_CASE("rms_norm_ref matches the Hugging Face formula", "[engine][rmsnorm]") {
    const std::int64_t rows = 3, H = 64;
    const std::vector<float> x = random_halves(2, rows * H, 3.0f);
    const std::vector<float> w = random_halves(3, H, 0.2f);
    std::vector<float> y(x.size());
    rms_norm_ref(x.data(), rows, H, w.data(), 1e-5, y.data());
    for (std::int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (std::int64_t i = 0; i < H; ++i) ss += static_cast<double>(x[r * H + i]) * x[r * H + i];
        const double inv = 1.0 / std::sqrt(ss / H + 1e-5);
        for (std::int64_t i = 0; i < H; ++i) {
            const double expected = round_to_half(static_cast<float>(x[r * H + i] * inv)) * static_cast<double>(w[i]);
            CHECK(std::abs(y[r * H + i] - expected) <= half_ulp(expected));
        }
    }
    // In place gives the same.
    std::vector<float> z = x;
    rms_norm_ref(z.data(), rows, H, w.data(), 1e-5, z.data());
    CHECK(z == y);
}

TEST_CASE("attention_ref: causal, GQA head mapping, decode equals prefill", "[engine][attention]") {
    const std::int64_t heads = 4, kv_heads = 2, d = 8, T = 5;
    const std::vector<float> q = random_halves(4, T * heads * d);
    const std::vector<float> k = random_halves(5, T * kv_heads * d);
    std::vector<float> v = random_halves(6, T * kv_heads * d);
    std::vector<float> out(q.size());
    attention_ref(q.data(), k.data(), v.data(), T, 0, heads, kv_heads, d, out.data());

    // Query 0 sees only position 0: its output is v[0] of its kv head.
    for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t i = 0; i < d; ++i) CHECK(out[h * d + i] == v[(h / 2) * d + i]);

    // Direct formula for every query and head.
    for (std::int64_t t = 0; t < T; ++t)
        for (std::int64_t h = 0; h < heads; ++h) {
            const std::int64_t g = h / (heads / kv_heads);
            std::vector<double> s(t + 1);
            double m = -1e300, z = 0;
            for (std::int64_t p = 0; p <= t; ++p) {
                double dot = 0;
                for (std::int64_t i = 0; i < d; ++i) dot += q[(t * heads + h) * d + i] * k[(p * kv_heads + g) * d + i];
                s[p] = dot / std::sqrt(static_cast<double>(d));
                m = std::max(m, s[p]);
            }
            for (auto& e : s) z += (e = std::exp(e - m));
            for (std::int64_t i = 0; i < d; ++i) {
                double o = 0;
                for (std::int64_t p = 0; p <= t; ++p) o += s[p] / z * v[(p * kv_heads + g) * d + i];
                CHECK(std::abs(out[(t * heads + h) * d + i] - o) <= half_ulp(o));
            }
        }

    // Single-query decode over the first T-1 positions as cache gives the prefill's last row exactly.
    std::vector<float> last(heads * d);
    attention_ref(q.data() + (T - 1) * heads * d, k.data(), v.data(), 1, T - 1, heads, kv_heads, d, last.data());
    CHECK(std::equal(last.begin(), last.end(), out.begin() + (T - 1) * heads * d));

    // Changing a future position's value does not change earlier outputs (causality).
    v[(T - 1) * kv_heads * d] += 100.0f;
    std::vector<float> out2(q.size());
    attention_ref(q.data(), k.data(), v.data(), T, 0, heads, kv_heads, d, out2.data());
    CHECK(std::equal(out2.begin(), out2.begin() + (T - 1) * heads * d, out.begin()));
    CHECK(out2[(T - 1) * heads * d] != out[(T - 1) * heads * d]);
}

TEST_CASE("swiglu_ref and residual_add_ref", "[engine][mlp]") {
    const std::vector<float> gate{-3.0f, -0.5f, 0.0f, 0.5f, 4.0f};
    const std::vector<float> up{1.0f, 2.0f, 3.0f, -1.0f, 0.25f};
    std::vector<float> out(gate.size());
    swiglu_ref(gate.data(), up.data(), 5, out.data());
    for (std::size_t i = 0; i < gate.size(); ++i) {
        const double g = gate[i];
        CHECK(out[i] == round_to_half(static_cast<float>(g / (1 + std::exp(-g)) * up[i])));
    }
    CHECK(out[2] == 0.0f);

    std::vector<float> h{1.0f, 2048.0f, -0.5f};
    const std::vector<float> delta{0.0009765625f, 1.0f, 0.5f};
    residual_add_ref(h.data(), delta.data(), 3);
    CHECK(h[0] == 1.0009765625f);  // 1 + 2^-10 is an fp16 value
    CHECK(h[1] == 2048.0f);        // 2049 is not: ties to even
    CHECK(h[2] == 0.0f);
}

TEST_CASE("cpu_kv_cache::reorder copies whole sequences by parent", "[engine][kv]") {
    cpu_kv_cache cache(2, 1, 4, 3);
    for (std::int64_t l = 0; l < 2; ++l)
        for (std::int64_t p = 0; p < 2; ++p)
            for (std::int64_t i = 0; i < 3; ++i) {
                cache.key(l, 0, p)[i] = static_cast<float>(100 * l + 10 * p + i);
                cache.value(l, 0, p)[i] = -static_cast<float>(100 * l + 10 * p + i);
            }
    cache.length = 2;
    const std::vector<std::int32_t> fan_out{0, 0, 0};
    cache.reorder(fan_out);
    REQUIRE(cache.sequences == 3);
    CHECK(cache.key(1, 2, 1)[2] == 112.0f);
    CHECK(cache.value(0, 1, 1)[0] == -10.0f);
    cache.key(0, 1, 0)[0] = 7.0f;  // make sequence 1 distinguishable
    const std::vector<std::int32_t> parents{1, 2, 1};
    cache.reorder(parents);
    CHECK(cache.key(0, 0, 0)[0] == 7.0f);
    CHECK(cache.key(0, 1, 0)[0] == 0.0f);
    CHECK(cache.key(0, 2, 0)[0] == 7.0f);
    CHECK(cache.fp16_bytes() == 2u * 2 * 3 * 4 * 3 * 2);
    const std::vector<std::int32_t> bad{3};
    CHECK_THROWS_AS(cache.reorder(bad), qbench::error);
}
