#pragma once
// Test-only checkpoints: a tensor_source over an in-memory map of tensors, and small random Llama checkpoints with
// Hugging Face names (fp16, roughly unit-scale activations), so the engine tests need no files and no other part.
#include "qbench/common/counter_rng.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/common/tensor.hpp"
#include "qbench/engine/model_config.hpp"
#include "qbench/io/tensor_source.hpp"

#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace qbench::test {

class memory_source : public tensor_source {
public:
    void add(const std::string& name, host_tensor tensor) {
        tensor_info info{name, tensor.type, tensor.shape, tensor.byte_size(), m_path, 0};
        m_entries[name] = {std::move(info), std::move(tensor)};
    }
    void erase(const std::string& name) { m_entries.erase(name); }

    const std::filesystem::path& path() const override { return m_path; }
    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& [name, entry] : m_entries) out.push_back(name);
        return out;
    }
    const tensor_info* find(std::string_view name) const override {
        auto it = m_entries.find(std::string(name));
        return it == m_entries.end() ? nullptr : &it->second.info;
    }
    host_tensor read(std::string_view name) const override {
        auto it = m_entries.find(std::string(name));
        if (it == m_entries.end()) throw input_error(m_path.string(), "tensor '" + std::string(name) + "'", "missing");
        return it->second.tensor;
    }
    const std::map<std::string, std::string>& metadata() const override { return m_metadata; }
    std::uint64_t total_bytes() const override {
        std::uint64_t total = 0;
        for (const auto& [name, entry] : m_entries) total += entry.info.byte_size;
        return total;
    }

private:
    struct entry {
        tensor_info info;
        host_tensor tensor;
    };
    std::filesystem::path m_path = "memory:test-checkpoint";
    std::map<std::string, entry> m_entries;
    std::map<std::string, std::string> m_metadata;
};

inline model_config tiny_config(std::int64_t hidden, std::int64_t intermediate, std::int64_t layers, std::int64_t heads,
                                std::int64_t kv_heads, std::int64_t vocab) {
    model_config c;
    c.name = "tiny-test";
    c.hidden_size = hidden;
    c.intermediate_size = intermediate;
    c.num_layers = layers;
    c.num_heads = heads;
    c.num_kv_heads = kv_heads;
    c.vocab_size = vocab;
    c.max_position = 512;
    c.rms_norm_eps = 1e-5;
    c.rope_theta = 10000.0;
    c.minigpt4_image_tokens = 4;
    return c;
}

// fp16 values: linears normal / sqrt(in) * gain, embeddings normal, norms 1 + 0.1 normal.
inline host_tensor random_f16(std::uint64_t seed, const std::string& name, std::vector<std::int64_t> shape,
                              float scale, float offset) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<float> values(static_cast<std::size_t>(n));
    const std::uint64_t key = stream_key(seed, hash_string(name));
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = offset + scale * normal01(key, i);
    return make_f16_tensor(values, std::move(shape));
}

inline memory_source random_checkpoint(const model_config& c, std::uint64_t seed, float linear_gain = 1.0f) {
    memory_source source;
    auto add_linear = [&](const std::string& name, std::int64_t out, std::int64_t in) {
        source.add(name, random_f16(seed, name, {out, in}, linear_gain / std::sqrt(static_cast<float>(in)), 0.0f));
    };
    source.add("model.embed_tokens.weight", random_f16(seed, "embed", {c.vocab_size, c.hidden_size}, 1.0f, 0.0f));
    for (std::int64_t l = 0; l < c.num_layers; ++l) {
        for (auto kind : {linear_kind::q_proj, linear_kind::k_proj, linear_kind::v_proj, linear_kind::o_proj,
                          linear_kind::gate_proj, linear_kind::up_proj, linear_kind::down_proj})
            add_linear(linear_prefix(l, kind) + ".weight", linear_out_features(c, kind), linear_in_features(c, kind));
        const std::string base = "model.layers." + std::to_string(l) + ".";
        source.add(base + "input_layernorm.weight", random_f16(seed, base + "in", {c.hidden_size}, 0.1f, 1.0f));
        source.add(base + "post_attention_layernorm.weight",
                   random_f16(seed, base + "post", {c.hidden_size}, 0.1f, 1.0f));
    }
    source.add("model.norm.weight", random_f16(seed, "norm", {c.hidden_size}, 0.1f, 1.0f));
    add_linear("lm_head.weight", c.vocab_size, c.hidden_size);
    return source;
}

}  // namespace qbench::test
