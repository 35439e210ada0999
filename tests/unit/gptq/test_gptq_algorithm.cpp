// The GPTQ CPU reference: quantizer arithmetic, Hessian, Cholesky of the inverse, act-order and static-group g_idx,
// the group-scale subtlety, dead columns, and GPTQ beating round-to-nearest on correlated inputs at 2, 3 and 4 bits.
#include "backends/gptq/gptq_algorithm_ref.hpp"
#include "backends/gptq/gptq_format.hpp"
#include "backends/gptq/gptq_quant_math.hpp"
#include "qbench/common/counter_rng.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

using namespace qbench;
using namespace qbench::gptq;

namespace {
std::size_t sz(std::int64_t v) { return static_cast<std::size_t>(v); }

/// Correlated activations: x = mix * z + a few large outlier channels, like LLM hidden states.
std::vector<float> correlated_inputs(std::int64_t tokens, std::int64_t K, std::uint64_t seed) {
    const std::int64_t rank = 16;
    const auto kmix = stream_key(1234, hash_string("mix"));  // the same mixing for calibration and held-out data
    const auto kz = stream_key(seed, hash_string("z"));
    std::vector<float> mix(sz(rank * K));
    for (std::int64_t i = 0; i < rank * K; ++i) mix[sz(i)] = normal01(kmix, static_cast<std::uint64_t>(i));
    std::vector<float> x(sz(tokens * K));
    for (std::int64_t t = 0; t < tokens; ++t) {
        float z[16];
        for (std::int64_t r = 0; r < rank; ++r) z[r] = normal01(kz, static_cast<std::uint64_t>(t * 1000 + r));
        for (std::int64_t k = 0; k < K; ++k) {
            float v = 0.3f * normal01(kz, static_cast<std::uint64_t>(t * 1000 + 100 + k));
            for (std::int64_t r = 0; r < rank; ++r) v += 0.5f * z[r] * mix[sz(r * K + k)];
            if (k % 61 == 5) v *= 6.0f;  // outlier channels
            x[sz(t * K + k)] = v;
        }
    }
    return x;
}

std::vector<float> random_weight(std::int64_t N, std::int64_t K, std::uint64_t seed) {
    const auto key = stream_key(seed, hash_string("w"));
    std::vector<float> w(sz(N * K));
    for (std::int64_t i = 0; i < N * K; ++i) w[sz(i)] = normal01(key, static_cast<std::uint64_t>(i)) / std::sqrt(static_cast<float>(K));
    return w;
}

std::vector<float> hessian_of(const std::vector<float>& x, std::int64_t tokens, std::int64_t K, std::int64_t seqs) {
    hessian_accumulator acc(K);
    const std::int64_t per = tokens / seqs;
    for (std::int64_t s = 0; s < seqs; ++s)
        acc.add_batch(std::span<const float>(x).subspan(sz(s * per * K), sz(per * K)), per, 1);
    return acc.finalize();
}
}  // namespace

