// Code books, decision thresholds and the dynamic map against the values bitsandbytes ships.
#include "backends/bnb/bnb_format.hpp"
#include "backends/bnb/bnb_quant_ref.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

using namespace qbench::bnb;

TEST_CASE("bnb format: NF4 code book is bitsandbytes' exact list", "[cpu][bnb]") {
    // functional.py get_4bit_type("nf4") / kernels.cu nf4_dequantization_lut, as float32.
    const double expected[16] = {-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                                 -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                                 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                                 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0};
    for (int i = 0; i < 16; ++i) CHECK(k_nf4_code[static_cast<std::size_t>(i)] == static_cast<float>(expected[i]));
    // Asymmetric: 8 negatives (incl. -1), one zero, 7 positives (incl. +1), strictly increasing.
    for (int i = 1; i < 16; ++i) CHECK(k_nf4_code[static_cast<std::size_t>(i - 1)] < k_nf4_code[static_cast<std::size_t>(i)]);
    CHECK(k_nf4_code[7] == 0.0f);
}

TEST_CASE("bnb format: FP4 code book is the python list divided by 12", "[cpu][bnb]") {
    const float raw[16] = {0, 0.0625f, 8, 12, 4, 6, 2, 3, -0.0f, -0.0625f, -8, -12, -4, -6, -2, -3};
    for (int i = 0; i < 16; ++i) {
        CHECK(k_fp4_code[static_cast<std::size_t>(i)] == raw[i] / 12.0f);
        CHECK(std::signbit(k_fp4_code[static_cast<std::size_t>(i)]) == (i >= 8));  // sign bit 0b1000
    }
    CHECK(k_fp4_code[0b0011] == 1.0f);
    CHECK(k_fp4_code[0b1011] == -1.0f);
}

TEST_CASE("bnb format: NF4 thresholds are the midpoints of adjacent codes", "[cpu][bnb]") {
    // bitsandbytes' literals were printed from a float64 computation: within one float ulp of the midpoint.
    for (std::size_t i = 0; i < k_nf4_thresholds.size(); ++i) {
        const auto mid = static_cast<float>((static_cast<double>(k_nf4_code[i]) + k_nf4_code[i + 1]) / 2.0);
        const float t = k_nf4_thresholds[i];
        CHECK((t == mid || std::nextafter(t, 2.0f) == mid || std::nextafter(t, -2.0f) == mid));
        CHECK(k_nf4_code[i] < t);
        CHECK(t < k_nf4_code[i + 1]);
    }
}

TEST_CASE("bnb format: NF4 quantization is nearest code, ties to the lower code", "[cpu][bnb]") {
    CHECK(quantize_nf4_value(1.0f) == 15);
    CHECK(quantize_nf4_value(-1.0f) == 0);
    CHECK(quantize_nf4_value(0.0f) == 7);
    CHECK(quantize_nf4_value(0.3f) == 11);  // 0.2920 < 0.3 <= 0.3893 -> 0.3379
    CHECK(quantize_nf4_value(k_nf4_thresholds[7]) == 7);  // exactly on a threshold: the lower code
    CHECK(quantize_nf4_value(std::nextafter(k_nf4_thresholds[7], 1.0f)) == 8);
    CHECK(quantize_nf4_value(std::numeric_limits<float>::quiet_NaN()) == 0);  // the tree's all-false path
    for (int s = 0; s <= 2000; ++s) {
        const float x = -1.0f + static_cast<float>(s) / 1000.0f;
        int best = 0;
        for (int c = 1; c < 16; ++c)
            if (std::fabs(x - k_nf4_code[static_cast<std::size_t>(c)]) < std::fabs(x - k_nf4_code[static_cast<std::size_t>(best)])) best = c;
        INFO("x = " << x);
        CHECK(quantize_nf4_value(x) == best);
    }
}

