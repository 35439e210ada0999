#pragma once
/// bitsandbytes weight formats: NF4 / FP4 blockwise 4-bit (optionally with double-quantized absmax) and LLM.int8()
/// row-wise int8. Code books, quantization decision thresholds and the host-side containers, as data.
///
/// 4-bit storage of a [N, K] weight (N = out_features, K = in_features), flattened row-major, n = N*K elements:
///
///   flat element:  e0   e1   e2   e3   e4   e5  ...  e63 | e64 ...            (block b = elements [b*bs, (b+1)*bs))
///   packed byte j: [ code(e_2j) : 7..4 | code(e_2j+1) : 3..0 ]
///
///       byte 0          byte 1          byte 2
///     7654 3210       7654 3210       7654 3210
///     [ e0 | e1 ]     [ e2 | e3 ]     [ e4 | e5 ]  ...      (n odd: the last low nibble is padding = code(0))
///
///   absmax[b] (fp32) = max |x| over block b; value = code_book[nibble] * absmax[block(element)].
///   The even element sits in the HIGH nibble because bitsandbytes packs `q(x[2j]) << 4 | q(x[2j+1])`: reading a byte
///   as a pair (hi, lo) yields elements in memory order, which a kernel exploits by decoding a byte straight into a
///   half2 (x = hi, y = lo) that lines up with the half2 of activations x[2j], x[2j+1].
///   Blocks run over the FLATTENED tensor, so when K is not a multiple of the block size a block straddles two rows
///   (bitsandbytes' fused GEMV then refuses and falls back to dequantize + GEMM; so do we).
///
/// Double quantization ("compress_statistics"): offset = mean(absmax); the centred absmax values are quantized
/// 8-bit blockwise (nested block 256) with the signed dynamic map:
///
///   absmax_codes[b] (uint8) , nested_absmax[b / 256] (fp32) , nested_offset (fp32)
///   absmax[b] = fp32( fp32(nested_code[absmax_codes[b]] * nested_absmax[b / 256]) + nested_offset )
///
/// int8 (LLM.int8()): CB int8 [N, K] row-major, SCB fp32 [N] = max |W[n, :]|; W[n, k] ~= CB[n, k] * SCB[n] / 127.
///
/// Sources: bitsandbytes csrc/kernels.cu (dQuantizeNF4, dQuantizeFP4, dQuantize<0>, the dequantization LUTs),
/// functional.py (quantize_4bit, create_dynamic_map, QuantState.as_dict); see shared/reference A1-A6.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qbench::bnb {

/// The 4-bit code book family.
enum class quant_type : std::uint8_t { nf4, fp4 };

/// "nf4" / "fp4".
std::string_view quant_type_name(quant_type t);

/// NF4 code book (bitsandbytes nf4_dequantization_lut): 8 negative incl. -1, one 0, 7 positive incl. 1.
inline constexpr std::array<float, 16> k_nf4_code = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

/// FP4 code book (bitsandbytes fp4_dequantization_lut with the sign bit 0b1000), raw values / 12:
/// 0b0000..0b0111 = {0, 0.0625, 8, 12, 4, 6, 2, 3} / 12; 0b1xxx = the negatives.
inline constexpr std::array<float, 16> k_fp4_code = {
    0.0f, 0.0625f / 12.0f, 8.0f / 12.0f, 1.0f, 4.0f / 12.0f, 6.0f / 12.0f, 2.0f / 12.0f, 3.0f / 12.0f,
    -0.0f, -0.0625f / 12.0f, -8.0f / 12.0f, -1.0f, -4.0f / 12.0f, -6.0f / 12.0f, -2.0f / 12.0f, -3.0f / 12.0f};

/// dQuantizeNF4's decision thresholds in ascending order: the midpoints of adjacent NF4 codes, as the float literals
/// of bitsandbytes' tree. code(x) = number of thresholds t with x > t (strict, so a tie goes to the lower code;
/// NaN compares false everywhere and gives code 0, as the tree does).
inline constexpr std::array<float, 15> k_nf4_thresholds = {
    -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
    0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f};

/// dQuantizeFP4's thresholds on |x| in ascending order (bitsandbytes' literals, not exact midpoints).
inline constexpr std::array<float, 7> k_fp4_thresholds = {0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f,
                                                           0.4166667f,  0.583333f,  0.8333333f};
