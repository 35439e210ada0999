#include "qbench/engine/cpu_forward.hpp"

#include "qbench/common/errors.hpp"
#include "qbench/engine/prompt.hpp"
#include "qbench/engine/reference_ops.hpp"

#include <algorithm>
#include <string>

namespace qbench {

namespace {

// Where one sequence's keys and values live: [positions][kv_dim], room for past + new tokens.
struct kv_rows {
    float* keys;
    float* values;
};

// y = linear(x) rounded to fp16 (the contract's rounding point, whatever the backend's linear returns).
void run_linear(const cpu_linear& linear, std::int64_t layer, linear_kind kind, const std::vector<float>& x,
                std::int64_t rows, std::vector<float>& y, const linear_observer* observer) {
    if (observer && *observer) (*observer)(layer, kind, x.data(), rows, linear.in_features());
    y.resize(static_cast<std::size_t>(rows * linear.out_features()));
    linear.forward(x.data(), rows, y.data());
    round_to_half_inplace(y);
}

// One decoder layer on hidden [S * T, H]; sequence s's new tokens sit at positions [past, past + T) of kv[s].
void layer_step(const cpu_model& model, std::int64_t layer_index, std::vector<float>& hidden, std::int64_t tokens,
                std::int64_t past, std::span<const kv_rows> kv, const linear_observer* observer) {
    const model_config& c = model.config;
    const cpu_layer& layer = model.layers.at(static_cast<std::size_t>(layer_index));
    const auto sequences = static_cast<std::int64_t>(kv.size());
    const std::int64_t rows = sequences * tokens;
    const std::int64_t H = c.hidden_size, d = c.head_dim(), kv_dim = c.kv_size(), q_dim = c.q_size();
    if (static_cast<std::int64_t>(hidden.size()) != rows * H)
        throw error("layer_step: hidden has " + std::to_string(hidden.size()) + " values, expected " +
                    std::to_string(rows) + " rows of " + std::to_string(H));

    // Attention block.
    std::vector<float> x(hidden.size());
    rms_norm_ref(hidden.data(), rows, H, layer.input_norm.data(), c.rms_norm_eps, x.data());
    std::vector<float> q, k, v;
    run_linear(*layer.q_proj, layer_index, linear_kind::q_proj, x, rows, q, observer);
    run_linear(*layer.k_proj, layer_index, linear_kind::k_proj, x, rows, k, observer);
    run_linear(*layer.v_proj, layer_index, linear_kind::v_proj, x, rows, v, observer);

    std::vector<std::int64_t> positions(static_cast<std::size_t>(rows));
    for (std::int64_t r = 0; r < rows; ++r) positions[r] = past + r % tokens;
    rope_ref(q, c.num_heads, d, positions, c.rope_theta);
    rope_ref(k, c.num_kv_heads, d, positions, c.rope_theta);

    std::vector<float> attn(static_cast<std::size_t>(rows * q_dim));
    for (std::int64_t s = 0; s < sequences; ++s) {
        const std::int64_t first = s * tokens;
        std::copy(k.begin() + first * kv_dim, k.begin() + (first + tokens) * kv_dim, kv[s].keys + past * kv_dim);
        std::copy(v.begin() + first * kv_dim, v.begin() + (first + tokens) * kv_dim, kv[s].values + past * kv_dim);
        attention_ref(q.data() + first * q_dim, kv[s].keys, kv[s].values, tokens, past, c.num_heads, c.num_kv_heads, d,
                      attn.data() + first * q_dim);
    }
    std::vector<float> out;
    run_linear(*layer.o_proj, layer_index, linear_kind::o_proj, attn, rows, out, observer);
    residual_add_ref(hidden.data(), out.data(), rows * H);

    // MLP block.
    rms_norm_ref(hidden.data(), rows, H, layer.post_norm.data(), c.rms_norm_eps, x.data());
    std::vector<float> gate, up;
    run_linear(*layer.gate_proj, layer_index, linear_kind::gate_proj, x, rows, gate, observer);
    run_linear(*layer.up_proj, layer_index, linear_kind::up_proj, x, rows, up, observer);
    swiglu_ref(gate.data(), up.data(), static_cast<std::int64_t>(gate.size()), gate.data());
    run_linear(*layer.down_proj, layer_index, linear_kind::down_proj, gate, rows, out, observer);
    residual_add_ref(hidden.data(), out.data(), rows * H);
}

}  // namespace

void cpu_layer_forward(const cpu_model& model, std::int64_t layer, std::vector<float>& hidden,
                       std::int64_t tokens_per_sequence, const linear_observer* observer) {
    const std::int64_t H = model.config.hidden_size, kv_dim = model.config.kv_size();
    const std::int64_t rows = static_cast<std::int64_t>(hidden.size()) / H;
    if (tokens_per_sequence < 1 || rows % tokens_per_sequence != 0 ||
        static_cast<std::int64_t>(hidden.size()) != rows * H)
        throw error("cpu_layer_forward: hidden of " + std::to_string(hidden.size()) +
                    " values is not whole sequences of " + std::to_string(tokens_per_sequence) + " tokens of " +
                    std::to_string(H));
    const std::int64_t sequences = rows / tokens_per_sequence;
    std::vector<float> keys(static_cast<std::size_t>(rows * kv_dim)), values(keys.size());
    std::vector<kv_rows> kv;
    for (std::int64_t s = 0; s < sequences; ++s)
        kv.push_back({keys.data() + s * tokens_per_sequence * kv_dim, values.data() + s * tokens_per_sequence * kv_dim});
    layer_step(model, layer, hidden, tokens_per_sequence, 0, kv, observer);
}

std::vector<float> embed_tokens(const cpu_model& model, std::span<const std::int32_t> tokens) {
    const std::int64_t H = model.config.hidden_size, V = model.config.vocab_size;
    std::vector<float> rows(tokens.size() * static_cast<std::size_t>(H));
    for (std::size_t i = 0; i < tokens.size(); ++i) {
        if (tokens[i] < 0 || tokens[i] >= V)
            throw error("embed_tokens: token id " + std::to_string(tokens[i]) + " outside the vocabulary [0, " +
                        std::to_string(V) + ")");
        std::copy_n(model.embed.begin() + tokens[i] * H, H, rows.begin() + static_cast<std::int64_t>(i) * H);
    }
    return rows;
}

std::vector<float> embed_prompt(const cpu_model& model, const prompt& p) {
    const std::int64_t H = model.config.hidden_size;
    const auto text = static_cast<std::int64_t>(p.tokens.size());
    if (p.image_offset < 0 || p.image_offset > text || p.image_tokens < 0)
        throw error("embed_prompt: image_offset " + std::to_string(p.image_offset) + " outside [0, " +
                    std::to_string(text) + "] or negative image_tokens");
    const std::span<const std::int32_t> tokens(p.tokens);
    const std::vector<float> before = embed_tokens(model, tokens.first(static_cast<std::size_t>(p.image_offset)));
    const std::vector<float> image = image_embeddings(p, H);
    const std::vector<float> after = embed_tokens(model, tokens.subspan(static_cast<std::size_t>(p.image_offset)));
    std::vector<float> rows;
    rows.reserve(before.size() + image.size() + after.size());
    rows.insert(rows.end(), before.begin(), before.end());
    rows.insert(rows.end(), image.begin(), image.end());
    rows.insert(rows.end(), after.begin(), after.end());
    return rows;
}

void cpu_forward_layers(const cpu_model& model, cpu_kv_cache& cache, std::vector<float>& hidden,
                        std::int64_t tokens_per_sequence) {
    const model_config& c = model.config;
    if (cache.layers != c.num_layers || cache.kv_dim != c.kv_size())
        throw error("cpu_forward_layers: the KV cache is not shaped for this model");
    if (tokens_per_sequence < 1 || cache.length + tokens_per_sequence > cache.capacity)
        throw error("cpu_forward_layers: " + std::to_string(tokens_per_sequence) + " new tokens do not fit after " +
                    std::to_string(cache.length) + " of " + std::to_string(cache.capacity) + " positions");
    for (std::int64_t l = 0; l < c.num_layers; ++l) {
        std::vector<kv_rows> kv;
        for (std::int64_t s = 0; s < cache.sequences; ++s) kv.push_back({cache.key(l, s, 0), cache.value(l, s, 0)});
        layer_step(model, l, hidden, tokens_per_sequence, cache.length, kv, nullptr);
    }
    cache.length += tokens_per_sequence;
}

std::vector<float> cpu_logits(const cpu_model& model, const float* hidden, std::int64_t rows) {
    const std::int64_t H = model.config.hidden_size;
    std::vector<float> x(static_cast<std::size_t>(rows * H));
    rms_norm_ref(hidden, rows, H, model.final_norm.data(), model.config.rms_norm_eps, x.data());
    std::vector<float> logits;
    run_linear(*model.lm_head, -1, linear_kind::lm_head, x, rows, logits, nullptr);
    return logits;
}

cpu_kv_cache make_kv_cache(const cpu_model& model, std::int64_t sequences, std::int64_t capacity) {
    return cpu_kv_cache(model.config.num_layers, sequences, capacity, model.config.kv_size());
}

}  // namespace qbench
