#pragma once
/// Hugging Face `config.json` for Llama-family models: written beside synthetic checkpoints, read beside real ones.
///
///   {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
///    "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
///    "vocab_size": 32001, "max_position_embeddings": 2048, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
///    "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "tie_word_embeddings": false,
///    "torch_dtype": "float16", "qbench_model": "vicuna-7b-v0"}
///
/// Absent optional fields take Hugging Face's LlamaConfig defaults (num_key_value_heads = num_attention_heads,
/// rope_theta 10000, ...). "qbench_model" is ours: the catalog name, used as the model name when reading.
#include "qbench/engine/model_config.hpp"

#include <filesystem>
#include <string>

namespace qbench {

/// The config.json text for `model`.
std::string hf_config_json(const model_config& model);

/// Writes config.json atomically.
void write_hf_config(const std::filesystem::path& file, const model_config& model);

/// Reads a config.json (or the config.json inside a directory). Malformed files and invalid values throw
/// input_error naming the key; a model that is not a Llama-family decoder (model_type, rope_scaling, tied
/// embeddings) throws unsupported_error. The name is "qbench_model" if present, else the directory's name;
/// hf_name is "_name_or_path" if present.
model_config read_hf_config(const std::filesystem::path& file);

}  // namespace qbench
