#include "backends/bnb/bnb_format.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace qbench::bnb {

std::string_view quant_type_name(quant_type t) { return t == quant_type::nf4 ? "nf4" : "fp4"; }

namespace {

// torch.linspace(start, end, steps) for float32 on the CPU, scalar formula: the first half counts up from start,
// the second half down from end, so both ends are exact.
std::vector<float> linspace_f32(float start, float end, int steps) {
    std::vector<float> out(static_cast<std::size_t>(steps));
    const float step = (end - start) / static_cast<float>(steps - 1);
    const int halfway = steps / 2;
    for (int i = 0; i < steps; ++i) {
        if (i < halfway) {
            const float t = step * static_cast<float>(i);
            out[static_cast<std::size_t>(i)] = start + t;
        } else {
            const float t = step * static_cast<float>(steps - i - 1);
            out[static_cast<std::size_t>(i)] = end - t;
        }
    }
    return out;
}

std::array<float, 256> make_dynamic_map_signed() {
    constexpr int max_exponent_bits = 7;
    constexpr int non_sign_bits = 7;  // total_bits 8 minus the sign bit
    std::vector<float> data;
    for (int i = 0; i < max_exponent_bits; ++i) {
        const int fraction_items = (1 << (i + non_sign_bits - max_exponent_bits)) + 1;
        const std::vector<float> boundaries = linspace_f32(0.1f, 1.0f, fraction_items);
        // The python scalar 10**e meets a float32 tensor: it is cast to float32 and multiplied in float32.
        const float scale = static_cast<float>(std::pow(10.0, static_cast<double>(-(max_exponent_bits - 1) + i)));
        for (std::size_t j = 0; j + 1 < boundaries.size(); ++j) {
            const float mean = (boundaries[j] + boundaries[j + 1]) / 2.0f;
            data.push_back(scale * mean);
            data.push_back(-scale * mean);
        }
    }
    // additional_items = 2^(non_sign_bits - max_exponent_bits) - 1 = 0 for the signed 8-bit map.
    data.push_back(0.0f);
    data.push_back(1.0f);
    std::sort(data.begin(), data.end());
    std::array<float, 256> out{};
    std::copy(data.begin(), data.end(), out.begin());
    return out;
}

}  // namespace

const std::array<float, 256>& dynamic_map_signed() {
    static const std::array<float, 256> map = make_dynamic_map_signed();
    return map;
}

std::uint64_t quant_4bit_weight::storage_bytes() const {
    std::uint64_t bytes = packed.size();
    if (nested)
        bytes += nested_state.codes.size() + nested_state.absmax.size() * sizeof(float);
    else
        bytes += absmax.size() * sizeof(float);
    return bytes;
}

std::string format_name_4bit(quant_type t, std::int64_t blocksize, bool double_quant) {
    std::string s = "bnb-";
    s += quant_type_name(t);
    s += "-bs" + std::to_string(blocksize);
    if (double_quant) s += "-dq";
    return s;
}

std::string format_name_int8(double threshold) {
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof(buf), threshold);
    return "bnb-int8-t" + std::string(buf, r.ptr);
}

}  // namespace qbench::bnb
