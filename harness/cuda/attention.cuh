#pragma once
/// Attention over the KV cache: softmax(q·k / sqrt(d)) over positions <= the query's own (causal), fp32 scores,
/// softmax and accumulation, fp16 output; grouped-query: query head h reads kv head h / (heads / kv_heads).
///
/// Beams do not copy the cache when they are reordered: beam b's slot table row names, for every position p, the
/// physical slot holding that position's keys and values (a beam writes its own slot b at each new position; a
/// reorder copies table rows from the parents, see select.cuh). Greedy and sampling use slot 0 throughout.
#include "cuda/launch.cuh"

#include <cuda_fp16.h>

#include <cstdint>

namespace qbench {

struct attention_shape {
    int heads = 0;
    int kv_heads = 0;
    int head_dim = 0;           ///< even, at most 256
    std::int64_t max_len = 0;   ///< positions per slot in the cache
    float scale = 0;            ///< 1 / sqrt(head_dim)
};

/// Largest max_len the kernels accept for a head size (their scores live in 48 KB of shared memory).
std::int64_t attention_max_len(int head_dim);

/// Prefill: query r < rows (position pos0 + r, already rotated in q [rows, heads*d]) attends over slot 0 of the
/// caches, positions [0, pos0 + r]; out [rows, heads*d].
void launch_attention_prefill(const __half* q, const __half* k_cache, const __half* v_cache, std::int64_t rows,
                              std::int64_t pos0, const attention_shape& shape, __half* out, const launch_options& o);

/// Decode: one query per beam b < beams at position *pos (device). Applies RoPE to q [beams, heads*d] and to the
/// new k [beams, kv_heads*d], writes k and v into slot b at *pos, and attends over positions [0, *pos] through
/// slot_table [beams, max_len] (entries below *pos are read). out [beams, heads*d].
void launch_attention_decode(const __half* q, const __half* k_new, const __half* v_new, const float* inv_freq,
                             const std::int32_t* pos, const std::int32_t* slot_table, std::int64_t beams,
                             const attention_shape& shape, __half* k_cache, __half* v_cache, __half* out,
                             const launch_options& o);

}  // namespace qbench
