#include "qbench/engine/model_config.hpp"

#include <stdexcept>

namespace qbench {

const char* linear_module_path(linear_kind k) {
    switch (k) {
    case linear_kind::q_proj: return "self_attn.q_proj";
    case linear_kind::k_proj: return "self_attn.k_proj";
    case linear_kind::v_proj: return "self_attn.v_proj";
    case linear_kind::o_proj: return "self_attn.o_proj";
    case linear_kind::gate_proj: return "mlp.gate_proj";
    case linear_kind::up_proj: return "mlp.up_proj";
    case linear_kind::down_proj: return "mlp.down_proj";
    case linear_kind::lm_head: return "lm_head";
    case linear_kind::count_: break;
    }
    throw std::invalid_argument("linear_module_path: bad linear_kind");
}

std::string linear_prefix(std::int64_t layer, linear_kind k) {
    if (k == linear_kind::lm_head) return "lm_head";
    return "model.layers." + std::to_string(layer) + "." + linear_module_path(k);
}

std::int64_t linear_out_features(const model_config& m, linear_kind k) {
    switch (k) {
    case linear_kind::q_proj: return m.q_size();
    case linear_kind::k_proj:
    case linear_kind::v_proj: return m.kv_size();
    case linear_kind::o_proj: return m.hidden_size;
    case linear_kind::gate_proj:
    case linear_kind::up_proj: return m.intermediate_size;
    case linear_kind::down_proj: return m.hidden_size;
    case linear_kind::lm_head: return m.vocab_size;
    case linear_kind::count_: break;
    }
    throw std::invalid_argument("linear_out_features: bad linear_kind");
}

std::int64_t linear_in_features(const model_config& m, linear_kind k) {
    switch (k) {
    case linear_kind::o_proj: return m.q_size();
    case linear_kind::down_proj: return m.intermediate_size;
    default: return m.hidden_size;
    }
}

}  // namespace qbench
