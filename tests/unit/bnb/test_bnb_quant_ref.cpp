// The CPU reference of the bitsandbytes formats: hand-computed blocks, nibble order, round-trip bounds, double
// quantization, LLM.int8() against float matmul.
#include "backends/bnb/bnb_quant_ref.hpp"
#include "bnb_test_util.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

using namespace qbench;
using namespace qbench::bnb;

namespace {

// Largest distance from a value in [-1, 1] to its code, given the code book's sorted values.
double max_half_gap(const std::array<float, 16>& code) {
    std::array<float, 16> s = code;
    std::sort(s.begin(), s.end());
    double g = 0;
    for (std::size_t i = 1; i < s.size(); ++i) g = std::max(g, (static_cast<double>(s[i]) - s[i - 1]) / 2.0);
    return g;
}

}  // namespace

TEST_CASE("bnb ref: hand-computed NF4 block and nibble order", "[cpu][bnb]") {
    // Block of 64 values that are exactly code[i % 16] * 2: absmax 2, codes 0..15 in order, so the bytes are
    // 0x01 0x23 ... 0xEF: element 2j in the high nibble, 2j+1 in the low one.
    std::vector<float> v(64);
    for (int i = 0; i < 64; ++i) v[static_cast<std::size_t>(i)] = k_nf4_code[static_cast<std::size_t>(i % 16)] * 2.0f;
    const quant_4bit_weight w = quantize_4bit_ref(v, 1, 64, {quant_type::nf4, 64, false});
    REQUIRE(w.absmax.size() == 1);
    CHECK(w.absmax[0] == 2.0f);
    REQUIRE(w.packed.size() == 32);
    const std::uint8_t expected[8] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF};
    for (int j = 0; j < 32; ++j) CHECK(static_cast<int>(w.packed[static_cast<std::size_t>(j)]) == expected[j % 8]);
    CHECK(w.nibble(0) == 0);
    CHECK(w.nibble(1) == 1);
    CHECK(w.nibble(14) == 14);
    const std::vector<float> back = dequantize_4bit_ref(w);
    for (int i = 0; i < 64; ++i) CHECK(back[static_cast<std::size_t>(i)] == round_to_half(v[static_cast<std::size_t>(i)]));
}

TEST_CASE("bnb ref: hand-computed mixed NF4 and FP4 values", "[cpu][bnb]") {
    // absmax 4: x/absmax = {1, 0.3, -0.05, 0, 0.75, -1, 0.125, -0.5}.
    const std::vector<float> v = {4.0f, 1.2f, -0.2f, 0.0f, 3.0f, -4.0f, 0.5f, -2.0f};
    const quant_4bit_weight nf4 = quantize_4bit_ref(v, 2, 4, {quant_type::nf4, 32, false});
    // NF4: 1 -> 15, 0.3 -> 11, -0.05 -> 6 (-0.091 nearer than 0), 0 -> 7, 0.75 -> 14, -1 -> 0, 0.125 -> 9, -0.5 -> 2.
    CHECK(static_cast<int>(nf4.packed[0]) == 0xFB);
    CHECK(static_cast<int>(nf4.packed[1]) == 0x67);
    CHECK(static_cast<int>(nf4.packed[2]) == 0xE0);
    CHECK(static_cast<int>(nf4.packed[3]) == 0x92);
    const quant_4bit_weight fp4 = quantize_4bit_ref(v, 2, 4, {quant_type::fp4, 32, false});
    // FP4: 1 -> 0011, 0.3 -> 0100 (4/12), -0.05 -> 1001 (-0.0625/12 < 0.0859), 0 -> 0000, 0.75 -> 0010 (8/12),
    // -1 -> 1011, 0.125 -> 0110 (2/12), -0.5 -> 1101.
    CHECK(static_cast<int>(fp4.packed[0]) == 0x34);
    CHECK(static_cast<int>(fp4.packed[1]) == 0x90);
    CHECK(static_cast<int>(fp4.packed[2]) == 0x2B);
    CHECK(static_cast<int>(fp4.packed[3]) == 0x6D);
    const std::vector<float> back = dequantize_4bit_ref(fp4);
    CHECK(back[1] == round_to_half(4.0f * (4.0f / 12.0f)));
    CHECK(back[7] == round_to_half(-4.0f * 0.5f));
}

