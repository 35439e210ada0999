#include "qbench/engine/cpu_kv_cache.hpp"

#include "qbench/common/errors.hpp"

#include <algorithm>
#include <string>

namespace qbench {

cpu_kv_cache::cpu_kv_cache(std::int64_t layers_, std::int64_t sequences_, std::int64_t capacity_,
                           std::int64_t kv_dim_)
    : layers(layers_), sequences(sequences_), capacity(capacity_), kv_dim(kv_dim_) {
    if (layers < 0 || sequences < 1 || capacity < 0 || kv_dim < 1)
        throw error("cpu_kv_cache: bad shape (layers " + std::to_string(layers) + ", sequences " +
                    std::to_string(sequences) + ", capacity " + std::to_string(capacity) + ", kv_dim " +
                    std::to_string(kv_dim) + ")");
    const auto per_layer = static_cast<std::size_t>(sequences * capacity * kv_dim);
    keys.assign(static_cast<std::size_t>(layers), std::vector<float>(per_layer, 0.0f));
    values.assign(static_cast<std::size_t>(layers), std::vector<float>(per_layer, 0.0f));
}

void cpu_kv_cache::reorder(std::span<const std::int32_t> parents) {
    if (parents.empty()) throw error("cpu_kv_cache::reorder: no sequences");
    for (std::int32_t p : parents)
        if (p < 0 || p >= sequences)
            throw error("cpu_kv_cache::reorder: parent " + std::to_string(p) + " out of [0, " +
                        std::to_string(sequences) + ")");
    const auto new_sequences = static_cast<std::int64_t>(parents.size());
    const std::int64_t row_floats = length * kv_dim;  // only filled positions are copied
    const std::int64_t seq_floats = capacity * kv_dim;
    auto permute = [&](std::vector<float>& store) {
        std::vector<float> out(static_cast<std::size_t>(new_sequences * seq_floats), 0.0f);
        for (std::int64_t j = 0; j < new_sequences; ++j) {
            const float* src = store.data() + parents[j] * seq_floats;
            std::copy(src, src + row_floats, out.data() + j * seq_floats);
        }
        store = std::move(out);
    };
    for (std::int64_t l = 0; l < layers; ++l) {
        permute(keys[l]);
        permute(values[l]);
    }
    sequences = new_sequences;
}

}  // namespace qbench
