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
///
/// Decisions where the rules above leave room (made with the CPU reference, engine/cpu_executor.hpp; the CUDA
/// executor follows them):
///   Positions: the prefill rows (text and image alike) sit at positions 0 .. P-1, new token i is fed at P + i.
///   Linear: y = fp16(sum x*w) accumulated in fp32 (CPU: double, index order). The engine rounds every linear
///     output to fp16 itself, so a backend's cpu_linear may return unrounded floats.
///   RMSNorm: inv = float(1 / sqrt(mean(x^2) + eps)) (CPU: mean in double, one rounding to float; GPU: rsqrtf is
///     fine); then fp16(x * inv) with an fp32 multiply, then fp16(that * w) (an fp16 x fp16 product, exact in fp32).
///   RoPE: inv_freq[i] = float(theta^(-2i/d)) computed once on the host in double (rope_inv_freq() in
///     engine/reference_ops.hpp; upload that table); angle = float(position) * inv_freq[i], an fp32 multiply;
///     cos/sin of that fp32 angle accurate to fp32 (CPU: double cos/sin rounded to float; GPU: a host-made table or
///     sincosf, never __sinf/__cosf). cos/sin are NOT rounded to fp16 (HF's fp16 cos cache is not reproduced);
///     each rotated element x_i*cos - x_{i+d/2}*sin (resp. x_{i+d/2}*cos + x_i*sin) is rounded once to fp16.
///   Attention: scores = (q.k) * (1/sqrt(d)) and the softmax stay in fp32 (CPU: double) — neither the scores nor
///     the probabilities are rounded to fp16 (flash-attention style); only the output row is.
///   SwiGLU: silu(g) = g / (1 + exp(-g)) is not rounded on its own; fp16(silu(g) * u) is the one rounding.
///   Residual add: h = fp16(float(h) + float(delta)), one fp32 add.
///   Beam prefill: the prompt is prefilled once and its KV cache copied to the B beams (the same numbers as HF's B
///     identical prefills); step 0's B logit rows are that one row repeated.
///   Beam scores accumulate in double on the CPU (fp32 is allowed on the GPU); beam_width > 1 requires mode beam
///     (HF's beam-sample is not offered), mode beam with beam_width 1 is greedy.
///   Sampling: `step` = index of the token being chosen (0 = chosen from the prefill logits), `sequence` = 0 without
///     beams. Arithmetic in double on the CPU: z = logit / temperature (temperature must be > 0); top_k 0 or >= V
///     is off; weights exp(z - max) over the top-k survivors; top_p keeps the shortest descending prefix with
///     (prefix weight / total weight) >= top_p; the draw is the first kept token (descending, ties by lower id)
///     whose cumulative weight exceeds u * (kept weight); the last kept token if rounding leaves none.
///   generation_output: for greedy and sample, beams = {tokens} and beam_scores = {sum of log_softmax(logits)[token]}
///     over the untempered logits; for beam, all B beams best first with their raw summed log-probabilities.
///     max_new_tokens 0 runs the prefill only and returns no tokens, beams {{}}, beam_scores {0}.
///   Timing: prefill_ms = embedding + prefill + the first logits (choosing token 0 is not timed); step_ms[i] = the
///     forward of token i plus choosing token i + 1 (beam step and cache reorder included).
///   teacher_forced_logits(p, forced) returns forced.size() rows; row i is the distribution that predicts forced[i]
///     (so forced.back() is never fed).
///   What remains unpinned is accumulation order (and fp32 vs double), which moves a value only when it lands next
///   to an fp16 rounding boundary: executors agree on tokens except where two candidates (nearly) tie.
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