TEST_CASE("bnb ref: odd element count pads the last low nibble with code(0)", "[cpu][bnb]") {
    const std::vector<float> v = {1.0f, -1.0f, 0.5f};
    const quant_4bit_weight nf4 = quantize_4bit_ref(v, 1, 3, {quant_type::nf4, 64, false});
    REQUIRE(nf4.packed.size() == 2);
    CHECK(static_cast<int>(nf4.packed[1] & 0x0f) == 7);  // NF4 code of 0
    const quant_4bit_weight fp4 = quantize_4bit_ref(v, 1, 3, {quant_type::fp4, 64, false});
    CHECK(static_cast<int>(fp4.packed[1] & 0x0f) == 0);  // FP4 code of 0
}

TEST_CASE("bnb ref: an all-zero block dequantizes to zero", "[cpu][bnb]") {
    std::vector<float> v(128, 0.0f);
    for (int i = 64; i < 128; ++i) v[static_cast<std::size_t>(i)] = 0.25f;
    const quant_4bit_weight w = quantize_4bit_ref(v, 2, 64, {quant_type::nf4, 64, false});
    CHECK(w.absmax[0] == 0.0f);
    const std::vector<float> back = dequantize_4bit_ref(w);
    for (int i = 0; i < 64; ++i) CHECK(back[static_cast<std::size_t>(i)] == 0.0f);
    for (int i = 64; i < 128; ++i) CHECK(back[static_cast<std::size_t>(i)] == 0.25f);
}

TEST_CASE("bnb ref: round trip within the code book's half gap", "[cpu][bnb]") {
    const auto type = GENERATE(quant_type::nf4, quant_type::fp4);
    const std::int64_t bs = GENERATE(32, 64, 256, 4096);
    // 48 columns: blocks straddle rows (the tensor is blocked flat, as bitsandbytes does).
    const std::int64_t rows = 67, cols = 48;
    const std::vector<float> v = test::random_weights(17, rows * cols, 0.05f);
    const quant_4bit_weight w = quantize_4bit_ref(v, rows, cols, {type, bs, false});
    CHECK(w.blocks() == (rows * cols + bs - 1) / bs);
    const std::vector<float> back = dequantize_4bit_ref(w);
    const double gap = max_half_gap(code_book(type));
    double err2 = 0, ref2 = 0;
    for (std::int64_t i = 0; i < rows * cols; ++i) {
        const double a = w.absmax[static_cast<std::size_t>(i / bs)];
        const double e = std::fabs(static_cast<double>(back[static_cast<std::size_t>(i)]) - v[static_cast<std::size_t>(i)]);
        INFO("element " << i);
        REQUIRE(e <= a * (gap + 1e-6) + std::fabs(back[static_cast<std::size_t>(i)]) / 2048.0 + 1e-8);
        err2 += e * e;
        ref2 += static_cast<double>(v[static_cast<std::size_t>(i)]) * v[static_cast<std::size_t>(i)];
    }
    // NF4 is built for normal data: its relative error is well below FP4's on the same weights.
    const double nmse = err2 / ref2;
    CHECK(nmse < (type == quant_type::nf4 ? 0.02 : 0.05));
}

TEST_CASE("bnb ref: NF4 beats FP4 on normal weights", "[cpu][bnb]") {
    const std::vector<float> v = test::random_weights(5, 64 * 64, 0.02f);
    double e_nf4 = 0, e_fp4 = 0;
    const auto nf4 = dequantize_4bit_ref(quantize_4bit_ref(v, 64, 64, {quant_type::nf4, 64, false}));
    const auto fp4 = dequantize_4bit_ref(quantize_4bit_ref(v, 64, 64, {quant_type::fp4, 64, false}));
    for (std::size_t i = 0; i < v.size(); ++i) {
        e_nf4 += (nf4[i] - v[i]) * (nf4[i] - v[i]);
        e_fp4 += (fp4[i] - v[i]) * (fp4[i] - v[i]);
    }
    CHECK(e_nf4 < e_fp4);
}

