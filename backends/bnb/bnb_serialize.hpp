#pragma once
/// bitsandbytes' safetensors serialization of quantized linears (the state dict Linear4bit / Linear8bitLt save and
/// transformers loads). For a linear with prefix P ("model.layers.0.mlp.down_proj"):
///
///   4-bit  P.weight                                  uint8 [(N*K+1)/2, 1]   packed nibbles (bnb_format.hpp)
///          P.weight.absmax                           fp32 [blocks], or uint8 [blocks] when nested
///          P.weight.quant_map                        fp32 [16]
///          P.weight.nested_absmax                    fp32 [ceil(blocks/256)]   (nested only)
///          P.weight.nested_quant_map                 fp32 [256]                (nested only)
///          P.weight.quant_state.bitsandbytes__nf4    uint8 [len]  UTF-8 JSON: quant_type, blocksize, dtype, shape,
///            (or __fp4)                                             and nested_blocksize, nested_dtype, nested_offset
///   int8   P.weight                                  int8 [N, K]
///          P.SCB                                     fp32 [N]
///          P.weight_format                           uint8 [] = 0 ("row"; the only layout current bnb loads)
#include "backends/bnb/bnb_format.hpp"
#include "qbench/common/tensor.hpp"

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {
class tensor_source;
}

namespace qbench::bnb {

/// One entry of a state dict.
struct named_tensor {
    std::string name;
    host_tensor tensor;
};

/// The quant_state JSON exactly as bitsandbytes writes it (Python json.dumps spacing and key order).
std::string quant_state_json(const quant_4bit_weight& w, std::string_view dtype = "float16");

/// State-dict entries of a 4-bit linear (the checkpoint's original dtype name goes into the JSON).
std::vector<named_tensor> state_dict_4bit(const std::string& prefix, const quant_4bit_weight& w,
                                          std::string_view dtype = "float16");
/// State-dict entries of an LLM.int8() linear.
std::vector<named_tensor> state_dict_int8(const std::string& prefix, const int8_weight& w);

/// Writes state-dict entries as one safetensors file (metadata {"format": "pt"}, as torch's save_file writes it),
/// through qbench's safetensors writer; throws error when a name repeats.
void write_state_dict(const std::filesystem::path& path, const std::vector<named_tensor>& entries);

/// Whether the source holds a bitsandbytes 4-bit (a P.weight.quant_state.bitsandbytes__* key) or int8 (P.SCB)
/// serialization of the linear at `prefix`.
bool has_prequantized_4bit(const tensor_source& source, const std::string& prefix);
bool has_prequantized_int8(const tensor_source& source, const std::string& prefix);

/// Reads a 4-bit linear; throws input_error naming the file and tensor on anything malformed.
quant_4bit_weight read_4bit(const tensor_source& source, const std::string& prefix);
/// Reads an int8 linear; throws input_error naming the file and tensor on anything malformed.
int8_weight read_int8(const tensor_source& source, const std::string& prefix);

}  // namespace qbench::bnb
