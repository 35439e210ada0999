// AutoGPTQ packing: hand-computed words for every width (incl. the 3-bit stream boundaries), the zero-minus-one
// convention, round trips on awkward shapes, AutoGPTQ's integer-weight derivation.
#include "backends/gptq/gptq_format.hpp"
#include "backends/gptq/gptq_pack.hpp"
#include "backends/gptq/gptq_quant_math.hpp"
#include "qbench/common/counter_rng.hpp"
#include "qbench/common/half.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

using namespace qbench;
using namespace qbench::gptq;

namespace {
// One column of K=32 rows packed: returns the `bits` words of that column.
std::vector<std::uint32_t> pack_column(const std::vector<std::uint32_t>& v, std::int64_t bits) {
    std::vector<std::uint8_t> codes(v.begin(), v.end());  // [K=32][N=1]
    const auto q = pack_qweight(codes, 32, 1, bits);
    return {q.begin(), q.end()};
}

// AutoGPTQ qlinear_cuda_old.py `pack` for 3 bits, transcribed literally (one column, 32 rows).
std::vector<std::uint32_t> autogptq_pack3_literal(const std::vector<std::uint32_t>& iw) {
    std::vector<std::uint32_t> q(3, 0);
    std::size_t i = 0, row = 0;
    for (std::size_t j = i; j < i + 10; ++j) q[row] |= iw[j] << (3 * (j - i));
    i += 10;
    q[row] |= iw[i] << 30;
    row += 1;
    q[row] |= (iw[i] >> 2) & 1;
    i += 1;
    for (std::size_t j = i; j < i + 10; ++j) q[row] |= iw[j] << (3 * (j - i) + 1);
    i += 10;
    q[row] |= iw[i] << 31;
    row += 1;
    q[row] |= (iw[i] >> 1) & 0x3;
    i += 1;
    for (std::size_t j = i; j < i + 10; ++j) q[row] |= iw[j] << (3 * (j - i) + 2);
    return q;
}
}  // namespace

TEST_CASE("4-bit qweight: 8 rows per word, row 8r+j at bits 4j", "[gptq][pack]") {
    std::vector<std::uint32_t> v(32, 0);
    for (int j = 0; j < 8; ++j) v[j] = static_cast<std::uint32_t>(j + 1);
    v[8] = 0xF;
    v[31] = 0xA;
    const auto w = pack_column(v, 4);
    REQUIRE(w.size() == 4);
    CHECK(w[0] == 0x87654321u);
    CHECK(w[1] == 0x0000000Fu);
    CHECK(w[2] == 0u);
    CHECK(w[3] == 0xA0000000u);
}

TEST_CASE("2-bit and 8-bit qweight words", "[gptq][pack]") {
    std::vector<std::uint32_t> v(32, 0);
    for (int j = 0; j < 32; ++j) v[j] = static_cast<std::uint32_t>(j % 4);
    const auto w2 = pack_column(v, 2);
    REQUIRE(w2.size() == 2);
    CHECK(w2[0] == 0xE4E4E4E4u);
    CHECK(w2[1] == 0xE4E4E4E4u);

    std::vector<std::uint32_t> b(32, 0);
    b[0] = 0x11;
    b[1] = 0x22;
    b[2] = 0x33;
    b[3] = 0x44;
    b[31] = 0xFE;
    const auto w8 = pack_column(b, 8);
    REQUIRE(w8.size() == 8);
    CHECK(w8[0] == 0x44332211u);
    CHECK(w8[7] == 0xFE000000u);
}

