#pragma once
/// What an executor (CPU reference or CUDA) is asked to do, and the exact semantics both must share.
///
/// Prompt: MiniGPT-4 style. The prefill input is the token embeddings of `tokens[0, image_offset)`, then
/// `image_tokens` image embeddings, then the embeddings of `tokens[image_offset, end)`. Image embedding row r,
/// element h is fp16(normal01(stream_key(image_seed, hash_string("image")), r * H + h)) (synthetic: no vision tower).
///
/// Numerics (both executors round to fp16 at the same points, so greedy tokens agree):
///   the residual stream, RMSNorm outputs, every linear output, q and k after RoPE, the KV cache, the attention
///   output, the SwiGLU product silu(gate) * up, and the logits (lm_head output) are fp16 values;
///   reductions (RMSNorm sum of squares, dot products, softmax) accumulate in fp32 (CPU may use double).
///   RMSNorm: y = fp16( fp16(x * rsqrt(mean(x^2) + eps)) * w ), computing x * rsqrt in fp32 first as HF does.
///   RoPE: rotate-half pairing (i, i + d/2), inv_freq[i] = theta^(-2i/d), angle = position * inv_freq[i] in fp32.
///   Attention: softmax(q·k / sqrt(d)) over positions <= own position (causal), GQA: query head h uses kv head
///   h / (num_heads / num_kv_heads).
///
/// Decoding (synthetic weights: EOS is ignored, every sequence gets exactly max_new_tokens new tokens):
///   greedy: argmax of logits; ties go to the lowest token id.
///   sample: logits / temperature -> top_k filter (keep the k largest; ties by lower id) -> softmax -> top_p filter
///     (sort descending, keep the smallest prefix whose probability mass >= top_p, always at least one) -> renormalize
///     -> draw with u = uniform01(stream_key(seed, step), sequence) by inverse CDF over the kept tokens in
///     descending-probability order (ties by lower id).
///   beam (beam_width B > 1; Hugging Face semantics without EOS): beam scores start at [0, -1e9, -1e9, ...] so the
///     first step expands beam 0 only; each step: candidate score = beam_score[b] + log_softmax(logits[b])[v];
///     take the top B of the B x V candidates (ties: lower b*V + v first); the new beam j continues parent beam
///     b_j with token v_j, and the KV cache rows are reordered by parent. The result is beam 0 after the last step
///     (highest score; all beams have equal length so length_penalty does not matter).
///   beam_width 1 is greedy.
#include <cstdint>
#include <vector>

namespace qbench {

struct prompt {
    std::vector<std::int32_t> tokens;     ///< text tokens (BOS first)
    std::int64_t image_offset = 0;        ///< image embeddings are inserted before tokens[image_offset]
    std::int64_t image_tokens = 0;
    std::uint64_t image_seed = 0;

    std::int64_t length() const { return static_cast<std::int64_t>(tokens.size()) + image_tokens; }
};

enum class decode_mode : std::uint8_t { greedy, sample, beam };

struct generation_config {
    std::int64_t max_new_tokens = 32;
    decode_mode mode = decode_mode::greedy;
    std::int64_t beam_width = 1;          ///< > 1 only with mode beam
    double temperature = 1.0;
    std::int64_t top_k = 0;               ///< 0 = off
    double top_p = 1.0;                   ///< 1 = off
    std::uint64_t seed = 0;
};

struct generation_output {
    std::vector<std::int32_t> tokens;                 ///< the returned sequence's new tokens
    std::vector<std::vector<std::int32_t>> beams;     ///< all beams' new tokens, best first (one entry if no beam)
    std::vector<double> beam_scores;                  ///< summed log-probabilities, best first
};

/// Wall or device time of the last generate() call.
struct generation_timing {
    double prefill_ms = 0;                ///< prompt prefill, up to and including the first token's logits
    std::vector<double> step_ms;          ///< one per decode step (max_new_tokens - 1 steps after the prefill token)
};

/// An executor runs the whole decoder on one device.
class executor {
public:
    virtual ~executor() = default;
    virtual generation_output generate(const prompt& p, const generation_config& g) = 0;
    virtual const generation_timing& last_timing() const = 0;
    /// Next-token logits (fp16 values as float, [V] per position) of the prompt followed by `forced` tokens,
    /// teacher-forced: row i is the distribution after the prompt and forced[0..i). Used for quality metrics.
    virtual std::vector<std::vector<float>> teacher_forced_logits(const prompt& p,
                                                                  const std::vector<std::int32_t>& forced) = 0;
};

}  // namespace qbench
