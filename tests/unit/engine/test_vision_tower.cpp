// MiniGPT-4's vision tower sizes against the figures derived from the shapes in models-and-instances.md section 2
// (ViT-g 39 blocks ~985.9 M, Q-Former as used ~105.2 M, llama_proj 3.15 M / 3.94 M / 23.07 M).
#include "qbench/engine/vision_tower.hpp"

#include <catch2/catch.hpp>

using namespace qbench;

TEST_CASE("vision towers: MiniGPT-4 parameter counts", "[engine][vision]") {
    const vision_tower_spec* v0 = find_vision_tower("minigpt4-vicuna0");
    REQUIRE(v0 != nullptr);
    const vision_tower_params p7 = count_vision_tower_params(*v0, 4096);
    // Patch embedding 3*14*14*1408 + 1408, cls, 257 positions, 39 blocks of 25,248,768, ln_vision.
    CHECK(p7.vit == 829'312 + 1'408 + 361'856 + 39LL * 25'248'768 + 2'816);
    // 12 layers of self-attention + query FFN, 6 cross-attention layers, 32 query tokens, embedding LayerNorm.
    CHECK(p7.qformer == 12LL * 7'087'872 + 6LL * 3'346'944 + 32 * 768 + 1'536);
    CHECK(p7.projection == 768LL * 4096 + 4096);
    CHECK(count_vision_tower_params(*v0, 5120).projection == 768LL * 5120 + 5120);
    CHECK(vision_tower_bytes(*v0, 5120) == 2 * static_cast<std::uint64_t>(p7.vit + p7.qformer + 768LL * 5120 + 5120));

    const vision_tower_spec* l2 = find_vision_tower("minigpt4-llama2");
    REQUIRE(l2 != nullptr);
    const vision_tower_params pl = count_vision_tower_params(*l2, 4096);
    CHECK(pl.qformer == 0);
    CHECK(pl.projection == 5632LL * 4096 + 4096);  // 23.07 M
    CHECK(pl.vit == p7.vit);
}

TEST_CASE("vision towers: unknown names are absent", "[engine][vision]") {
    CHECK(find_vision_tower("") == nullptr);
    CHECK(find_vision_tower("minigpt4") == nullptr);
    CHECK(vision_tower_names().size() == 2);
}