TEST_CASE("3-bit qweight is a 96-bit little-endian stream; values 10 and 21 straddle words", "[gptq][pack]") {
    SECTION("value 10 = 0b101: bits 30-31 of word0 and bit 0 of word1") {
        std::vector<std::uint32_t> v(32, 0);
        v[10] = 5;
        const auto w = pack_column(v, 3);
        CHECK(w[0] == 0x40000000u);
        CHECK(w[1] == 0x00000001u);
        CHECK(w[2] == 0u);
    }
    SECTION("value 21 = 0b110: bit 31 of word1 and bits 0-1 of word2") {
        std::vector<std::uint32_t> v(32, 0);
        v[21] = 6;
        const auto w = pack_column(v, 3);
        CHECK(w[0] == 0u);
        CHECK(w[1] == 0u);
        CHECK(w[2] == 0x00000003u);
        v[21] = 7;
        const auto w7 = pack_column(v, 3);
        CHECK(w7[1] == 0x80000000u);
        CHECK(w7[2] == 0x00000003u);
    }
    SECTION("inner values") {
        std::vector<std::uint32_t> v(32, 0);
        v[0] = 7;
        v[9] = 7;
        v[11] = 1;
        v[20] = 7;
        v[22] = 5;
        v[31] = 7;
        const auto w = pack_column(v, 3);
        CHECK(w[0] == 0x38000007u);
        CHECK(w[1] == 0x70000002u);
        CHECK(w[2] == 0xE0000014u);
    }
    SECTION("matches AutoGPTQ's pack loop on random values") {
        const auto key = stream_key(7, hash_string("pack3"));
        for (int trial = 0; trial < 50; ++trial) {
            std::vector<std::uint32_t> v(32);
            for (int j = 0; j < 32; ++j) v[j] = static_cast<std::uint32_t>(random_bits(key, trial * 32 + j) & 7u);
            CHECK(pack_column(v, 3) == autogptq_pack3_literal(v));
        }
    }
}

TEST_CASE("qzeros store z - 1 along N", "[gptq][pack]") {
    SECTION("symmetric zeros give the well-known words") {
        const std::int64_t N = 64;
        for (std::int64_t bits : {2, 3, 4, 8}) {
            const auto z = static_cast<std::uint8_t>((max_code(bits) + 1) / 2);
            std::vector<std::uint8_t> zeros(static_cast<std::size_t>(2 * N), z);
            const auto qz = pack_qzeros(zeros, 2, N, bits);
            REQUIRE(qz.size() == static_cast<std::size_t>(2 * qzeros_cols(N, bits)));
            auto u = [&](std::size_t i) { return static_cast<std::uint32_t>(qz[i]); };
            if (bits == 4) CHECK(u(0) == 0x77777777u);
            if (bits == 2) CHECK(u(0) == 0x55555555u);
            if (bits == 8) CHECK(u(0) == 0x7F7F7F7Fu);
            if (bits == 3) {
                CHECK(u(0) == 0xDB6DB6DBu);
                CHECK(u(1) == 0xB6DB6DB6u);
                CHECK(u(2) == 0x6DB6DB6Du);
            }
            CHECK(unpack_qzeros(qz, 2, N, bits) == zeros);
        }
    }
    SECTION("asymmetric zero 0 wraps to all ones and reads back as 0") {
        std::vector<std::uint8_t> zeros(32, 0);
        zeros[1] = 3;
        const auto qz = pack_qzeros(zeros, 1, 32, 4);
        CHECK(static_cast<std::uint32_t>(qz[0]) == 0xFFFFFF2Fu);
        CHECK(static_cast<std::uint32_t>(qz[1]) == 0xFFFFFFFFu);
        CHECK(unpack_qzeros(qz, 1, 32, 4) == zeros);
    }
}