TEST_CASE("quantizer params and codes follow quant.py", "[gptq][quantizer]") {
    SECTION("asymmetric") {
        const auto p = params_from_range(-1.5f, 6.0f, 15, false);
        CHECK(p.scale == 0.5f);
        CHECK(p.zero == 3.0f);
        CHECK(quantize_code(-1.5f, p, 15) == 0.0f);
        CHECK(quantize_code(0.0f, p, 15) == 3.0f);
        CHECK(quantize_code(6.0f, p, 15) == 15.0f);
        CHECK(quantize_code(0.25f, p, 15) == 3.0f);   // 0.5 rounds to even 0
        CHECK(quantize_code(0.75f, p, 15) == 5.0f);   // 1.5 rounds to even 2
        CHECK(quantize_code(100.0f, p, 15) == 15.0f); // clamp
        CHECK(dequantize_code(5.0f, p) == 1.0f);
    }
    SECTION("symmetric") {
        const auto p = params_from_range(-3.75f, 1.0f, 15, true);
        CHECK(p.scale == 0.5f);
        CHECK(p.zero == 8.0f);
        CHECK(quantize_code(-3.75f, p, 15) == 0.0f);  // -7.5 -> -8
        CHECK(quantize_code(1.0f, p, 15) == 10.0f);
        CHECK(quantize_code(3.75f, p, 15) == 15.0f);  // 7.5 -> 8 -> 16 -> clamp
        CHECK(params_from_range(-1.0f, 1.0f, 3, true).zero == 2.0f);
        CHECK(params_from_range(-1.0f, 1.0f, 7, true).zero == 4.0f);
        CHECK(params_from_range(-1.0f, 1.0f, 255, true).zero == 128.0f);
    }
    SECTION("all-positive symmetric row keeps xmin = 0 (as published); all-zero row uses [-1, 1]") {
        const auto p = params_from_range(1.0f, 2.0f, 15, true);
        CHECK(p.scale == Approx(2.0f / 15.0f));
        CHECK(p.zero == 8.0f);
        const auto z = params_from_range(0.0f, 0.0f, 15, false);
        CHECK(z.scale == Approx(2.0f / 15.0f));
        CHECK(z.zero == 7.0f);  // 1 / fp32(2/15) = 7.4999996 rounds to 7 in fp32, as torch computes it
    }
}

TEST_CASE("Hessian is (2/n) sum x x^T over sequences", "[gptq][hessian]") {
    const std::int64_t K = 3;
    std::vector<float> x = {1, 2, 3, 0, 1, -1, 2, 0, 1, 1, 1, 1};  // 4 tokens
    hessian_accumulator acc(K);
    acc.add_batch(std::span<const float>(x).subspan(0, 6), 2, 1);
    acc.add_batch(std::span<const float>(x).subspan(6, 6), 2, 1);
    const auto h = acc.finalize();
    // sum x x^T: diag = 1+0+4+1 = 6, 4+1+0+1 = 6, 9+1+1+1 = 12; (0,1) = 2+0+0+1 = 3; (0,2) = 3+0+2+1 = 6; (1,2) = 6-1+0+1 = 6
    const double f = 2.0 / 2.0;
    CHECK(h[0] == Approx(6 * f));
    CHECK(h[4] == Approx(6 * f));
    CHECK(h[8] == Approx(12 * f));
    CHECK(h[1] == Approx(3 * f));
    CHECK(h[3] == Approx(3 * f));
    CHECK(h[2] == Approx(6 * f));
    CHECK(h[5] == Approx(6 * f));
    CHECK(h[7] == Approx(6 * f));
}

TEST_CASE("upper Cholesky factor of the inverse", "[gptq][cholesky]") {
    const std::int64_t K = 24;
    const auto x = correlated_inputs(256, K, 5);
    auto h = hessian_of(x, 256, K, 4);
    for (std::int64_t i = 0; i < K; ++i) h[sz(i * K + i)] += 0.01f;
    std::vector<float> u;
    REQUIRE(cholesky_inverse_upper(h, K, u));
    // U^T U H = I
    for (std::int64_t i = 0; i < K; ++i)
        for (std::int64_t j = 0; j < K; ++j) {
            double s = 0;
            for (std::int64_t p = 0; p < K; ++p) {
                double inv_ip = 0;
                for (std::int64_t q = 0; q <= std::min(i, p); ++q) inv_ip += static_cast<double>(u[sz(q * K + i)]) * u[sz(q * K + p)];
                s += inv_ip * h[sz(p * K + j)];
            }
            CHECK(s == Approx(i == j ? 1.0 : 0.0).margin(2e-3));
        }
    for (std::int64_t i = 1; i < K; ++i) CHECK(u[sz(i * K + 0)] == 0.0f);  // upper triangular
    std::vector<float> bad(sz(K * K), 0.0f);
    bad[0] = -1.0f;
    CHECK_FALSE(cholesky_inverse_upper(bad, K, u));
}

