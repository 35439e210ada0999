#include "backends/quant_format.hpp"

#include <array>
#include <stdexcept>

namespace qbench {

namespace {
constexpr std::array<quant_format_traits, static_cast<std::size_t>(quant_format::count_)> k_formats{{
    {quant_format::f16, "f16", quant_family::none, "fp16", 16, 0, 0, false, false, "IEEE fp16, no quantization"},
    {quant_format::gptq_int2, "gptq-int2", quant_family::gptq, "gptq", 2, 128, 16, true, false,
     "GPTQ 2-bit, AutoGPTQ layout"},
    {quant_format::gptq_int3, "gptq-int3", quant_family::gptq, "gptq", 3, 128, 16, true, false,
     "GPTQ 3-bit, AutoGPTQ 96-bit stream layout"},
    {quant_format::gptq_int4, "gptq-int4", quant_family::gptq, "gptq", 4, 128, 16, true, false,
     "GPTQ 4-bit, AutoGPTQ layout"},
    {quant_format::gptq_int8, "gptq-int8", quant_family::gptq, "gptq", 8, 128, 16, true, false,
     "GPTQ 8-bit, AutoGPTQ layout"},
    {quant_format::bnb_nf4, "bnb-nf4", quant_family::bnb, "bnb", 4, 64, 32, false, false,
     "bitsandbytes NF4, blockwise absmax"},
    {quant_format::bnb_fp4, "bnb-fp4", quant_family::bnb, "bnb", 4, 64, 32, false, false,
     "bitsandbytes FP4 (e2m1, bnb code book), blockwise absmax"},
    {quant_format::bnb_int8, "bnb-int8", quant_family::bnb, "bnb", 8, 0, 0, false, true,
     "bitsandbytes LLM.int8(): row-wise int8 + fp16 outlier columns"},
}};
constexpr bool table_is_ordered() {
    for (std::size_t i = 0; i < k_formats.size(); ++i)
        if (static_cast<std::size_t>(k_formats[i].id) != i) return false;
    return true;
}
static_assert(table_is_ordered(), "quant_format table rows must be in enum order");

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }
}  // namespace

std::span<const quant_format_traits> quant_format_table() { return k_formats; }
const quant_format_traits& traits_of(quant_format f) { return k_formats.at(static_cast<std::size_t>(f)); }

std::optional<quant_format> parse_quant_format(std::string_view name) {
    for (const auto& row : k_formats)
        if (row.name == name) return row.id;
    return std::nullopt;
}

std::optional<quant_format> format_for(std::string_view framework, std::int64_t bits, std::string_view bnb_quant_type) {
    if (framework == "fp16") return bits == 16 ? std::optional(quant_format::f16) : std::nullopt;
    if (framework == "bnb") {
        if (bits == 16) return quant_format::f16;  // bnb 16-bit = fp16 loaded the bitsandbytes way
        if (bits == 8) return quant_format::bnb_int8;
        if (bits == 4) return bnb_quant_type == "fp4" ? quant_format::bnb_fp4 : quant_format::bnb_nf4;
        return std::nullopt;
    }
    if (framework == "gptq") {
        for (const auto& row : k_formats)
            if (row.family == quant_family::gptq && row.bits == bits) return row.id;
        return std::nullopt;
    }
    return std::nullopt;
}

std::uint64_t packed_weight_bytes(quant_format f, std::int64_t rows, std::int64_t cols, std::int64_t block,
                                  bool double_quant) {
    const auto& t = traits_of(f);
    const auto n = static_cast<std::uint64_t>(rows) * static_cast<std::uint64_t>(cols);
    const std::uint64_t weight_bytes = ceil_div(n * static_cast<std::uint64_t>(t.bits), 8);
    switch (t.family) {
    case quant_family::none: return weight_bytes;
    case quant_family::gptq: {
        // rows = out_features (N), cols = in_features (K); groups run along K.
        const std::int64_t g = block == -1 ? cols : (block == 0 ? t.default_block : block);
        const std::uint64_t groups = ceil_div(static_cast<std::uint64_t>(cols), static_cast<std::uint64_t>(g));
        const std::uint64_t scales = groups * static_cast<std::uint64_t>(rows) * 2;
        const std::uint64_t zeros = ceil_div(groups * static_cast<std::uint64_t>(rows) * t.bits, 8);
        const std::uint64_t g_idx = static_cast<std::uint64_t>(cols) * 4;
        return weight_bytes + scales + zeros + g_idx;
    }
    case quant_family::bnb: {
        if (t.per_row_scale) return weight_bytes + static_cast<std::uint64_t>(rows) * 4;  // int8 + SCB
        const std::int64_t bs = block == 0 ? t.default_block : block;
        const std::uint64_t blocks = ceil_div(n, static_cast<std::uint64_t>(bs));
        if (!double_quant) return weight_bytes + blocks * 4;
        return weight_bytes + blocks + ceil_div(blocks, 256) * 4;  // uint8 codes + fp32 absmax2 per 256
    }
    }
    throw std::invalid_argument("packed_weight_bytes: bad format");
}

double effective_bits_per_weight(quant_format f, std::int64_t rows, std::int64_t cols, std::int64_t block,
                                 bool double_quant) {
    return 8.0 * static_cast<double>(packed_weight_bytes(f, rows, cols, block, double_quant)) /
           (static_cast<double>(rows) * static_cast<double>(cols));
}

}  // namespace qbench