TEST_CASE("bnb ref: double quantization of absmax", "[cpu][bnb]") {
    const std::int64_t rows = 40, cols = 1024;  // 640 blocks of 64: three nested blocks, the last partial
    const std::vector<float> v = test::random_weights(23, rows * cols, 0.03f);
    const quant_4bit_weight plain = quantize_4bit_ref(v, rows, cols, {quant_type::nf4, 64, false});
    const quant_4bit_weight dq = quantize_4bit_ref(v, rows, cols, {quant_type::nf4, 64, true});
    REQUIRE(dq.nested);
    CHECK(dq.absmax.empty());
    CHECK(dq.packed == plain.packed);  // double quantization changes only the statistics
    const nested_absmax& s = dq.nested_state;
    CHECK(s.codes.size() == 640);
    CHECK(s.absmax.size() == 3);
    CHECK(s.blocksize == 256);
    double mean = 0;
    for (float a : plain.absmax) mean += a;
    mean /= static_cast<double>(plain.absmax.size());
    CHECK(s.offset == static_cast<float>(mean));
    // Round trip: |absmax' - absmax| <= absmax2 * (largest half gap of the dynamic map) + rounding.
    const auto& map = dynamic_map_signed();
    double gap = 0;
    for (int i = 1; i < 256; ++i) gap = std::max(gap, (static_cast<double>(map[static_cast<std::size_t>(i)]) - map[static_cast<std::size_t>(i - 1)]) / 2.0);
    CHECK(gap < 0.01);
    for (std::int64_t b = 0; b < dq.blocks(); ++b) {
        const double a2 = s.absmax[static_cast<std::size_t>(b / 256)];
        const double err = std::fabs(static_cast<double>(block_absmax(dq, b)) - plain.absmax[static_cast<std::size_t>(b)]);
        INFO("block " << b);
        REQUIRE(err <= a2 * gap + 1e-6 * plain.absmax[static_cast<std::size_t>(b)] + 1e-9);
    }
    // Each nested block's largest |absmax - offset| maps to code 0 or 255 (+-1.0 after scaling).
    for (std::size_t nb = 0; nb < s.absmax.size(); ++nb) {
        bool extreme = false;
        for (std::size_t b = nb * 256; b < std::min<std::size_t>(640, (nb + 1) * 256); ++b)
            extreme |= s.codes[b] == 255 || s.codes[b] == 0;
        CHECK(extreme);
    }
}

TEST_CASE("bnb ref: 4-bit matmul is x . fp16(dequantized W)", "[cpu][bnb]") {
    const std::int64_t n = 23, k = 96, m = 3;
    const std::vector<float> v = test::random_weights(3, n * k, 0.1f);
    const quant_4bit_weight w = quantize_4bit_ref(v, n, k, {quant_type::fp4, 32, true});
    const std::vector<float> x = test::random_activations(4, m, k, 0);
    std::vector<float> y(static_cast<std::size_t>(m * n));
    matmul_4bit_ref(w, x.data(), m, y.data());
    const std::vector<float> deq = dequantize_4bit_ref(w);
    for (std::int64_t r = 0; r < m; ++r)
        for (std::int64_t o = 0; o < n; ++o) {
            double acc = 0;
            for (std::int64_t c = 0; c < k; ++c) acc += static_cast<double>(x[static_cast<std::size_t>(r * k + c)]) * deq[static_cast<std::size_t>(o * k + c)];
            CHECK(y[static_cast<std::size_t>(r * n + o)] == round_to_half(static_cast<float>(acc)));
        }
}

TEST_CASE("bnb ref: quantize_4bit_ref rejects bad block sizes and shapes", "[cpu][bnb]") {
    const std::vector<float> v(64, 1.0f);
    CHECK_THROWS_AS(quantize_4bit_ref(v, 1, 64, {quant_type::nf4, 48, false}), std::invalid_argument);
    CHECK_THROWS_AS(quantize_4bit_ref(v, 1, 64, {quant_type::nf4, 8192, false}), std::invalid_argument);
    CHECK_THROWS_AS(quantize_4bit_ref(v, 2, 64, {quant_type::nf4, 64, false}), std::invalid_argument);
}