TEST_CASE("g_idx for act-order and static groups", "[gptq][g_idx]") {
    const std::int64_t K = 8;
    const std::vector<std::int32_t> perm = {3, 1, 7, 0, 2, 6, 4, 5};
    // invperm: position of j in perm
    const auto act = make_g_idx(K, 2, false, perm);
    CHECK(act == std::vector<std::int32_t>{1, 0, 2, 0, 3, 3, 2, 1});
    CHECK(make_g_idx(K, 2, true, perm) == std::vector<std::int32_t>{0, 0, 1, 1, 2, 2, 3, 3});
    CHECK(make_g_idx(K, 2, false, {}) == std::vector<std::int32_t>{0, 0, 1, 1, 2, 2, 3, 3});
    CHECK(make_g_idx(K, -1, false, perm) == std::vector<std::int32_t>(8, 0));
    CHECK(make_g_idx(10, 4, false, {}) == std::vector<std::int32_t>{0, 0, 0, 0, 1, 1, 1, 1, 2, 2});

    // Diagonal of H decides the permutation (descending, stable).
    std::vector<float> h(sz(K * K), 0.0f);
    const float diag[8] = {1, 5, 2, 9, 1, 0.5f, 3, 7};
    for (std::int64_t i = 0; i < K; ++i) h[sz(i * K + i)] = diag[i];
    CHECK(act_order_permutation(h, K) == std::vector<std::int32_t>{3, 7, 1, 6, 2, 0, 4, 5});
}

TEST_CASE("GPTQ with act-order: g_idx, codes and scales are consistent", "[gptq][algorithm]") {
    const std::int64_t K = 128, N = 32, T = 512;
    const auto x = correlated_inputs(T, K, 21);
    const auto h = hessian_of(x, T, K, 4);
    const auto w = random_weight(N, K, 22);
    for (bool static_groups : {false, true}) {
        gptq_config cfg;
        cfg.bits = 4;
        cfg.group_size = 32;
        cfg.act_order = true;
        cfg.static_groups = static_groups;
        const auto r = gptq_quantize_ref(w, N, K, h, cfg);
        REQUIRE(r.perm.size() == sz(K));
        CHECK(r.perm == act_order_permutation(h, K));
        CHECK(r.q.g_idx == make_g_idx(K, 32, static_groups, r.perm));
        if (!static_groups) CHECK(r.q.g_idx != make_g_idx(K, 32, false, {}));  // non-monotone
        if (static_groups) {
            // Static groups: the quantizers of the original column order, i.e. RTN's scales.
            const auto rtn = rtn_quantize_ref(w, N, K, 4, 32, true);
            CHECK(r.q.scales == rtn.scales);
        }
        // Every code reproduces the fake-quantized weight with its own group's params (validate + dequantize).
        const auto wq = r.q.dequantize();
        double err = 0, ref = 0;
        for (std::int64_t i = 0; i < N * K; ++i) {
            err += (wq[sz(i)] - w[sz(i)]) * (wq[sz(i)] - w[sz(i)]);
            ref += w[sz(i)] * w[sz(i)];
        }
        CHECK(std::sqrt(err / ref) < 0.2);
    }
}

TEST_CASE("group params come from W at block start, not from the block's running copy", "[gptq][algorithm]") {
    const std::int64_t K = 128, N = 16, T = 256;
    const auto x = correlated_inputs(T, K, 31);
    const auto h = hessian_of(x, T, K, 2);
    const auto w = random_weight(N, K, 32);
    gptq_config cfg;
    cfg.bits = 3;
    cfg.group_size = 32;
    cfg.sym = false;
    cfg.block_size = 128;  // all four groups start inside the first block
    const auto r = gptq_quantize_ref(w, N, K, h, cfg);
    const auto rtn = rtn_quantize_ref(w, N, K, 3, 32, false);
    // Within the first block nothing has been lazily updated yet, so every group's params are RTN's.
    CHECK(r.q.scales == rtn.scales);
    CHECK(r.q.zeros == rtn.zeros);
    // With blocks of 32 the groups see the error feedback of the previous columns: different params.
    cfg.block_size = 32;
    const auto r32 = gptq_quantize_ref(w, N, K, h, cfg);
    CHECK(std::vector<float>(r32.q.scales.begin(), r32.q.scales.begin() + N) ==
          std::vector<float>(rtn.scales.begin(), rtn.scales.begin() + N));
    CHECK(r32.q.scales != rtn.scales);
}

