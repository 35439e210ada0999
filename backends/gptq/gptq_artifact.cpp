#include "backends/gptq/gptq_artifact.hpp"

#include "backends/gptq/gptq_format.hpp"
#include "qbench/common/counter_rng.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/common/half.hpp"
#include "qbench/common/host_memory.hpp"
#include "qbench/io/hf_config.hpp"
#include "qbench/io/safetensors_writer.hpp"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace qbench::gptq {

namespace {
std::size_t sz(std::int64_t v) { return static_cast<std::size_t>(v); }

constexpr linear_kind k_layer_linears[] = {linear_kind::q_proj,    linear_kind::k_proj,  linear_kind::v_proj,
                                           linear_kind::o_proj,    linear_kind::gate_proj, linear_kind::up_proj,
                                           linear_kind::down_proj};

template <class T>
host_tensor make_tensor(dtype type, std::vector<std::int64_t> shape, const std::vector<T>& values) {
    host_tensor t;
    t.type = type;
    t.shape = std::move(shape);
    t.data.resize(values.size() * sizeof(T));
    if (!values.empty()) std::memcpy(t.data.data(), values.data(), t.data.size());
    return t;
}

void write_text_atomically(const std::filesystem::path& file, const std::string& text) {
    const auto tmp = file.string() + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << text;
        if (!out) throw error("cannot write " + tmp);
    }
    std::filesystem::rename(tmp, file);
}

std::string bool_text(bool b) { return b ? "true" : "false"; }

/// Reads an integer tensor (I32 or I64) as int32 values.
std::vector<std::int32_t> read_int32(const tensor_source& src, const tensor_info& info) {
    const host_tensor t = src.read(info.name);
    std::vector<std::int32_t> out(sz(t.numel()));
    if (t.type == dtype::i32) {
        std::memcpy(out.data(), t.data.data(), out.size() * 4);
    } else if (t.type == dtype::i64) {
        const auto v = t.as<std::int64_t>();
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::int32_t>(v[i]);
    } else {
        throw input_error(src.path().string(), "tensor '" + info.name + "'",
                          "has dtype " + std::string(traits_of(t.type).name) + ", expected I32");
    }
    return out;
}
}  // namespace

nlohmann::json quantize_config::to_json() const {
    nlohmann::ordered_json j;
    j["bits"] = bits;
    j["group_size"] = group_size;
    j["damp_percent"] = damp_percent;
    j["desc_act"] = desc_act;
    j["static_groups"] = static_groups;
    j["sym"] = sym;
    j["true_sequential"] = true_sequential;
    j["model_name_or_path"] = model_name_or_path;
    j["model_file_base_name"] = model_file_base_name;
    j["quant_method"] = quant_method;
    j["checkpoint_format"] = checkpoint_format;
    return j;
}

quantize_config quantize_config::from_json(const nlohmann::json& j, const std::string& file) {
    if (!j.is_object()) throw input_error(file, "", "quantize_config must be a JSON object");
    quantize_config c;
    auto get = [&](const char* key, auto& field) {
        if (!j.contains(key) || j[key].is_null()) return;
        try {
            field = j[key].get<std::decay_t<decltype(field)>>();
        } catch (const nlohmann::json::exception&) {
            throw input_error(file, std::string("key '") + key + "'", "has the wrong type");
        }
    };
    get("bits", c.bits);
    get("group_size", c.group_size);
    get("damp_percent", c.damp_percent);
    get("desc_act", c.desc_act);
    get("static_groups", c.static_groups);
    get("sym", c.sym);
    get("true_sequential", c.true_sequential);
    get("model_name_or_path", c.model_name_or_path);
    get("model_file_base_name", c.model_file_base_name);
    get("quant_method", c.quant_method);
    get("checkpoint_format", c.checkpoint_format);
    if (!is_supported_bits(c.bits)) throw input_error(file, "key 'bits'", "must be 2, 3, 4 or 8");
    if (c.group_size == 0 || c.group_size < -1) throw input_error(file, "key 'group_size'", "must be -1 or positive");
    return c;
}

nlohmann::json artifact_key::to_json() const {
    nlohmann::ordered_json j;
    j["artifact_version"] = k_artifact_version;
    j["model"] = model;
    j["hidden_size"] = shape.hidden_size;
    j["intermediate_size"] = shape.intermediate_size;
    j["num_layers"] = shape.num_layers;
    j["num_heads"] = shape.num_heads;
    j["num_kv_heads"] = shape.num_kv_heads;
    j["vocab_size"] = shape.vocab_size;
    j["bits"] = bits;
    j["group_size"] = options.group_size;
    j["desc_act"] = options.desc_act;
    j["static_groups"] = options.static_groups;
    j["sym"] = options.sym;
    j["damp_percent"] = options.damp_percent;
    j["calibration_samples"] = options.calibration_samples;
    j["calibration_seq_len"] = options.calibration_seq_len;
    j["true_sequential"] = true_sequential;
    j["seed"] = seed;
    return j;
}

