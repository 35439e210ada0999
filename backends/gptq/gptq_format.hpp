#pragma once
/// The AutoGPTQ checkpoint format ("gptq", v1) as qbench reads and writes it.
///
/// Per linear layer with K = in_features, N = out_features, G = ceil(K / group) groups, tensors named
/// `<prefix>.qweight`, `.qzeros`, `.scales`, `.g_idx`:
///
///   qweight  int32 [ceil(K/32) * B, N]   packs along K (input rows), LSB first
///   qzeros   int32 [G, ceil(N/32) * B]   packs along N (output columns), stored as z - 1
///   scales   fp16  [G, N]
///   g_idx    int32 [K]                   group of each input row
///
/// Packing is one rule for every width B in {2, 3, 4, 8}: each run of 32 consecutive values (rows of qweight, or
/// columns of qzeros) is a little-endian stream of 32*B bits held in B consecutive int32 words; value v of the run
/// sits at stream bits [B*v, B*v + B). For B = 2, 4, 8 this is the familiar "32/B values per word":
///
///   4-bit word r of a column:   bit 31                                     0
///                               [ v7 ][ v6 ][ v5 ][ v4 ][ v3 ][ v2 ][ v1 ][ v0 ]   v_j = row 8r + j
///   2-bit: 16 values per word, v_j at bits 2j.   8-bit: 4 values per word, v_j at bits 8j.
///
/// For B = 3 the 32 values span three words and two values straddle word boundaries (AutoGPTQ
/// qlinear_cuda_old.py `pack`):
///
///   word0: v0..v9 at bits 3j, v10 bits 0-1 at bits 30-31
///   word1: v10 bit 2 at bit 0, v11..v20 at bits 3(j-11)+1, v21 bit 0 at bit 31
///   word2: v21 bits 1-2 at bits 0-1, v22..v31 at bits 3(j-22)+2
///
/// Zero-point minus one: AutoGPTQ stores z - 1 and every reader adds 1 back (exllama `(qz + 1) & 0x0f`, exllamav2
/// `zeros[0] + 1`, the torch path `zeros + 1`). Symmetric 4-bit therefore stores nibbles 7 (0x77777777). An
/// asymmetric zero of 0 stores -1; we store it masked to B bits (0xF for 4-bit) and read `(stored + 1) & maxq`, as
/// exllama does. (AutoGPTQ's numpy pack would also smear the sign bits of -1 into the higher fields of the same
/// word; we do not reproduce that bug, and the torch reader's missing mask would read 16 where we read 0.)
///
/// Dequantization: W[n, k] = scales[g, n] * (q[k, n] - z[g, n]) with g = g_idx[k].
///
/// Integer weights are derived from the fake-quantized FP16 weight the algorithm produced, as AutoGPTQ's `pack`
/// does: intweight[k, n] = round((W[n, k] + z * s) / fp16(s)) with z * s in fp32 and s the fp32 scale. AutoGPTQ
/// does not clamp; with fp16 scales the result is the algorithm's code exactly except for subnormal scales, where a
/// value outside [0, maxq] would corrupt its neighbours in the word, so we clamp.
///
/// Shapes that are not multiples of 32: AutoGPTQ requires K % 32 == 0 and N % 32 == 0. qbench pads the packed
/// tensors to the next multiple of 32 with code 0 (qweight rows, qzeros columns); scales and g_idx keep their
/// exact sizes. A file with K, N multiples of 32 is byte-identical to AutoGPTQ's.
///
/// quantize_config.json (AutoGPTQ BaseQuantizeConfig.to_dict): bits, group_size, damp_percent, desc_act,
/// static_groups, sym, true_sequential, model_name_or_path, model_file_base_name, quant_method "gptq",
/// checkpoint_format "gptq". The weights file is gptq_model-{bits}bit-{group_size}g.safetensors with metadata
/// `format: pt`.
#include <cstdint>
#include <string>

namespace qbench::gptq {

/// Values per packed run: 32 values occupy exactly `bits` int32 words for every width.
inline constexpr std::int64_t k_pack_run = 32;

inline constexpr bool is_supported_bits(std::int64_t bits) { return bits == 2 || bits == 3 || bits == 4 || bits == 8; }
inline constexpr std::int64_t max_code(std::int64_t bits) { return (std::int64_t{1} << bits) - 1; }
inline constexpr std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }
inline constexpr std::int64_t round_up(std::int64_t a, std::int64_t b) { return ceil_div(a, b) * b; }

/// Effective group size: -1 means one group spanning all K rows.
inline constexpr std::int64_t effective_group(std::int64_t group_size, std::int64_t in_features) {
    return group_size <= 0 ? in_features : group_size;
}
inline constexpr std::int64_t num_groups(std::int64_t group_size, std::int64_t in_features) {
    return ceil_div(in_features, effective_group(group_size, in_features));
}
/// qweight rows: ceil(K/32) runs of `bits` words.
inline constexpr std::int64_t qweight_rows(std::int64_t in_features, std::int64_t bits) {
    return ceil_div(in_features, k_pack_run) * bits;
}
/// qzeros columns: ceil(N/32) runs of `bits` words.
inline constexpr std::int64_t qzeros_cols(std::int64_t out_features, std::int64_t bits) {
    return ceil_div(out_features, k_pack_run) * bits;
}

/// Tensor names of one quantized linear: prefix + suffix.
inline std::string qweight_name(const std::string& prefix) { return prefix + ".qweight"; }
inline std::string qzeros_name(const std::string& prefix) { return prefix + ".qzeros"; }
inline std::string scales_name(const std::string& prefix) { return prefix + ".scales"; }
inline std::string g_idx_name(const std::string& prefix) { return prefix + ".g_idx"; }

/// AutoGPTQ's default weights file name.
inline std::string weights_file_name(std::int64_t bits, std::int64_t group_size) {
    return "gptq_model-" + std::to_string(bits) + "bit-" + std::to_string(group_size) + "g.safetensors";
}
inline constexpr const char* k_quantize_config_file = "quantize_config.json";

}  // namespace qbench::gptq
