#include "qbench/io/hf_config.hpp"

#include "posix_file.hpp"
#include "strict_json.hpp"

#include "qbench/common/errors.hpp"

#include <cmath>
#include <limits>

namespace qbench {

namespace {
constexpr std::uint64_t k_max_config_bytes = 10'000'000;
}

std::string hf_config_json(const model_config& m) {
    nlohmann::ordered_json j;
    j["architectures"] = {"LlamaForCausalLM"};
    j["model_type"] = "llama";
    j["_name_or_path"] = m.hf_name.empty() ? m.name : m.hf_name;
    j["hidden_size"] = m.hidden_size;
    j["intermediate_size"] = m.intermediate_size;
    j["num_hidden_layers"] = m.num_layers;
    j["num_attention_heads"] = m.num_heads;
    j["num_key_value_heads"] = m.num_kv_heads;
    j["vocab_size"] = m.vocab_size;
    j["max_position_embeddings"] = m.max_position;
    j["rms_norm_eps"] = m.rms_norm_eps;
    j["rope_theta"] = m.rope_theta;
    j["bos_token_id"] = m.bos_token_id;
    j["eos_token_id"] = m.eos_token_id;
    j["hidden_act"] = "silu";
    j["tie_word_embeddings"] = false;
    j["torch_dtype"] = "float16";
    j["qbench_model"] = m.name;
    return j.dump(2) + "\n";
}

void write_hf_config(const std::filesystem::path& file, const model_config& model) {
    io_detail::write_file_atomic(file, hf_config_json(model));
}

model_config read_hf_config(const std::filesystem::path& given) {
    std::error_code ec;
    const std::filesystem::path path =
        std::filesystem::is_directory(given, ec) ? given / "config.json" : given;
    const std::string file = path.string();
    const std::string text = io_detail::read_text_file(path, k_max_config_bytes);
    const nlohmann::json doc =
        io_detail::parse_json_strict(text, file, 0, io_detail::json_place_style::line_column, "key");
    if (!doc.is_object())
        throw input_error(file, "line 1, column 1", "config must be a JSON object, found " + io_detail::json_kind(doc));

    const auto place = [](const char* key) { return std::string("key '") + key + "'"; };
    const auto integer = [&](const char* key, std::int64_t min, std::int64_t fallback, bool required) {
        auto it = doc.find(key);
        if (it == doc.end() || it->is_null()) {
            if (required) throw input_error(file, place(key), "missing");
            return fallback;
        }
        if (!it->is_number_integer())
            throw input_error(file, place(key), "must be an integer, found " + io_detail::json_kind(*it));
        if (it->is_number_unsigned() &&
            it->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            throw input_error(file, place(key), "is too large");
        const auto v = it->get<std::int64_t>();
        if (v < min) throw input_error(file, place(key), "must be at least " + std::to_string(min) + ", found " + std::to_string(v));
        return v;
    };
    const auto positive_real = [&](const char* key, double fallback) {
        auto it = doc.find(key);
        if (it == doc.end() || it->is_null()) return fallback;
        if (!it->is_number()) throw input_error(file, place(key), "must be a number, found " + io_detail::json_kind(*it));
        const double v = it->get<double>();
        if (!(v > 0) || !std::isfinite(v)) throw input_error(file, place(key), "must be positive, found " + it->dump());
        return v;
    };
    // Token ids: an integer, null (absent), or a list whose first entry is used (Llama-3.1 lists several EOS ids).
    const auto token_id = [&](const char* key, std::int32_t fallback) -> std::int32_t {
        auto it = doc.find(key);
        if (it == doc.end() || it->is_null()) return fallback;
        const nlohmann::json* v = &*it;
        if (v->is_array()) {
            if (v->empty()) return fallback;
            v = &v->front();
        }
        if (!v->is_number_integer())
            throw input_error(file, place(key), "must be an integer token id, found " + io_detail::json_kind(*v));
        const auto id = v->get<std::int64_t>();
        if (id < -1 || id > std::numeric_limits<std::int32_t>::max())
            throw input_error(file, place(key), "token id " + std::to_string(id) + " is out of range");
        return static_cast<std::int32_t>(id);
    };

    if (auto it = doc.find("model_type"); it != doc.end()) {
        if (!it->is_string()) throw input_error(file, place("model_type"), "must be a string");
        const auto& t = it->get_ref<const std::string&>();
        if (t != "llama" && t != "mistral")
            throw unsupported_error(file + ": model_type '" + t + "' is not a Llama-family decoder");
    }
    if (auto it = doc.find("rope_scaling"); it != doc.end() && !it->is_null())
        throw unsupported_error(file + ": rope_scaling " + it->dump() + " is not supported");
    if (auto it = doc.find("tie_word_embeddings"); it != doc.end()) {
        if (!it->is_boolean()) throw input_error(file, place("tie_word_embeddings"), "must be true or false");
        if (it->get<bool>()) throw unsupported_error(file + ": tied embeddings (no lm_head.weight) are not supported");
    }

    model_config m;
    m.hidden_size = integer("hidden_size", 1, 0, true);
    m.intermediate_size = integer("intermediate_size", 1, 0, true);
    m.num_layers = integer("num_hidden_layers", 1, 0, true);
    m.num_heads = integer("num_attention_heads", 1, 0, true);
    m.num_kv_heads = integer("num_key_value_heads", 1, m.num_heads, false);
    m.vocab_size = integer("vocab_size", 1, 0, true);
    m.max_position = integer("max_position_embeddings", 1, m.max_position, false);
    m.rms_norm_eps = positive_real("rms_norm_eps", m.rms_norm_eps);
    m.rope_theta = positive_real("rope_theta", m.rope_theta);
    m.bos_token_id = token_id("bos_token_id", m.bos_token_id);
    m.eos_token_id = token_id("eos_token_id", m.eos_token_id);
    if (m.hidden_size % m.num_heads != 0)
        throw input_error(file, place("num_attention_heads"),
                          std::to_string(m.num_heads) + " does not divide hidden_size " + std::to_string(m.hidden_size));
    if (m.head_dim() % 2 != 0)
        throw input_error(file, place("num_attention_heads"),
                          "head dimension " + std::to_string(m.head_dim()) + " is odd; rotary embeddings need pairs");
    if (m.num_heads % m.num_kv_heads != 0)
        throw input_error(file, place("num_key_value_heads"),
                          std::to_string(m.num_kv_heads) + " does not divide num_attention_heads " +
                              std::to_string(m.num_heads));

    if (auto it = doc.find("qbench_model"); it != doc.end() && it->is_string() && !it->get<std::string>().empty())
        m.name = it->get<std::string>();
    else
        m.name = std::filesystem::absolute(path, ec).parent_path().filename().string();
    if (auto it = doc.find("_name_or_path"); it != doc.end() && it->is_string()) m.hf_name = it->get<std::string>();
    return m;
}

}  // namespace qbench