std::string artifact_key::hash() const {
    const std::uint64_t h = hash_string(to_json().dump());
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

std::string artifact_key::directory_name() const {
    return model + "-" + std::to_string(bits) + "b-g" + std::to_string(options.group_size) + "-" + hash();
}

std::filesystem::path artifact_directory(const std::filesystem::path& cache_dir, const artifact_key& key) {
    return cache_dir / "gptq" / key.directory_name();
}

bool artifact_complete(const std::filesystem::path& dir) {
    std::error_code ec;
    return std::filesystem::exists(dir / k_artifact_complete_marker, ec);
}

std::vector<std::string> unquantized_tensor_names(const model_config& m) {
    std::vector<std::string> names = {"model.embed_tokens.weight"};
    for (std::int64_t l = 0; l < m.num_layers; ++l) {
        names.push_back("model.layers." + std::to_string(l) + ".input_layernorm.weight");
        names.push_back("model.layers." + std::to_string(l) + ".post_attention_layernorm.weight");
    }
    names.push_back("model.norm.weight");
    names.push_back("lm_head.weight");
    return names;
}

artifact_writer::artifact_writer(const std::filesystem::path& dir, const model_config& model,
                                 const quantize_config& config, const tensor_source& fp16)
    : m_dir(dir), m_model(model), m_config(config), m_fp16(fp16) {
    std::filesystem::create_directories(dir);
    m_config.model_file_base_name = weights_file_name(config.bits, config.group_size);
    m_config.model_file_base_name.resize(m_config.model_file_base_name.size() - std::string(".safetensors").size());
    m_weights = dir / weights_file_name(config.bits, config.group_size);
    std::vector<tensor_decl> decls;
    const std::int64_t bits = config.bits;
    for (std::int64_t l = 0; l < model.num_layers; ++l)
        for (linear_kind k : k_layer_linears) {
            const std::string prefix = linear_prefix(l, k);
            const std::int64_t K = linear_in_features(model, k), N = linear_out_features(model, k);
            const std::int64_t G = num_groups(config.group_size, K);
            decls.push_back({qweight_name(prefix), dtype::i32, {qweight_rows(K, bits), N}});
            decls.push_back({qzeros_name(prefix), dtype::i32, {G, qzeros_cols(N, bits)}});
            decls.push_back({scales_name(prefix), dtype::f16, {G, N}});
            decls.push_back({g_idx_name(prefix), dtype::i32, {K}});
        }
    for (const auto& name : unquantized_tensor_names(model)) {
        const tensor_info& info = fp16.require(name);
        decls.push_back({name, dtype::f16, info.shape});
    }
    const std::map<std::string, std::string> metadata = {
        {"format", "pt"},
        {"quant_method", "gptq"},
        {"bits", std::to_string(config.bits)},
        {"group_size", std::to_string(config.group_size)},
        {"desc_act", bool_text(config.desc_act)},
        {"static_groups", bool_text(config.static_groups)},
        {"sym", bool_text(config.sym)},
        {"qbench_gptq_artifact_version", std::to_string(k_artifact_version)},
    };
    m_writer = std::make_unique<safetensors_stream_writer>(m_weights, std::move(decls), metadata);
}

artifact_writer::~artifact_writer() = default;

void artifact_writer::write_linear(const std::string& prefix, const quantized_linear& q) {
    const packed_linear p = pack(q);
    const std::int64_t K = q.in_features, N = q.out_features, G = q.groups(), bits = q.bits;
    m_writer->write(qweight_name(prefix), make_tensor(dtype::i32, {qweight_rows(K, bits), N}, p.qweight));
    m_writer->write(qzeros_name(prefix), make_tensor(dtype::i32, {G, qzeros_cols(N, bits)}, p.qzeros));
    m_writer->write(scales_name(prefix), make_tensor(dtype::f16, {G, N}, p.scales));
    m_writer->write(g_idx_name(prefix), make_tensor(dtype::i32, {K}, p.g_idx));
    m_bytes += (p.qweight.size() + p.qzeros.size() + p.g_idx.size()) * 4 + p.scales.size() * 2;
}

void artifact_writer::copy_unquantized() {
    for (const auto& name : unquantized_tensor_names(m_model)) {
        const tensor_info& info = m_fp16.require(name);
        host_reservation hold(info.byte_size * 2, "gptq artifact: copy of " + name);
        host_tensor t = m_fp16.read(name);
        if (t.type != dtype::f16) {
            const auto values = to_float_vector(t);
            t = make_f16_tensor(values, t.shape);
        }
        m_bytes += t.byte_size();
        m_writer->write(name, t);
    }
}

void artifact_writer::finish() {
    m_writer->finish();
    write_text_atomically(m_dir / k_quantize_config_file, m_config.to_json().dump(2) + "\n");
    auto hf = nlohmann::ordered_json::parse(hf_config_json(m_model));
    hf["quantization_config"] = m_config.to_json();
    write_text_atomically(m_dir / "config.json", hf.dump(2) + "\n");
}

packed_linear read_packed_linear(const tensor_source& src, const std::string& prefix, std::int64_t K, std::int64_t N,
                                 bool read_qweight) {
    const std::string file = src.path().string();
    const tensor_info& qw = src.require(qweight_name(prefix));
    const tensor_info& qz = src.require(qzeros_name(prefix));
    const tensor_info& sc = src.require(scales_name(prefix));
    const tensor_info& gi = src.require(g_idx_name(prefix));
    auto bad = [&](const tensor_info& t, const std::string& what) {
        return input_error(file, "tensor '" + t.name + "'", what);
    };
    if (qw.type != dtype::i32) throw bad(qw, "has dtype " + std::string(traits_of(qw.type).name) + ", expected I32");
    if (qw.shape.size() != 2 || qw.shape[1] != N) throw bad(qw, "has shape " + shape_to_string(qw.shape) + ", expected [rows, " + std::to_string(N) + "]");
    const std::int64_t runs = ceil_div(K, k_pack_run);
    if (qw.shape[0] % runs != 0 || !is_supported_bits(qw.shape[0] / runs))
        throw bad(qw, "has " + std::to_string(qw.shape[0]) + " rows: not ceil(" + std::to_string(K) + "/32) * bits for bits 2, 3, 4 or 8");
    const std::int64_t bits = qw.shape[0] / runs;
    if (sc.type != dtype::f16 || sc.shape.size() != 2 || sc.shape[1] != N || sc.shape[0] < 1 || sc.shape[0] > K)
        throw bad(sc, "must be F16 [groups, " + std::to_string(N) + "], is " + std::string(traits_of(sc.type).name) + " " + shape_to_string(sc.shape));
    const std::int64_t G = sc.shape[0];
    if (qz.type != dtype::i32 || qz.shape.size() != 2 || qz.shape[0] != G || qz.shape[1] != qzeros_cols(N, bits))
        throw bad(qz, "must be I32 [" + std::to_string(G) + ", " + std::to_string(qzeros_cols(N, bits)) + "], is " +
                          std::string(traits_of(qz.type).name) + " " + shape_to_string(qz.shape));
    if (gi.shape.size() != 1 || gi.shape[0] != K) throw bad(gi, "has shape " + shape_to_string(gi.shape) + ", expected [" + std::to_string(K) + "]");

    packed_linear p;
    p.in_features = K;
    p.out_features = N;
    p.bits = bits;
    p.g_idx = read_int32(src, gi);
    for (std::int64_t k = 0; k < K; ++k)
        if (p.g_idx[sz(k)] < 0 || p.g_idx[sz(k)] >= G)
            throw bad(gi, "entry " + std::to_string(k) + " is " + std::to_string(p.g_idx[sz(k)]) + ", outside [0, " + std::to_string(G) + ")");
    // Group size: the file's own metadata, else what g_idx says (every group but the last has group_size rows).
    p.group_size = -1;
    if (G > 1) {
        const auto it = src.metadata().find("group_size");
        std::int64_t gs = 0;
        if (it != src.metadata().end()) {
            try {
                gs = std::stoll(it->second);
            } catch (const std::exception&) {
                gs = 0;
            }
        }
        if (gs <= 0 || num_groups(gs, K) != G) {
            gs = 0;
            for (auto g : p.g_idx) gs += g == 0;
        }
        if (num_groups(gs, K) != G)
            throw bad(sc, "has " + std::to_string(G) + " groups, which no group size of " + std::to_string(K) + " rows gives");
        p.group_size = gs;
    }
    if (read_qweight) p.qweight = read_int32(src, qw);
    p.qzeros = read_int32(src, qz);
    const host_tensor s = src.read(sc.name);
    p.scales.resize(sz(G * N));
    std::memcpy(p.scales.data(), s.data.data(), p.scales.size() * 2);
    return p;
}

std::optional<quantize_config> read_quantize_config(const std::filesystem::path& dir) {
    const auto file = dir / k_quantize_config_file;
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) return std::nullopt;
    std::ifstream in(file);
    std::stringstream ss;
    ss << in.rdbuf();
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(ss.str());
    } catch (const nlohmann::json::exception& e) {
        throw input_error(file.string(), "", std::string("not valid JSON: ") + e.what());
    }
    return quantize_config::from_json(j, file.string());
}

}  // namespace qbench::gptq
