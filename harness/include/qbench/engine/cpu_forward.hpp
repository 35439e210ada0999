#pragma once
/// The decoder's forward pass on the CPU reference, built from engine/reference_ops.hpp and the backend's linears.
///
/// One layer, on hidden [S * T, H] holding S sequences of T new tokens back to back (sequence s, token t is row
/// s * T + t, at position past + t):
///
///   x  = rms_norm(h, input_norm)
///   q, k, v = q_proj(x), k_proj(x), v_proj(x)          (each linear output rounded to fp16)
///   q, k = rope(q), rope(k)
///   a  = attention(q over the cache's [0, past) and the new k, v; causal)
///   h  = h + o_proj(a)
///   x  = rms_norm(h, post_norm)
///   h  = h + down_proj(swiglu(gate_proj(x), up_proj(x)))
///
/// The model: h = embeddings; every layer; logits = lm_head(rms_norm(h, final_norm)).
#include "qbench/engine/cpu_kv_cache.hpp"
#include "qbench/engine/cpu_model.hpp"
#include "qbench/engine/generation.hpp"

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace qbench {

/// Sees the input of every linear layer just before it runs: x [rows, in]. q, k and v share their input, so the
/// observer is called three times with it (once per kind), then o_proj, gate_proj, up_proj (same input as
/// gate_proj) and down_proj. GPTQ calibration accumulates its Hessians from these.
using linear_observer =
    std::function<void(std::int64_t layer, linear_kind kind, const float* x, std::int64_t rows, std::int64_t in)>;

/// Runs decoder layer `layer` in place on hidden [S * tokens_per_sequence, H] without a KV cache: the sequences are
/// independent, attention is causal within each, positions start at 0. `observer` may be null.
void cpu_layer_forward(const cpu_model& model, std::int64_t layer, std::vector<float>& hidden,
                       std::int64_t tokens_per_sequence, const linear_observer* observer);

/// The prompt's prefill input [p.length(), H]: token embeddings with the image embeddings spliced in before
/// tokens[image_offset]. Token ids outside [0, V) are an error.
std::vector<float> embed_prompt(const cpu_model& model, const prompt& p);

/// Embedding rows [tokens.size(), H] of token ids.
std::vector<float> embed_tokens(const cpu_model& model, std::span<const std::int32_t> tokens);

/// Runs every layer on `hidden` [cache.sequences * T, H] (T new tokens per sequence, appended after the cache's
/// `length` positions, which grows by T); `hidden` ends as the last layer's output. The cache must have room.
void cpu_forward_layers(const cpu_model& model, cpu_kv_cache& cache, std::vector<float>& hidden,
                        std::int64_t tokens_per_sequence);

/// logits [rows, V] = lm_head(rms_norm(hidden rows, final_norm)), rounded to fp16.
std::vector<float> cpu_logits(const cpu_model& model, const float* hidden, std::int64_t rows);

/// A KV cache shaped for this model: `sequences` sequences of up to `capacity` positions.
cpu_kv_cache make_kv_cache(const cpu_model& model, std::int64_t sequences, std::int64_t capacity);

}  // namespace qbench
