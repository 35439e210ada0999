#pragma once
/// The CPU reference's key/value cache: fp16 values held in floats.
///
///   keys[layer]   = [sequences][capacity][kv_heads * head_dim]     (values[layer] alike)
///                    \_ beams _/ \_ positions _/
///
/// Every sequence has the same number of filled positions (`length`): prefill fills [0, prompt) of every sequence,
/// each decode step appends one position to every sequence. Beam search reorders whole sequences by parent beam.
#include <cstdint>
#include <span>
#include <vector>

namespace qbench {

struct cpu_kv_cache {
    std::int64_t layers = 0;
    std::int64_t sequences = 0;
    std::int64_t capacity = 0;   ///< positions per sequence
    std::int64_t kv_dim = 0;     ///< kv_heads * head_dim
    std::int64_t length = 0;     ///< filled positions (the same in every sequence)
    std::vector<std::vector<float>> keys, values;  ///< per layer

    cpu_kv_cache() = default;
    cpu_kv_cache(std::int64_t layers, std::int64_t sequences, std::int64_t capacity, std::int64_t kv_dim);

    /// Row of `position` of `sequence` in `layer` ([kv_dim] floats).
    float* key(std::int64_t layer, std::int64_t sequence, std::int64_t position) {
        return keys[layer].data() + (sequence * capacity + position) * kv_dim;
    }
    float* value(std::int64_t layer, std::int64_t sequence, std::int64_t position) {
        return values[layer].data() + (sequence * capacity + position) * kv_dim;
    }
    const float* key(std::int64_t layer, std::int64_t sequence, std::int64_t position) const {
        return keys[layer].data() + (sequence * capacity + position) * kv_dim;
    }
    const float* value(std::int64_t layer, std::int64_t sequence, std::int64_t position) const {
        return values[layer].data() + (sequence * capacity + position) * kv_dim;
    }

    /// New sequence j becomes a copy of old sequence parents[j] (filled positions only); the number of sequences
    /// becomes parents.size(), so a one-sequence prefill can fan out to B beams with parents {0, 0, ...}.
    void reorder(std::span<const std::int32_t> parents);

    /// Bytes the cache holds at fp16 (what the GPU's cache of this shape takes).
    std::uint64_t fp16_bytes() const {
        return static_cast<std::uint64_t>(2 * layers * sequences * capacity * kv_dim) * 2u;
    }
};

}  // namespace qbench
