#include "qbench/io/synthetic_weights.hpp"

#include "qbench/common/errors.hpp"
#include "qbench/common/half.hpp"
#include "qbench/io/synthetic_checkpoint.hpp"

#include <algorithm>
#include <thread>
#include <vector>

namespace qbench {

namespace synthetic {

tensor_role role_of(std::string_view name) {
    if (name == "lm_head.weight" || (name.ends_with("_proj.weight") && name.starts_with("model.layers.")))
        return tensor_role::linear;
    if (name == "model.embed_tokens.weight") return tensor_role::embedding;
    if (name == "model.norm.weight" ||
        (name.starts_with("model.layers.") && name.ends_with("layernorm.weight")))
        return tensor_role::norm;
    return tensor_role::other;
}

}  // namespace synthetic

namespace {

// Below this many elements per thread, starting a thread costs more than it saves.
constexpr std::uint64_t k_min_elements_per_thread = std::uint64_t{1} << 16;

// Runs body(begin, end) over [0, n) split into contiguous ranges, one per thread. Each element is a pure function
// of its index, so the split cannot change the result.
template <class Body> void parallel_ranges(std::uint64_t n, unsigned threads, const Body& body) {
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    const std::uint64_t useful = std::max<std::uint64_t>(1, n / k_min_elements_per_thread);
    const auto count = static_cast<unsigned>(std::min<std::uint64_t>(threads, useful));
    if (count <= 1) {
        body(std::uint64_t{0}, n);
        return;
    }
    const std::uint64_t chunk = (n + count - 1) / count;
    std::vector<std::thread> pool;
    pool.reserve(count - 1);
    for (unsigned t = 1; t < count; ++t) {
        const std::uint64_t b = std::min(n, t * chunk), e = std::min(n, (t + 1) * chunk);
        pool.emplace_back([&body, b, e] { body(b, e); });
    }
    body(std::uint64_t{0}, std::min(n, chunk));
    for (auto& th : pool) th.join();
}

}  // namespace

void generate_synthetic_tensor(std::string_view model_name, std::string_view tensor_name,
                               std::span<const std::int64_t> shape, std::uint64_t seed, std::span<std::uint16_t> out,
                               unsigned threads) {
    using namespace synthetic;
    std::uint64_t numel = 1;
    for (auto d : shape) {
        if (d < 0) throw error("synthetic tensor '" + std::string(tensor_name) + "': negative dimension");
        numel *= static_cast<std::uint64_t>(d);
    }
    if (out.size() != numel)
        throw error("synthetic tensor '" + std::string(tensor_name) + "' " + shape_to_string(shape) + " has " +
                    std::to_string(numel) + " elements but the buffer holds " + std::to_string(out.size()));
    const std::uint64_t key = tensor_key(model_name, tensor_name, seed);
    std::uint16_t* dst = out.data();
    switch (role_of(tensor_name)) {
    case tensor_role::linear: {
        if (shape.size() != 2 || shape[1] <= 0)
            throw error("synthetic linear weight '" + std::string(tensor_name) + "' must be [out, in], got " +
                        shape_to_string(shape));
        const float scale = inv_sqrt(shape[1]);
        parallel_ranges(numel, threads, [&](std::uint64_t b, std::uint64_t e) {
            for (std::uint64_t i = b; i < e; ++i) dst[i] = float_to_half(linear_value(key, i, scale));
        });
        return;
    }
    case tensor_role::embedding:
        parallel_ranges(numel, threads, [&](std::uint64_t b, std::uint64_t e) {
            for (std::uint64_t i = b; i < e; ++i) dst[i] = float_to_half(embedding_value(key, i));
        });
        return;
    case tensor_role::norm: {
        if (shape.size() != 1)
            throw error("synthetic norm weight '" + std::string(tensor_name) + "' must be [H], got " +
                        shape_to_string(shape));
        const std::uint64_t okey = outlier_key(model_name, seed);
        parallel_ranges(numel, threads, [&](std::uint64_t b, std::uint64_t e) {
            for (std::uint64_t c = b; c < e; ++c) dst[c] = float_to_half(norm_value(key, okey, c));
        });
        return;
    }
    case tensor_role::other: break;
    }
    throw error("synthetic tensor '" + std::string(tensor_name) + "' has no synthetic formula");
}

std::vector<tensor_decl> synthetic_tensor_decls(const model_config& m) {
    const std::string who = "model '" + m.name + "': ";
    if (m.name.empty()) throw error("synthetic checkpoint: the model has no name");
    if (m.hidden_size <= 0 || m.intermediate_size <= 0 || m.num_layers <= 0 || m.num_heads <= 0 ||
        m.num_kv_heads <= 0 || m.vocab_size <= 0)
        throw error(who + "hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads and vocab_size must "
                          "all be positive");
    if (m.hidden_size % m.num_heads != 0)
        throw error(who + "hidden_size " + std::to_string(m.hidden_size) + " is not a multiple of num_heads " +
                    std::to_string(m.num_heads));
    if (m.num_heads % m.num_kv_heads != 0)
        throw error(who + "num_heads " + std::to_string(m.num_heads) + " is not a multiple of num_kv_heads " +
                    std::to_string(m.num_kv_heads));

    std::vector<tensor_decl> out;
    const auto add = [&](std::string name, std::vector<std::int64_t> shape) {
        out.push_back(tensor_decl{std::move(name), dtype::f16, std::move(shape)});
    };
    add("model.embed_tokens.weight", {m.vocab_size, m.hidden_size});
    for (std::int64_t l = 0; l < m.num_layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", {m.hidden_size});
        for (auto k : {linear_kind::q_proj, linear_kind::k_proj, linear_kind::v_proj, linear_kind::o_proj}) {
            add(linear_prefix(l, k) + ".weight", {linear_out_features(m, k), linear_in_features(m, k)});
        }
        add(p + "post_attention_layernorm.weight", {m.hidden_size});
        for (auto k : {linear_kind::gate_proj, linear_kind::up_proj, linear_kind::down_proj}) {
            add(linear_prefix(l, k) + ".weight", {linear_out_features(m, k), linear_in_features(m, k)});
        }
    }
    add("model.norm.weight", {m.hidden_size});
    add("lm_head.weight", {m.vocab_size, m.hidden_size});
    return out;
}

}  // namespace qbench
