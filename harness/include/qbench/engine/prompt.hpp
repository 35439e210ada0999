#pragma once
/// Synthetic MiniGPT-4 prompts: no tokenizer and no vision tower, only the shape of the real thing.
///
/// MiniGPT-4 (Vicuna v0) feeds the LLM  "<s><system text>###Human: <Img>" [image embeddings] "</Img> Describe this
/// image###Assistant: ": about 3/4 of the ~55 text tokens come before the image. make_prompt keeps that layout:
///
///   tokens:  BOS t1 t2 ... t(k-1) | image (32 or 64 rows) | tk ... t(n-1)        k = image_offset = max(1, 3n/4)
///
/// Text ids are pseudo-random in [3, V) (0..2 are unk/bos/eos in Llama vocabularies), a pure function of the seed.
#include "qbench/config/cell.hpp"
#include "qbench/engine/generation.hpp"
#include "qbench/engine/model_config.hpp"

#include <cstdint>
#include <vector>

namespace qbench {

/// options.prompt_tokens text tokens (BOS included, at least 1), options.image_tokens image rows (-1: the model's
/// minigpt4_image_tokens), token i >= 1 = 3 + random_bits(stream_key(seed, hash_string("prompt")), i) % (V - 3),
/// image_seed = seed.
prompt make_prompt(const model_config& model, const generation_options& options, std::uint64_t seed);

/// The prompt's image embeddings [image_tokens * hidden], per engine/generation.hpp:
/// row r, element h = fp16(normal01(stream_key(image_seed, hash_string("image")), r * hidden + h)).
std::vector<float> image_embeddings(const prompt& p, std::int64_t hidden);

}  // namespace qbench
