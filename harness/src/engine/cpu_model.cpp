#include "qbench/engine/cpu_model.hpp"

#include "qbench/backend/backend.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/common/half.hpp"
#include "qbench/io/tensor_source.hpp"

#include <string>

namespace qbench {

const cpu_linear& cpu_layer::linear(linear_kind kind) const {
    const std::unique_ptr<cpu_linear>* slot = nullptr;
    switch (kind) {
    case linear_kind::q_proj: slot = &q_proj; break;
    case linear_kind::k_proj: slot = &k_proj; break;
    case linear_kind::v_proj: slot = &v_proj; break;
    case linear_kind::o_proj: slot = &o_proj; break;
    case linear_kind::gate_proj: slot = &gate_proj; break;
    case linear_kind::up_proj: slot = &up_proj; break;
    case linear_kind::down_proj: slot = &down_proj; break;
    default: throw error("cpu_layer::linear: not a decoder-layer linear");
    }
    if (!*slot) throw error(std::string("cpu_layer::linear: ") + linear_module_path(kind) + " is not loaded");
    return **slot;
}

std::uint64_t cpu_model::weight_bytes() const {
    std::uint64_t bytes = (embed.size() + final_norm.size()) * 2u;
    for (const cpu_layer& layer : layers) {
        bytes += (layer.input_norm.size() + layer.post_norm.size()) * 2u;
        for (auto kind : {linear_kind::q_proj, linear_kind::k_proj, linear_kind::v_proj, linear_kind::o_proj,
                          linear_kind::gate_proj, linear_kind::up_proj, linear_kind::down_proj})
            bytes += layer.linear(kind).weight_bytes();
    }
    if (lm_head) bytes += lm_head->weight_bytes();
    return bytes;
}

void validate_model_config(const model_config& c) {
    auto fail = [&](const std::string& message) { throw input_error("model '" + c.name + "'", "", message); };
    if (c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 ||
        c.num_kv_heads <= 0 || c.vocab_size <= 0)
        fail("hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads and vocab_size must be positive");
    if (c.hidden_size % c.num_heads != 0)
        fail("hidden_size " + std::to_string(c.hidden_size) + " is not a multiple of num_heads " +
             std::to_string(c.num_heads));
    if (c.head_dim() % 2 != 0) fail("head_dim " + std::to_string(c.head_dim()) + " must be even (RoPE pairs)");
    if (c.num_heads % c.num_kv_heads != 0)
        fail("num_heads " + std::to_string(c.num_heads) + " is not a multiple of num_kv_heads " +
             std::to_string(c.num_kv_heads));
    if (!(c.rms_norm_eps > 0) || !(c.rope_theta > 0)) fail("rms_norm_eps and rope_theta must be positive");
}

namespace {

// Reads a non-linear tensor (embedding, norm) of an exact shape as fp16 values.
std::vector<float> read_fp16_values(const tensor_source& source, const std::string& name,
                                    const std::vector<std::int64_t>& shape) {
    const tensor_info* info = source.find(name);
    const std::string file = source.path().string();
    const std::string place = "tensor '" + name + "'";
    if (!info) throw input_error(file, place, "missing from the checkpoint");
    if (info->shape != shape)
        throw input_error(file, place, "has shape " + shape_to_string(info->shape) + ", expected " +
                                           shape_to_string(shape));
    const host_tensor tensor = source.read(name);
    if (tensor.shape != shape)
        throw input_error(file, place, "read with shape " + shape_to_string(tensor.shape) + ", expected " +
                                           shape_to_string(shape));
    if (tensor.type != dtype::f16 && tensor.type != dtype::bf16 && tensor.type != dtype::f32 &&
        tensor.type != dtype::f64)
        throw input_error(file, place, "has dtype " + std::string(traits_of(tensor.type).name) +
                                           ", expected a floating type (F16)");
    std::vector<float> values = to_float_vector(tensor);
    for (float& v : values) v = round_to_half(v);
    return values;
}

std::unique_ptr<cpu_linear> load_linear(const model_config& config, const tensor_source& source,
                                        const backend& backend, const cell_spec& cell, std::int64_t layer,
                                        linear_kind kind) {
    const linear_request request{source,
                                 linear_prefix(layer, kind),
                                 kind,
                                 linear_in_features(config, kind),
                                 linear_out_features(config, kind),
                                 cell};
    return backend.load_cpu_linear(request);
}

}  // namespace

cpu_model load_cpu_model(const model_config& config, const tensor_source& source, const backend& backend,
                         const cell_spec& cell) {
    validate_model_config(config);
    const std::int64_t H = config.hidden_size;
    cpu_model model;
    model.config = config;
    model.embed = read_fp16_values(source, "model.embed_tokens.weight", {config.vocab_size, H});
    model.layers.resize(static_cast<std::size_t>(config.num_layers));
    for (std::int64_t i = 0; i < config.num_layers; ++i) {
        cpu_layer& layer = model.layers[i];
        const std::string base = "model.layers." + std::to_string(i) + ".";
        layer.input_norm = read_fp16_values(source, base + "input_layernorm.weight", {H});
        layer.post_norm = read_fp16_values(source, base + "post_attention_layernorm.weight", {H});
        layer.q_proj = load_linear(config, source, backend, cell, i, linear_kind::q_proj);
        layer.k_proj = load_linear(config, source, backend, cell, i, linear_kind::k_proj);
        layer.v_proj = load_linear(config, source, backend, cell, i, linear_kind::v_proj);
        layer.o_proj = load_linear(config, source, backend, cell, i, linear_kind::o_proj);
        layer.gate_proj = load_linear(config, source, backend, cell, i, linear_kind::gate_proj);
        layer.up_proj = load_linear(config, source, backend, cell, i, linear_kind::up_proj);
        layer.down_proj = load_linear(config, source, backend, cell, i, linear_kind::down_proj);
    }
    model.final_norm = read_fp16_values(source, "model.norm.weight", {H});
    model.lm_head = load_linear(config, source, backend, cell, 0, linear_kind::lm_head);
    return model;
}

}  // namespace qbench