TEST_CASE("bnb format: FP4 quantization follows dQuantizeFP4", "[cpu][bnb]") {
    CHECK(quantize_fp4_value(0.0f) == 0b0000);
    CHECK(quantize_fp4_value(-0.0f) == 0b0000);  // -0 is not < 0
    CHECK(quantize_fp4_value(1.0f) == 0b0011);
    CHECK(quantize_fp4_value(-1.0f) == 0b1011);
    CHECK(quantize_fp4_value(0.5f) == 0b0101);
    CHECK(quantize_fp4_value(-0.2f) == 0b1110);  // |x| in (0.0859, 0.2083] -> 2/12
    CHECK(quantize_fp4_value(0.29166667f) == 0b0111);  // on the threshold: lower magnitude (3/12)
    CHECK(quantize_fp4_value(0.3f) == 0b0100);         // 4/12
    CHECK(quantize_fp4_value(0.002f) == 0b0000);
    CHECK(quantize_fp4_value(0.003f) == 0b0001);
    // Away from the thresholds the code is the nearest representable value.
    for (int s = -100; s <= 100; ++s) {
        const float x = static_cast<float>(s) / 100.0f;
        bool near_threshold = false;
        for (float t : k_fp4_thresholds) near_threshold |= std::fabs(std::fabs(x) - t) < 1e-3f;
        if (near_threshold) continue;
        const std::uint8_t q = quantize_fp4_value(x);
        for (int c = 0; c < 16; ++c)
            CHECK(std::fabs(x - k_fp4_code[q]) <= std::fabs(x - k_fp4_code[static_cast<std::size_t>(c)]) + 1e-7f);
    }
}

TEST_CASE("bnb format: signed dynamic map", "[cpu][bnb]") {
    const auto& map = dynamic_map_signed();
    CHECK(map[127] == 0.0f);
    CHECK(map[255] == 1.0f);
    for (int i = 1; i < 256; ++i) CHECK(map[static_cast<std::size_t>(i - 1)] < map[static_cast<std::size_t>(i)]);
    // 127 negatives mirror the 127 smallest positives.
    for (int i = 0; i < 127; ++i) CHECK(map[static_cast<std::size_t>(i)] == -map[static_cast<std::size_t>(254 - i)]);
    // Hand-computed entries: exponent level 0 is one mean of linspace(0.1, 1, 2) = 0.55, times 1e-6;
    // the largest magnitude below 1 is 1 * mean(last two of linspace(0.1, 1, 65)).
    CHECK(map[128] == 1e-6f * 0.55f);
    CHECK(map[126] == -(1e-6f * 0.55f));
    CHECK(map[254] == Approx(1.0 - 0.9 / 64 / 2).epsilon(1e-6));
    CHECK(map[0] == -map[254]);
}

TEST_CASE("bnb format: dynamic quantization returns each code's own index", "[cpu][bnb]") {
    const auto& map = dynamic_map_signed();
    for (int i = 0; i < 256; ++i) CHECK(quantize_dynamic_value(map, map[static_cast<std::size_t>(i)]) == i);
    // Between two codes: the nearer one.
    const float a = map[200], b = map[201];
    CHECK(quantize_dynamic_value(map, a + (b - a) * 0.25f) == 200);
    CHECK(quantize_dynamic_value(map, a + (b - a) * 0.75f) == 201);
    CHECK(quantize_dynamic_value(map, 2.0f) == 255);
    CHECK(quantize_dynamic_value(map, -2.0f) == 0);
}

TEST_CASE("bnb format: block sizes and names", "[cpu][bnb]") {
    CHECK(valid_blocksize(32));
    CHECK(valid_blocksize(64));
    CHECK(valid_blocksize(4096));
    CHECK_FALSE(valid_blocksize(16));
    CHECK_FALSE(valid_blocksize(48));
    CHECK_FALSE(valid_blocksize(8192));
    CHECK(format_name_4bit(quant_type::nf4, 64, false) == "bnb-nf4-bs64");
    CHECK(format_name_4bit(quant_type::fp4, 128, true) == "bnb-fp4-bs128-dq");
    CHECK(format_name_int8(6.0) == "bnb-int8-t6");
    CHECK(format_name_int8(0.0) == "bnb-int8-t0");
}
