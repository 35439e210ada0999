#pragma once
/// MiniGPT-4's image side, as data: the frozen vision encoder that sits on the GPU beside the LLM.
///
///   image 224x224 --EVA-CLIP ViT-g/14 (39 blocks, width 1408)--> 257 x 1408 --ln_vision-->
///     Vicuna v0:  Q-Former (BERT-base, 32 queries, cross-attention every 2nd layer) --> 32 x 768 --llama_proj--> 32 x H
///     Llama-2:    4 neighbouring patch tokens concatenated (5632 wide)               --llama_proj--> 64 x H
///
/// qbench does not run this encoder (prompts carry synthetic image embeddings), but MiniGPT-4 keeps its weights
/// resident in fp16 (vit_precision "fp16"; HEAD no longer moves the ViT to the CPU), and on a 16 GB T4 those ~2 GB
/// decide whether a model fits. So a cell reserves exactly these bytes on the device before the LLM loads, in
/// MiniGPT-4's order (init_vision_encoder, init_Qformer, then init_llm). Shapes: models-and-instances.md section 2.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {

struct vision_tower_spec {
    std::string_view name;         ///< catalog key, e.g. "minigpt4-vicuna0"
    std::string_view description;
    // EVA-CLIP ViT (pre-norm blocks, fused qkv without bias plus separate q and v biases, no final norm).
    std::int64_t image_size = 224;
    std::int64_t patch_size = 14;
    std::int64_t vit_width = 1408;
    std::int64_t vit_depth = 39;     ///< EVA ViT-g has 40; BLIP-2 drops the last
    std::int64_t vit_mlp = 6144;     ///< int(1408 * 4.3637)
    // Q-Former (BERT-base without word/position embeddings and text FFN); 0 layers = none.
    std::int64_t qformer_layers = 0;
    std::int64_t qformer_hidden = 768;
    std::int64_t qformer_ffn = 3072;
    std::int64_t qformer_cross_attention_freq = 2;
    std::int64_t query_tokens = 32;
    /// Input width of llama_proj (Linear(proj_in, H) with bias): 768 after a Q-Former, 4 x 1408 for Llama-2.
    std::int64_t proj_in = 768;
};

/// Parameter counts of the parts (llama_proj depends on the LLM's hidden size).
struct vision_tower_params {
    std::int64_t vit = 0;       ///< patch embedding, cls, positions, blocks, ln_vision
    std::int64_t qformer = 0;   ///< layers, query tokens, embedding LayerNorm
    std::int64_t projection = 0;
    std::int64_t total() const { return vit + qformer + projection; }
};

/// nullptr when unknown.
const vision_tower_spec* find_vision_tower(std::string_view name);
std::vector<std::string> vision_tower_names();
vision_tower_params count_vision_tower_params(const vision_tower_spec& spec, std::int64_t llm_hidden);
/// Resident fp16 bytes of the tower in front of an LLM of this hidden size.
std::uint64_t vision_tower_bytes(const vision_tower_spec& spec, std::int64_t llm_hidden);

}  // namespace qbench
