#pragma once
/// The shape of a Llama-family decoder, as a model catalog entry (configs/models/*.yaml) describes it.
#include <cstdint>
#include <string>

namespace qbench {

struct model_config {
    std::string name;                 ///< catalog name, e.g. "vicuna-7b-v0"
    std::string hf_name;              ///< the Hugging Face repository it mirrors (provenance only)
    std::int64_t hidden_size = 0;     ///< H
    std::int64_t intermediate_size = 0;  ///< I (SwiGLU width)
    std::int64_t num_layers = 0;      ///< L
    std::int64_t num_heads = 0;       ///< query heads
    std::int64_t num_kv_heads = 0;    ///< key/value heads (== num_heads for MHA; fewer for GQA)
    std::int64_t vocab_size = 0;      ///< V (32001 for Vicuna v0)
    std::int64_t max_position = 2048;
    double rms_norm_eps = 1e-6;
    double rope_theta = 10000.0;
    std::int32_t bos_token_id = 1;
    std::int32_t eos_token_id = 2;
    /// Image tokens MiniGPT-4 splices into the prompt for this LLM: 32 (Vicuna v0, Q-Former) or 64 (Llama-2).
    std::int64_t minigpt4_image_tokens = 32;
    /// MiniGPT-4's vision encoder resident beside this LLM (engine/vision_tower.hpp), empty = none: its fp16
    /// weights count against the VRAM budget as in the real deployment.
    std::string vision_tower;

    std::int64_t head_dim() const { return hidden_size / num_heads; }
    std::int64_t q_size() const { return num_heads * head_dim(); }
    std::int64_t kv_size() const { return num_kv_heads * head_dim(); }
    /// Parameters of all linear layers (q,k,v,o,gate,up,down of every layer), without embeddings and lm_head.
    std::int64_t linear_params() const {
        const std::int64_t per_layer = hidden_size * q_size() + 2 * hidden_size * kv_size() + q_size() * hidden_size +
                                       3 * hidden_size * intermediate_size;
        return per_layer * num_layers;
    }
    /// All parameters (embeddings, norms, linears, lm_head; untied).
    std::int64_t total_params() const {
        return linear_params() + num_layers * 2 * hidden_size + hidden_size + 2 * vocab_size * hidden_size;
    }
    /// KV-cache bytes per token position (fp16 K and V over all layers).
    std::int64_t kv_bytes_per_token() const { return 2 * num_layers * kv_size() * 2; }
};

/// The seven linear layers of a decoder layer, in Hugging Face naming.
enum class linear_kind : std::uint8_t { q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head, count_ };

/// "self_attn.q_proj", "mlp.down_proj", "lm_head"
const char* linear_module_path(linear_kind k);
/// "model.layers.3.self_attn.q_proj" (layer ignored for lm_head, which is just "lm_head").
std::string linear_prefix(std::int64_t layer, linear_kind k);
/// [out_features, in_features] of a linear layer of this model.
std::int64_t linear_out_features(const model_config& m, linear_kind k);
std::int64_t linear_in_features(const model_config& m, linear_kind k);

}  // namespace qbench
