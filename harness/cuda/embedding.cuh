#pragma once
/// Embedding lookup: the prefill input (text tokens with MiniGPT-4's image embeddings spliced in) and the decode
/// input (one token per sequence).
#include "cuda/launch.cuh"

#include <cuda_fp16.h>

#include <cstdint>

namespace qbench {

/// out[r, :] for r < rows = embedding of prompt position r: table[tokens[r]] before `image_offset`, then
/// `image_tokens` synthetic image rows (element h of image row i is fp16(normal01(image_key, i * hidden + h))),
/// then table[tokens[r - image_tokens]]. `tokens` (device) holds rows - image_tokens ids.
void launch_embed_prompt(const __half* table, std::int64_t vocab, std::int64_t hidden, const std::int32_t* tokens,
                         std::int64_t rows, std::int64_t image_offset, std::int64_t image_tokens,
                         std::uint64_t image_key, __half* out, const launch_options& o);

/// out[b, :] = table[tokens[b], :] for b < rows (tokens on the device, e.g. the previous step's choices).
void launch_embed_tokens(const __half* table, std::int64_t vocab, std::int64_t hidden, const std::int32_t* tokens,
                         std::int64_t rows, __half* out, const launch_options& o);

}  // namespace qbench