TEST_CASE("bnb ref: hand-computed int8 row quantization, ties to even", "[cpu][bnb]") {
    // SCB = 4; w * 127/4 = {31.75, -63.5, 15.875, 127} -> {32, -64 (half to even), 16, 127}.
    const std::vector<float> v = {1.0f, -2.0f, 0.5f, 4.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    const int8_weight w = quantize_int8_ref(v, 2, 4);
    CHECK(w.scb[0] == 4.0f);
    CHECK(w.scb[1] == 0.0f);
    CHECK(static_cast<int>(w.cb[0]) == 32);
    CHECK(static_cast<int>(w.cb[1]) == -64);
    CHECK(static_cast<int>(w.cb[2]) == 16);
    CHECK(static_cast<int>(w.cb[3]) == 127);
    for (int i = 4; i < 8; ++i) CHECK(static_cast<int>(w.cb[static_cast<std::size_t>(i)]) == 0);
    CHECK(int8_weight_value(w, 0, 1) == -64.0f * 4.0f / 127.0f);
}

TEST_CASE("bnb ref: LLM.int8() activation quantization and outlier columns", "[cpu][bnb]") {
    // Row 0 has an outlier in column 1 (7 >= 6): column 1 is decomposed in every row, row 0's statistic skips it,
    // row 1's statistic still sees its own value 5 in that column (taken before the column is zeroed).
    const std::vector<float> x = {1.0f, 7.0f, -2.0f, 0.5f,  //
                                  0.25f, 5.0f, 1.0f, -1.0f};
    const int8_activations a = quantize_int8_activations_ref(x.data(), 2, 4, 6.0f);
    REQUIRE(a.outlier_cols.size() == 1);
    CHECK(a.outlier_cols[0] == 1);
    CHECK(a.row_stats[0] == 2.0f);
    CHECK(a.row_stats[1] == 5.0f);
    CHECK(static_cast<int>(a.q[1]) == 0);
    CHECK(static_cast<int>(a.q[5]) == 0);
    CHECK(static_cast<int>(a.q[0]) == 64);    // 1 * 127/2 = 63.5 -> 64 (half to even)
    CHECK(static_cast<int>(a.q[2]) == -127);
    CHECK(static_cast<int>(a.q[4]) == 6);     // 0.25 * 127/5 = 6.35
    const int8_activations none = quantize_int8_activations_ref(x.data(), 2, 4, 0.0f);
    CHECK(none.outlier_cols.empty());
    CHECK(none.row_stats[0] == 7.0f);
    CHECK(static_cast<int>(none.q[1]) == 127);
}

namespace {

struct int8_errors {
    double max_excess = 0;  // largest |y - y_float| - bound (must be <= 0)
    double mean_error = 0;
};

int8_errors check_int8(const std::vector<float>& wv, const std::vector<float>& x, std::int64_t m, std::int64_t n,
                       std::int64_t k, float threshold) {
    const int8_weight w = quantize_int8_ref(wv, n, k);
    std::vector<float> y(static_cast<std::size_t>(m * n));
    matmul_int8_ref(w, x.data(), m, threshold, y.data());
    const int8_activations a = quantize_int8_activations_ref(x.data(), m, k, threshold);
    std::vector<char> outlier(static_cast<std::size_t>(k), 0);
    for (auto c : a.outlier_cols) outlier[static_cast<std::size_t>(c)] = 1;
    int8_errors e;
    for (std::int64_t r = 0; r < m; ++r)
        for (std::int64_t o = 0; o < n; ++o) {
            double exact = 0, bound = 0;
            const double rs = a.row_stats[static_cast<std::size_t>(r)], sc = w.scb[static_cast<std::size_t>(o)];
            for (std::int64_t c = 0; c < k; ++c) {
                const double xv = x[static_cast<std::size_t>(r * k + c)], wvv = wv[static_cast<std::size_t>(o * k + c)];
                exact += xv * wvv;
                // Rounding x to int8 moves it by <= rs/254, w by <= SCB/254; outlier columns keep x exact.
                if (outlier[static_cast<std::size_t>(c)])
                    bound += std::fabs(xv) * sc / 254.0;
                else
                    bound += std::fabs(xv) * sc / 254.0 + std::fabs(wvv) * rs / 254.0 + rs * sc / (254.0 * 254.0);
            }
            const double got = y[static_cast<std::size_t>(r * n + o)];
            const double err = std::fabs(got - exact);
            bound += std::fabs(exact) / 1024.0 + 1e-6;  // the fp16 output
            e.max_excess = std::max(e.max_excess, err - bound);
            e.mean_error += err;
        }
    e.mean_error /= static_cast<double>(m * n);
    return e;
}

}  // namespace

TEST_CASE("bnb ref: LLM.int8() matmul against float matmul", "[cpu][bnb]") {
    const std::int64_t m = 4, n = 32, k = 256;
    const std::vector<float> wv = test::random_weights(31, n * k, 1.0f / 16.0f);
    SECTION("no outliers") {
        const std::vector<float> x = test::random_activations(32, m, k, 0);
        const int8_errors e6 = check_int8(wv, x, m, n, k, 6.0f);
        const int8_errors e0 = check_int8(wv, x, m, n, k, 0.0f);
        CHECK(e6.max_excess <= 0.0);
        CHECK(e0.max_excess <= 0.0);
        CHECK(e6.mean_error == e0.mean_error);  // nothing reaches the threshold: identical results
    }
    SECTION("outlier columns") {
        const std::vector<float> x = test::random_activations(33, m, k, 64);
        const int8_errors decomposed = check_int8(wv, x, m, n, k, 6.0f);
        const int8_errors plain = check_int8(wv, x, m, n, k, 0.0f);
        CHECK(decomposed.max_excess <= 0.0);
        CHECK(plain.max_excess <= 0.0);
        // The point of the decomposition: outliers no longer inflate every row's quantization step.
        CHECK(plain.mean_error > 1.5 * decomposed.mean_error);
    }
}
