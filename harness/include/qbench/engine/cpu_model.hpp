#pragma once
/// A Llama-family decoder loaded for the CPU reference engine.
///
/// Every linear layer (lm_head included) comes from the cell's backend, in that backend's weight format; the token
/// embeddings and the RMSNorm weights are read directly and held as fp16 values in floats. Tensor names are the
/// Hugging Face ones (models-and-instances.md §3):
///
///   model.embed_tokens.weight                      [V, H]
///   model.layers.{i}.input_layernorm.weight        [H]
///   model.layers.{i}.self_attn.{q,k,v,o}_proj.*    (backend's format)
///   model.layers.{i}.post_attention_layernorm.weight [H]
///   model.layers.{i}.mlp.{gate,up,down}_proj.*     (backend's format)
///   model.norm.weight                              [H]
///   lm_head.*                                      (fp16 in every backend)
#include "qbench/backend/cpu_linear.hpp"
#include "qbench/engine/model_config.hpp"

#include <cstdint>
#include <memory>
#include <vector>

namespace qbench {

class backend;
class tensor_source;
struct cell_spec;

struct cpu_layer {
    std::vector<float> input_norm, post_norm;  ///< [H] each
    std::unique_ptr<cpu_linear> q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;

    /// The layer's linear of a kind (q_proj .. down_proj).
    const cpu_linear& linear(linear_kind kind) const;
};

struct cpu_model {
    model_config config;
    std::vector<float> embed;  ///< [V * H] fp16 values as float
    std::vector<cpu_layer> layers;
    std::vector<float> final_norm;  ///< [H]
    std::unique_ptr<cpu_linear> lm_head;

    /// Bytes of every weight as stored: linears in their backend's format, embeddings and norms as fp16.
    std::uint64_t weight_bytes() const;
};

/// Checks that the shape can run on the engine (H divisible by heads, even head_dim, heads a multiple of kv_heads,
/// positive sizes); throws input_error naming the model otherwise.
void validate_model_config(const model_config& config);

/// Loads the model: linears through backend.load_cpu_linear, embeddings and norms directly (any floating dtype,
/// rounded to fp16 as loading with torch_dtype=float16 does). A missing or mis-shaped tensor is an input_error
/// naming the checkpoint and the tensor.
cpu_model load_cpu_model(const model_config& config, const tensor_source& source, const backend& backend,
                         const cell_spec& cell);

}  // namespace qbench
