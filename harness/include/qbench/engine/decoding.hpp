#pragma once
/// The decode rules of engine/generation.hpp ("Decoding") as plain functions over one step's logits: the oracle
/// the CUDA executor's sampling and beam kernels are checked against. All arithmetic is in double.
#include "qbench/engine/generation.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace qbench {

/// Index of the largest logit; ties go to the lowest id (NaN never wins).
std::int32_t argmax_token(std::span<const float> logits);

/// log_softmax in double: lp[v] = (l[v] - max) - log(sum_u exp(l[u] - max)).
std::vector<double> log_softmax(std::span<const float> logits);

/// One sampled token: temperature, top-k, top-p, then the inverse-CDF draw with
/// u = uniform01(stream_key(config.seed, step), sequence). `step` is the index of the new token being chosen
/// (0 = the token chosen from the prompt's logits), `sequence` the row within the batch (0 without beams).
std::int32_t sample_token(std::span<const float> logits, const generation_config& config, std::int64_t step,
                          std::int64_t sequence);

/// One beam-search step: new beam j continues parents[j] with tokens[j] and has scores[j]; best first.
struct beam_choice {
    std::vector<std::int32_t> parents, tokens;
    std::vector<double> scores;
};

/// logits [B * V] (row b = beam b), beam_scores [B]: the top B of beam_scores[b] + log_softmax(logits[b])[v]
/// over all b, v; ties go to the lower flat index b * V + v.
beam_choice beam_step(std::span<const float> logits, std::int64_t vocab, std::span<const double> beam_scores);

/// Initial beam scores: [0, -1e9, -1e9, ...], so the first step expands beam 0 only (Hugging Face).
std::vector<double> initial_beam_scores(std::int64_t beam_width);

}  // namespace qbench