/// FP4 magnitude rank (0 = smallest) -> 3-bit code: 0, 0.0625, 2, 3, 4, 6, 8, 12.
inline constexpr std::array<std::uint8_t, 8> k_fp4_rank_to_code = {0b000, 0b001, 0b110, 0b111,
                                                                   0b100, 0b101, 0b010, 0b011};

/// The code book of a quant type.
constexpr const std::array<float, 16>& code_book(quant_type t) { return t == quant_type::nf4 ? k_nf4_code : k_fp4_code; }

inline constexpr std::int64_t k_default_blocksize = 64;
inline constexpr std::int64_t k_min_blocksize = 32;
inline constexpr std::int64_t k_max_blocksize = 4096;
/// Nested (double-quantization) block size; bitsandbytes' fused kernels support only 256.
inline constexpr std::int64_t k_nested_blocksize = 256;
/// LLM.int8() dequantization constant 1/127^2 (bitsandbytes MM_DEQUANT_CONST).
inline constexpr float k_int8_dequant = 1.0f / (127.0f * 127.0f);

/// A 4-bit block size must be a power of two in [32, 4096].
constexpr bool valid_blocksize(std::int64_t bs) {
    return bs >= k_min_blocksize && bs <= k_max_blocksize && (bs & (bs - 1)) == 0;
}
/// log2 of a power of two.
constexpr int log2_exact(std::int64_t v) {
    int s = 0;
    while ((std::int64_t{1} << s) < v) ++s;
    return s;
}

/// The signed 8-bit dynamic map (create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)), 256 entries
/// sorted ascending: 127 negatives, 0 at index 127, 127 positives, 1.0 at index 255. Computed in float32 the way
/// torch does (scalar linspace formula); torch's vectorized linspace may differ in the last ulp, which is harmless
/// because checkpoints carry the map they were quantized with (nested_quant_map).
const std::array<float, 256>& dynamic_map_signed();

/// Options of a 4-bit quantization.
struct quant_4bit_params {
    quant_type type = quant_type::nf4;
    std::int64_t blocksize = k_default_blocksize;
    bool double_quant = false;
};

/// Double-quantized absmax (the nested QuantState).
struct nested_absmax {
    std::vector<std::uint8_t> codes;        ///< one per 4-bit block
    std::vector<float> absmax;              ///< one per nested block
    std::array<float, 256> code{};          ///< the nested quant map (dynamic map)
    std::int64_t blocksize = k_nested_blocksize;
    float offset = 0.0f;                    ///< mean of the original absmax
};

/// A 4-bit weight in bitsandbytes' storage (what Params4bit + QuantState hold).
struct quant_4bit_weight {
    quant_type type = quant_type::nf4;
    std::int64_t rows = 0;                  ///< N (out_features)
    std::int64_t cols = 0;                  ///< K (in_features)
    std::int64_t blocksize = k_default_blocksize;
    std::array<float, 16> code{};           ///< quant_map (normally the exact code book of `type`)
    std::vector<std::uint8_t> packed;       ///< (N*K + 1) / 2 bytes, even element in the high nibble
    std::vector<float> absmax;              ///< one per block; empty when nested
    bool nested = false;
    nested_absmax nested_state;             ///< valid when nested

    std::int64_t numel() const { return rows * cols; }
    std::int64_t blocks() const { return (numel() + blocksize - 1) / blocksize; }
    /// The nibble of flat element i.
    std::uint8_t nibble(std::int64_t i) const {
        const std::uint8_t b = packed[static_cast<std::size_t>(i >> 1)];
        return (i & 1) ? static_cast<std::uint8_t>(b & 0x0f) : static_cast<std::uint8_t>(b >> 4);
    }
    /// Bytes stored (packed + absmax or codes + nested absmax; code books excluded).
    std::uint64_t storage_bytes() const;
};

/// An LLM.int8() weight (Int8Params: CB + SCB).
struct int8_weight {
    std::int64_t rows = 0;                  ///< N
    std::int64_t cols = 0;                  ///< K
    std::vector<std::int8_t> cb;            ///< [N, K] row-major
    std::vector<float> scb;                 ///< [N] row absmax

    std::uint64_t storage_bytes() const { return cb.size() + scb.size() * sizeof(float); }
};

/// Format name for records: "bnb-nf4-bs64", "bnb-fp4-bs128-dq", "bnb-int8-t6".
std::string format_name_4bit(quant_type t, std::int64_t blocksize, bool double_quant);
std::string format_name_int8(double threshold);

}  // namespace qbench::bnb
