#pragma once
/// CPU reference (the oracle) of the bitsandbytes formats: quantize, dequantize and matmul of NF4 / FP4 (with and
/// without double quantization) and LLM.int8(). Plain loops, double accumulation; every GPU kernel is tested against
/// these. Rounding follows bitsandbytes where it is defined: x * (1/absmax) then the decision tree; dequantized
/// weights are fp16(code * absmax) computed in fp32 (kDequantizeBlockwise with T = half).
#include "backends/bnb/bnb_format.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace qbench::bnb {

/// dQuantizeNF4 on a value already scaled into [-1, 1].
std::uint8_t quantize_nf4_value(float x);
/// dQuantizeFP4 on a value already scaled into [-1, 1].
std::uint8_t quantize_fp4_value(float x);
inline std::uint8_t quantize_4bit_value(quant_type t, float x) {
    return t == quant_type::nf4 ? quantize_nf4_value(x) : quantize_fp4_value(x);
}
/// dQuantize<0>: bitsandbytes' binary search over a sorted 256-entry code (the 8-bit blockwise quantizer).
std::uint8_t quantize_dynamic_value(const std::array<float, 256>& code, float x);

/// Blockwise absmax of n flat values: one fp32 per block of `blocksize` (the last block may be partial).
std::vector<float> blockwise_absmax_ref(std::span<const float> values, std::int64_t blocksize);

/// Blockwise 4-bit quantization of a [rows, cols] weight given as floats (fp16 values in practice).
quant_4bit_weight quantize_4bit_ref(std::span<const float> values, std::int64_t rows, std::int64_t cols,
                                    const quant_4bit_params& params);

/// Double quantization of absmax: offset = mean (computed in double, rounded to fp32) unless given, then 8-bit
/// blockwise (nested_blocksize) quantization of absmax - offset with the signed dynamic map.
nested_absmax double_quantize_ref(std::span<const float> absmax, std::int64_t nested_blocksize = k_nested_blocksize,
                                  std::optional<float> offset = std::nullopt);
/// Mean of absmax as the reference computes it: double sum in index order, divided, rounded to fp32.
float absmax_mean_ref(std::span<const float> absmax);

/// The effective absmax of block b (plain, or dequantized from the nested state with fp32 multiply then add).
float block_absmax(const quant_4bit_weight& w, std::int64_t block);
/// All blocks' effective absmax.
std::vector<float> effective_absmax(const quant_4bit_weight& w);

/// Dequantizes to fp16 bits: out[i] = fp16(code[nibble(i)] * absmax[block(i)]) (n = rows * cols values).
void dequantize_4bit_ref(const quant_4bit_weight& w, std::span<std::uint16_t> out_f16);
/// The same as floats (each exactly an fp16 value).
std::vector<float> dequantize_4bit_ref(const quant_4bit_weight& w);

/// y[m, N] = fp16( x[m, K] . W_deq^T ), W_deq the fp16 dequantized weight; double accumulation.
void matmul_4bit_ref(const quant_4bit_weight& w, const float* x, std::int64_t m, float* y);

/// LLM.int8() weight quantization (int8_vectorwise_quant with threshold 0): SCB = max |row|,
/// CB = round_half_even(w * (127 / SCB)); an all-zero row gives SCB 0 and CB 0.
int8_weight quantize_int8_ref(std::span<const float> values, std::int64_t rows, std::int64_t cols);

/// Activations quantized the LLM.int8() way.
struct int8_activations {
    std::vector<std::int8_t> q;             ///< [m, K], outlier columns zeroed
    std::vector<float> row_stats;           ///< [m] absmax over |x| < threshold (all values when threshold is 0)
    std::vector<std::int64_t> outlier_cols; ///< ascending: columns where any |x| >= threshold (threshold > 0)
};
int8_activations quantize_int8_activations_ref(const float* x, std::int64_t m, std::int64_t k, float threshold);

/// LLM.int8() forward: y = fp16( int32(CA . CB^T) * row_stats * SCB / 127^2
///                               + sum over outlier columns of x[:, c] * (CB[:, c] * SCB / 127) ).
void matmul_int8_ref(const int8_weight& w, const float* x, std::int64_t m, float threshold, float* y);

/// Dequantized int8 weight as floats: CB * SCB / 127 (computed in fp32 as (CB * SCB) / 127).
float int8_weight_value(const int8_weight& w, std::int64_t row, std::int64_t col);

}  // namespace qbench::bnb