TEST_CASE("lazy batch updates do not change the result when groups align with blocks", "[gptq][algorithm]") {
    const std::int64_t K = 96, N = 12, T = 256;
    const auto x = correlated_inputs(T, K, 41);
    const auto h = hessian_of(x, T, K, 2);
    const auto w = random_weight(N, K, 42);
    gptq_config cfg;
    cfg.bits = 4;
    cfg.group_size = -1;
    cfg.block_size = 96;
    const auto a = gptq_quantize_ref(w, N, K, h, cfg);
    cfg.block_size = 16;
    const auto b = gptq_quantize_ref(w, N, K, h, cfg);
    std::int64_t same = 0;
    for (std::size_t i = 0; i < a.q.codes.size(); ++i) same += a.q.codes[i] == b.q.codes[i];
    CHECK(static_cast<double>(same) / static_cast<double>(a.q.codes.size()) > 0.99);  // fp32 reassociation only
    CHECK(a.loss == Approx(b.loss).epsilon(0.02));
}

TEST_CASE("dead columns are zeroed and quantize to exactly zero", "[gptq][algorithm]") {
    const std::int64_t K = 64, N = 8, T = 128;
    auto x = correlated_inputs(T, K, 51);
    for (std::int64_t t = 0; t < T; ++t) x[sz(t * K + 10)] = 0.0f;
    const auto h = hessian_of(x, T, K, 2);
    REQUIRE(h[sz(10 * K + 10)] == 0.0f);
    const auto w = random_weight(N, K, 52);
    for (bool act : {false, true}) {
        gptq_config cfg;
        cfg.bits = 4;
        cfg.group_size = 32;
        cfg.act_order = act;
        const auto r = gptq_quantize_ref(w, N, K, h, cfg);
        const auto wq = r.q.dequantize();
        for (std::int64_t n = 0; n < N; ++n) CHECK(wq[sz(n * K + 10)] == 0.0f);
    }
}

TEST_CASE("GPTQ beats round-to-nearest on average at 2, 3 and 4 bits", "[gptq][algorithm][quality]") {
    const std::int64_t K = 256, N = 96, T = 1024;
    const auto calib = correlated_inputs(T, K, 61);
    const auto held_out = correlated_inputs(512, K, 62);
    const auto h = hessian_of(calib, T, K, 8);
    struct variant {
        std::int64_t group;
        bool act;
        bool sym;
    };
    const variant variants[] = {{128, false, true}, {-1, false, false}, {64, true, true}, {128, true, false}};
    for (std::int64_t bits : {2, 3, 4}) {
        double gptq_sum = 0, rtn_sum = 0;
        int wins = 0, count = 0;
        for (int layer = 0; layer < 2; ++layer) {
            const auto w = random_weight(N, K, static_cast<std::uint64_t>(100 + layer));
            for (const auto& v : variants) {
                gptq_config cfg;
                cfg.bits = bits;
                cfg.group_size = v.group;
                cfg.act_order = v.act;
                cfg.sym = v.sym;
                const auto g = gptq_quantize_ref(w, N, K, h, cfg);
                const auto r = rtn_quantize_ref(w, N, K, bits, v.group, v.sym);
                const double eg = relative_output_error(w, g.q.dequantize(), N, K, held_out, 512);
                const double er = relative_output_error(w, r.dequantize(), N, K, held_out, 512);
                gptq_sum += eg;
                rtn_sum += er;
                wins += eg < er;
                ++count;
            }
        }
        INFO("bits " << bits << ": mean GPTQ error " << gptq_sum / count << ", RTN " << rtn_sum / count);
        CHECK(gptq_sum < 0.9 * rtn_sum);
        CHECK(wins >= count - 1);
    }
}
