#pragma once
/// Choosing the next tokens on the GPU (greedy, sampling, beam search) with the exact semantics of
/// qbench/engine/generation.hpp, so a whole decode step, choice included, is one CUDA graph.
///
/// Every chooser reads the step's state from device memory and advances it at its end (pos += 1, step += 1), so the
/// same captured graph serves every step:
///   pos   position of the input token of the step whose logits are being chosen from (prefill: the last prompt
///         position); the chosen tokens will sit at pos + 1
///   step  index of the token being chosen (0 = the token chosen from the prefill logits); history row
#include "cuda/launch.cuh"

#include <cuda_fp16.h>

#include <cstdint>

namespace qbench {

/// Largest beam width the chooser kernels handle.
inline constexpr int k_max_beam = 8;

/// Device state of one generation (all device pointers).
struct decode_state {
    std::int32_t* pos = nullptr;           ///< [1]
    std::int32_t* step = nullptr;          ///< [1]
    std::int32_t* tokens = nullptr;        ///< [beams] chosen tokens = next step's input
    std::int32_t* hist_tokens = nullptr;   ///< [max_new_tokens, beams]
    std::int32_t* hist_parents = nullptr;  ///< [max_new_tokens, beams] parent beam of each chosen token
    double* scores = nullptr;              ///< [beams] summed log-probabilities (beam scores), as the CPU in double
    std::int32_t* slot_table = nullptr;    ///< [beams, max_len] (attention.cuh)
    std::int32_t* table_tmp = nullptr;     ///< [beams, max_len] scratch of the reorder
    float* row_max = nullptr;              ///< [beams] scratch: largest logit of each parent row
    double* row_logsum = nullptr;          ///< [beams] scratch: log(sum(exp(l - max))) of each parent row
    float* cand_logit = nullptr;           ///< [beams, beams] scratch: each row's top logits
    std::int32_t* cand_token = nullptr;    ///< [beams, beams]
    std::int64_t beams = 1;
    std::int64_t max_len = 0;
    /// Scratch of the multi-block greedy choice (null: one block chooses alone, as before): per row and block the
    /// best logit, its id and sum(exp(l - best)); the arrival counter is zero between launches (the last block
    /// resets it). Sizes: k_greedy_blocks per row.
    float* greedy_max = nullptr;
    std::int32_t* greedy_idx = nullptr;
    double* greedy_sum = nullptr;
    unsigned* greedy_arrived = nullptr;
};

/// Blocks per row of the multi-block greedy choice (its scratch holds this many partials per row).
inline constexpr int k_greedy_blocks = 32;

/// Greedy: token = argmax of each row of logits [rows, vocab] (ties: lowest id); rows == state.beams. Greedy and
/// sampling add the chosen token's log_softmax (in double, as decoding.hpp) to scores[b]. With the greedy scratch
/// set, k_greedy_blocks blocks per row share the work (the double exp of every logit is what one block is slow at)
/// and the last one to finish combines: sum = sum_b sum_b' * exp(max_b - max), the same value to ~1e-16.
void launch_choose_greedy(const __half* logits, std::int64_t vocab, const decode_state& state,
                          const launch_options& o);

struct sampling_params {
    double temperature = 1.0;
    std::int64_t top_k = 0;   ///< 0 = off
    double top_p = 1.0;       ///< 1 = off
    std::uint64_t seed = 0;
};

/// Sampling (one row per sequence; sequence b draws u = uniform01(stream_key(seed, step), b)).
void launch_choose_sample(const __half* logits, std::int64_t vocab, const sampling_params& params,
                          const decode_state& state, const launch_options& o);

/// Beam search step over `parent_rows` rows of logits (1 for the choice from the prefill logits, where all beams
/// are still the prompt; state.beams otherwise): candidate score = scores[b] + log_softmax(logits[b])[v], top
/// state.beams of the candidates (ties: lower b * vocab + v), slot tables reordered by parent.
void launch_choose_beam(const __half* logits, std::int64_t vocab, std::int64_t parent_rows, const decode_state& state,
                        const launch_options& o);

}  // namespace qbench
