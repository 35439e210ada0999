#pragma once
/// Weight formats as data: one row per format with the facts every part of qbench needs (bits, block or group size,
/// metadata per block), so no kernel or report hard-codes them. Derived sizes are functions of the row.
///
/// Storage of each family (details and bit diagrams in the family's *_format.hpp):
///   f16        16 bits per weight, no metadata.
///   gptq-intB  B bits per weight packed along K in int32 words; per group of G input rows: fp16 scale per output,
///              B-bit zero per output (AutoGPTQ layout); g_idx int32 per input row.
///   bnb-nf4/fp4  4 bits per weight (two per byte); per block of 64 (default) consecutive weights an fp32 absmax, or
///              with double quantization a uint8 code per block plus an fp32 absmax2 per 256 blocks.
///   bnb-int8   8 bits per weight; per output row an fp32 scale (SCB).
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace qbench {

enum class quant_format : std::uint8_t {
    f16,
    gptq_int2, gptq_int3, gptq_int4, gptq_int8,
    bnb_nf4, bnb_fp4, bnb_int8,
    count_
};

enum class quant_family : std::uint8_t { none, gptq, bnb };

struct quant_format_traits {
    quant_format id;
    std::string_view name;          ///< "gptq-int4"
    quant_family family;
    std::string_view framework;     ///< the matrix framework that uses it: "fp16", "gptq", "bnb"
    int bits;                       ///< bits per stored weight
    int default_block;              ///< default group (gptq) or block (bnb) size; 0 = none
    int scale_bits_per_block;       ///< metadata bits per block per output (gptq: fp16 scale; bnb: fp32 absmax)
    bool zero_per_block;            ///< gptq: a `bits`-wide zero point per group per output
    bool per_row_scale;             ///< int8: one fp32 scale per output row
    std::string_view description;
};

std::span<const quant_format_traits> quant_format_table();
const quant_format_traits& traits_of(quant_format f);
std::optional<quant_format> parse_quant_format(std::string_view name);
/// The format a (framework, bits, bnb quant_type) triple uses; nullopt when that framework has no such format.
std::optional<quant_format> format_for(std::string_view framework, std::int64_t bits, std::string_view bnb_quant_type);

/// Bytes a [rows, cols] weight takes in this format with block/group size `block` (0 = the default; -1 = one group
/// per row for gptq), including scales, zeros and g_idx; with `double_quant` for bnb 4-bit.
std::uint64_t packed_weight_bytes(quant_format f, std::int64_t rows, std::int64_t cols, std::int64_t block = 0,
                                  bool double_quant = false);
/// Effective bits per weight of that layout.
double effective_bits_per_weight(quant_format f, std::int64_t rows, std::int64_t cols, std::int64_t block = 0,
                                 bool double_quant = false);

}  // namespace qbench
