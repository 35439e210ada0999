#include "qbench/engine/vision_tower.hpp"

#include <array>

namespace qbench {

namespace {

constexpr std::array<vision_tower_spec, 2> k_towers = {{
    {.name = "minigpt4-vicuna0",
     .description = "MiniGPT-4 (Vicuna v0): EVA-CLIP ViT-g/14, Q-Former with 32 queries, llama_proj 768 -> H",
     .qformer_layers = 12,
     .proj_in = 768},
    {.name = "minigpt4-llama2",
     .description = "MiniGPT-4 (Llama-2): EVA-CLIP ViT-g/14, 4 patch tokens concatenated, llama_proj 5632 -> H",
     .qformer_layers = 0,
     .proj_in = 4 * 1408},
}};

std::int64_t linear(std::int64_t in, std::int64_t out) { return in * out + out; }  // weight + bias
std::int64_t layer_norm(std::int64_t width) { return 2 * width; }

}  // namespace

const vision_tower_spec* find_vision_tower(std::string_view name) {
    for (const auto& t : k_towers)
        if (t.name == name) return &t;
    return nullptr;
}

std::vector<std::string> vision_tower_names() {
    std::vector<std::string> names;
    for (const auto& t : k_towers) names.emplace_back(t.name);
    return names;
}

vision_tower_params count_vision_tower_params(const vision_tower_spec& s, std::int64_t llm_hidden) {
    vision_tower_params p;
    const std::int64_t w = s.vit_width;
    const std::int64_t patches = (s.image_size / s.patch_size) * (s.image_size / s.patch_size);
    const std::int64_t block = layer_norm(w)                 // norm1
                               + 3 * w * w + 2 * w           // fused qkv (no bias) + q_bias, v_bias
                               + linear(w, w)                // proj
                               + layer_norm(w)               // norm2
                               + linear(w, s.vit_mlp) + linear(s.vit_mlp, w);
    p.vit = linear(3 * s.patch_size * s.patch_size, w)      // patch embedding (Conv2d k = s = patch)
            + w                                             // cls token
            + (patches + 1) * w                             // absolute positions
            + s.vit_depth * block + layer_norm(w);          // blocks + ln_vision
    if (s.qformer_layers > 0) {
        const std::int64_t h = s.qformer_hidden;
        const std::int64_t self_attention = 3 * linear(h, h) + linear(h, h) + layer_norm(h);
        const std::int64_t cross_attention = linear(h, h) + 2 * linear(w, h) + linear(h, h) + layer_norm(h);
        const std::int64_t query_ffn = linear(h, s.qformer_ffn) + linear(s.qformer_ffn, h) + layer_norm(h);
        const std::int64_t cross_layers = (s.qformer_layers + s.qformer_cross_attention_freq - 1) / s.qformer_cross_attention_freq;
        p.qformer = s.qformer_layers * (self_attention + query_ffn) + cross_layers * cross_attention +
                    s.query_tokens * h + layer_norm(h);
    }
    p.projection = linear(s.proj_in, llm_hidden);
    return p;
}

std::uint64_t vision_tower_bytes(const vision_tower_spec& spec, std::int64_t llm_hidden) {
    return static_cast<std::uint64_t>(count_vision_tower_params(spec, llm_hidden).total()) * 2;
}

}  // namespace qbench