TEST_CASE("pack/unpack round trip, all widths, awkward shapes", "[gptq][pack]") {
    const auto key = stream_key(11, hash_string("roundtrip"));
    std::uint64_t ctr = 0;
    for (std::int64_t bits : {2, 3, 4, 8})
        for (auto [K, N, gs] : {std::tuple<std::int64_t, std::int64_t, std::int64_t>{64, 32, 32}, {96, 40, 64},
                                {80, 96, -1}, {688, 36, 128}, {33, 7, 32}}) {
            quantized_linear q;
            q.in_features = K;
            q.out_features = N;
            q.bits = bits;
            q.group_size = gs;
            const std::int64_t G = q.groups();
            const auto maxq = static_cast<std::uint64_t>(max_code(bits)) + 1;
            q.codes.resize(static_cast<std::size_t>(N * K));
            for (auto& c : q.codes) c = static_cast<std::uint8_t>(random_bits(key, ctr++) % maxq);
            q.zeros.resize(static_cast<std::size_t>(G * N));
            for (auto& z : q.zeros) z = static_cast<std::uint8_t>(random_bits(key, ctr++) % maxq);
            q.scales.resize(static_cast<std::size_t>(G * N));
            for (auto& s : q.scales) s = round_to_half(0.001f + uniform01(key, ctr++));
            q.g_idx.resize(static_cast<std::size_t>(K));
            for (std::int64_t k = 0; k < K; ++k) q.g_idx[static_cast<std::size_t>(k)] = static_cast<std::int32_t>(k / effective_group(gs, K));
            const auto p = pack(q);
            CHECK(p.qweight.size() == static_cast<std::size_t>(qweight_rows(K, bits) * N));
            CHECK(p.qzeros.size() == static_cast<std::size_t>(G * qzeros_cols(N, bits)));
            const auto r = unpack(p);
            CHECK(r.codes == q.codes);
            CHECK(r.zeros == q.zeros);
            CHECK(r.scales == q.scales);
            CHECK(r.g_idx == q.g_idx);
            CHECK(r.dequantize() == q.dequantize());
        }
}

TEST_CASE("AutoGPTQ intweight from the fake-quantized fp16 weight equals the algorithm's codes", "[gptq][pack]") {
    const auto key = stream_key(3, hash_string("intweight"));
    for (std::int64_t bits : {2, 3, 4, 8})
        for (bool sym : {true, false}) {
            const std::int64_t K = 64, N = 16, gs = 32, G = 2;
            const auto maxq = static_cast<std::int32_t>(max_code(bits));
            std::vector<float> scales(G * N), zeros(G * N);
            std::vector<std::uint8_t> codes(N * K);
            std::vector<std::uint16_t> wq(N * K);
            std::vector<std::int32_t> g_idx(K);
            for (std::int64_t k = 0; k < K; ++k) g_idx[k] = static_cast<std::int32_t>(k / gs);
            std::uint64_t ctr = 0;
            for (std::int64_t g = 0; g < G; ++g)
                for (std::int64_t n = 0; n < N; ++n) {
                    const float lo = -0.05f - 0.1f * uniform01(key, ctr++);
                    const float hi = 0.05f + 0.1f * uniform01(key, ctr++);
                    const auto p = params_from_range(lo, hi, maxq, sym);
                    scales[g * N + n] = p.scale;
                    zeros[g * N + n] = p.zero;
                }
            for (std::int64_t n = 0; n < N; ++n)
                for (std::int64_t k = 0; k < K; ++k) {
                    const channel_params p{scales[g_idx[k] * N + n], zeros[g_idx[k] * N + n]};
                    const float x = 0.3f * (uniform01(key, ctr++) - 0.5f);
                    const float c = quantize_code(x, p, maxq);
                    codes[n * K + k] = static_cast<std::uint8_t>(c);
                    wq[n * K + k] = float_to_half(dequantize_code(c, p));
                }
            CHECK(intweight_from_fake_quant(wq, scales, zeros, g_idx, K, N, bits) == codes);
        }
}

TEST_CASE("pack rejects inconsistent layers", "[gptq][pack]") {
    quantized_linear q;
    q.in_features = 32;
    q.out_features = 32;
    q.bits = 5;
    CHECK_THROWS(pack(q));
    q.bits = 4;
    q.group_size = 32;
    q.codes.assign(32 * 32, 16);  // out of range for 4 bits
    q.scales.assign(32, 1.0f);
    q.zeros.assign(32, 8);
    q.g_idx.assign(32, 0);
    CHECK_THROWS(pack(q));
}
