#include "backends/bnb/bnb_serialize.hpp"

#include "qbench/common/errors.hpp"
#include "qbench/io/safetensors_writer.hpp"
#include "qbench/io/tensor_source.hpp"

#include <nlohmann/json.hpp>

#include <charconv>
#include <map>
#include <cstring>

namespace qbench::bnb {

namespace {

constexpr std::string_view k_quant_state_key = ".weight.quant_state.bitsandbytes__";

template <class T>
host_tensor make_tensor(dtype type, std::vector<std::int64_t> shape, const T* data, std::size_t count) {
    host_tensor t;
    t.type = type;
    t.shape = std::move(shape);
    t.data.resize(count * sizeof(T));
    if (count) std::memcpy(t.data.data(), data, count * sizeof(T));
    return t;
}

// Python's repr() of a float, near enough for JSON: shortest round trip, and integral values keep a ".0".
std::string python_float(double v) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof(buf), v);
    std::string s(buf, r.ptr);
    if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
    return s;
}

std::string place_of(const tensor_info& info) {
    return "tensor '" + info.name + "' at byte " + std::to_string(info.file_offset);
}

[[noreturn]] void bad(const tensor_info& info, const std::string& message) {
    throw input_error(info.file.string(), place_of(info), message);
}

// Like tensor_source::require(), kept local so this file needs only the virtual interface.
const tensor_info& require_tensor(const tensor_source& source, const std::string& name) {
    const tensor_info* info = source.find(name);
    if (!info) throw input_error(source.path().string(), "tensor '" + name + "'", "missing (bitsandbytes serialization)");
    return *info;
}

std::int64_t product(const std::vector<std::int64_t>& shape) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
}

std::vector<float> read_f32(const tensor_source& source, const tensor_info& info, std::int64_t expected) {
    if (info.type != dtype::f32) bad(info, "expected dtype F32");
    if (product(info.shape) != expected)
        bad(info, "expected " + std::to_string(expected) + " elements, found shape " + shape_to_string(info.shape));
    const host_tensor t = source.read(info.name);
    std::vector<float> out(static_cast<std::size_t>(expected));
    std::memcpy(out.data(), t.data.data(), out.size() * sizeof(float));
    return out;
}

std::vector<std::uint8_t> read_u8(const tensor_source& source, const tensor_info& info, std::int64_t expected) {
    if (info.type != dtype::u8) bad(info, "expected dtype U8");
    if (product(info.shape) != expected)
        bad(info, "expected " + std::to_string(expected) + " elements, found shape " + shape_to_string(info.shape));
    const host_tensor t = source.read(info.name);
    return {reinterpret_cast<const std::uint8_t*>(t.data.data()),
            reinterpret_cast<const std::uint8_t*>(t.data.data()) + expected};
}

// The one quant_state key of a 4-bit linear (nullptr when there is none).
const tensor_info* find_quant_state(const tensor_source& source, const std::string& prefix, quant_type* type) {
    const std::string base = prefix + std::string(k_quant_state_key);
    const tensor_info* nf4 = source.find(base + "nf4");
    const tensor_info* fp4 = source.find(base + "fp4");
    if (nf4 && fp4)
        throw input_error(source.path().string(), "tensor '" + base + "*'",
                          "both bitsandbytes__nf4 and bitsandbytes__fp4 quant states are present; expected exactly one");
    if (type) *type = fp4 ? quant_type::fp4 : quant_type::nf4;
    return nf4 ? nf4 : fp4;
}

std::int64_t json_int(const nlohmann::json& j, const char* key, const tensor_info& info) {
    if (!j.contains(key) || !j[key].is_number_integer()) bad(info, std::string("quant state JSON lacks integer '") + key + "'");
    return j[key].get<std::int64_t>();
}

}  // namespace

std::string quant_state_json(const quant_4bit_weight& w, std::string_view dtype) {
    std::string s = "{\"quant_type\": \"";
    s += quant_type_name(w.type);
    s += "\", \"blocksize\": " + std::to_string(w.blocksize);
    s += ", \"dtype\": \"" + std::string(dtype) + "\"";
    s += ", \"shape\": [" + std::to_string(w.rows) + ", " + std::to_string(w.cols) + "]";
    if (w.nested) {
        s += ", \"nested_blocksize\": " + std::to_string(w.nested_state.blocksize);
        s += ", \"nested_dtype\": \"float32\"";
        s += ", \"nested_offset\": " + python_float(static_cast<double>(w.nested_state.offset));
    }
    s += "}";
    return s;
}

std::vector<named_tensor> state_dict_4bit(const std::string& prefix, const quant_4bit_weight& w, std::string_view dtype) {
    std::vector<named_tensor> out;
    const std::string p = prefix + ".weight";
    out.push_back({p, make_tensor(dtype::u8, {static_cast<std::int64_t>(w.packed.size()), 1}, w.packed.data(),
                                  w.packed.size())});
    if (w.nested) {
        const nested_absmax& s = w.nested_state;
        out.push_back({p + ".absmax", make_tensor(dtype::u8, {static_cast<std::int64_t>(s.codes.size())}, s.codes.data(),
                                                  s.codes.size())});
        out.push_back({p + ".nested_absmax", make_tensor(dtype::f32, {static_cast<std::int64_t>(s.absmax.size())},
                                                         s.absmax.data(), s.absmax.size())});
        out.push_back({p + ".nested_quant_map", make_tensor(dtype::f32, {256}, s.code.data(), s.code.size())});
    } else {
        out.push_back({p + ".absmax", make_tensor(dtype::f32, {static_cast<std::int64_t>(w.absmax.size())},
                                                  w.absmax.data(), w.absmax.size())});
    }
    out.push_back({p + ".quant_map", make_tensor(dtype::f32, {16}, w.code.data(), w.code.size())});
    const std::string json = quant_state_json(w, dtype);
    out.push_back({p + ".quant_state.bitsandbytes__" + std::string(quant_type_name(w.type)),
                   make_tensor(dtype::u8, {static_cast<std::int64_t>(json.size())}, json.data(), json.size())});
    return out;
}

std::vector<named_tensor> state_dict_int8(const std::string& prefix, const int8_weight& w) {
    std::vector<named_tensor> out;
    out.push_back({prefix + ".weight", make_tensor(dtype::i8, {w.rows, w.cols}, w.cb.data(), w.cb.size())});
    out.push_back({prefix + ".SCB", make_tensor(dtype::f32, {w.rows}, w.scb.data(), w.scb.size())});
    const std::uint8_t row_format = 0;
    out.push_back({prefix + ".weight_format", make_tensor(dtype::u8, {}, &row_format, 1)});
    return out;
}

void write_state_dict(const std::filesystem::path& path, const std::vector<named_tensor>& entries) {
    std::map<std::string, host_tensor> tensors;
    for (const named_tensor& e : entries)
        if (!tensors.emplace(e.name, e.tensor).second) throw error("bnb state dict: tensor '" + e.name + "' repeats");
    write_safetensors(path, tensors, {{"format", "pt"}});
}

bool has_prequantized_4bit(const tensor_source& source, const std::string& prefix) {
    return find_quant_state(source, prefix, nullptr) != nullptr;
}

bool has_prequantized_int8(const tensor_source& source, const std::string& prefix) {
    return source.contains(prefix + ".SCB");
}

quant_4bit_weight read_4bit(const tensor_source& source, const std::string& prefix) {
    quant_type key_type = quant_type::nf4;
    const tensor_info* qs = find_quant_state(source, prefix, &key_type);
    if (!qs)
        throw input_error(source.path().string(), "tensor '" + prefix + std::string(k_quant_state_key) + "nf4'",
                          "no bitsandbytes 4-bit quant state for this linear");
    if (qs->type != dtype::u8) bad(*qs, "expected dtype U8 (UTF-8 JSON bytes)");
    const host_tensor qs_bytes = source.read(qs->name);
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(qs_bytes.data.data()), qs_bytes.data.size()));
    } catch (const nlohmann::json::exception& e) {
        bad(*qs, std::string("quant state is not valid JSON: ") + e.what());
    }
    if (!j.is_object()) bad(*qs, "quant state JSON is not an object");

    quant_4bit_weight w;
    if (!j.contains("quant_type") || !j["quant_type"].is_string()) bad(*qs, "quant state JSON lacks 'quant_type'");
    const std::string qt = j["quant_type"].get<std::string>();
    if (qt != "nf4" && qt != "fp4") bad(*qs, "quant_type '" + qt + "' is not nf4 or fp4");
    w.type = qt == "nf4" ? quant_type::nf4 : quant_type::fp4;
    if (w.type != key_type) bad(*qs, "quant_type '" + qt + "' does not match the key's suffix");
    w.blocksize = json_int(j, "blocksize", *qs);
    if (!valid_blocksize(w.blocksize))
        bad(*qs, "blocksize " + std::to_string(w.blocksize) + " is not a power of two in [32, 4096]");
    if (!j.contains("shape") || !j["shape"].is_array() || j["shape"].size() != 2 || !j["shape"][0].is_number_integer() ||
        !j["shape"][1].is_number_integer())
        bad(*qs, "quant state 'shape' must be [out_features, in_features]");
    w.rows = j["shape"][0].get<std::int64_t>();
    w.cols = j["shape"][1].get<std::int64_t>();
    if (w.rows <= 0 || w.cols <= 0) bad(*qs, "quant state 'shape' has a non-positive dimension");
    w.nested = j.contains("nested_blocksize") || j.contains("nested_offset");

    const std::string p = prefix + ".weight";
    const tensor_info& packed_info = require_tensor(source, p);
    // quant_storage may reinterpret the packed bytes as another dtype: only the byte count matters.
    const auto packed_bytes = static_cast<std::uint64_t>((w.numel() + 1) / 2);
    if (packed_info.byte_size != packed_bytes)
        bad(packed_info, "expected " + std::to_string(packed_bytes) + " bytes of packed 4-bit weights for shape [" +
                             std::to_string(w.rows) + ", " + std::to_string(w.cols) + "], found " +
                             std::to_string(packed_info.byte_size));
    const host_tensor packed = source.read(p);
    w.packed.assign(reinterpret_cast<const std::uint8_t*>(packed.data.data()),
                    reinterpret_cast<const std::uint8_t*>(packed.data.data()) + packed_bytes);

    const tensor_info& qmap_info = require_tensor(source, p + ".quant_map");
    const std::vector<float> qmap = read_f32(source, qmap_info, 16);
    std::copy(qmap.begin(), qmap.end(), w.code.begin());

    const tensor_info& absmax_info = require_tensor(source, p + ".absmax");
    if (!w.nested) {
        w.absmax = read_f32(source, absmax_info, w.blocks());
        return w;
    }
    nested_absmax& s = w.nested_state;
    s.blocksize = json_int(j, "nested_blocksize", *qs);
    if (s.blocksize <= 0) bad(*qs, "nested_blocksize must be positive");
    if (!j.contains("nested_offset") || !j["nested_offset"].is_number()) bad(*qs, "quant state JSON lacks 'nested_offset'");
    s.offset = j["nested_offset"].get<float>();
    if (j.contains("nested_dtype") && j["nested_dtype"] != "float32")
        bad(*qs, "nested_dtype must be float32");
    s.codes = read_u8(source, absmax_info, w.blocks());
    s.absmax = read_f32(source, require_tensor(source, p + ".nested_absmax"), (w.blocks() + s.blocksize - 1) / s.blocksize);
    const std::vector<float> nmap = read_f32(source, require_tensor(source, p + ".nested_quant_map"), 256);
    std::copy(nmap.begin(), nmap.end(), s.code.begin());
    return w;
}

int8_weight read_int8(const tensor_source& source, const std::string& prefix) {
    const tensor_info& cb_info = require_tensor(source, prefix + ".weight");
    const tensor_info& scb_info = require_tensor(source, prefix + ".SCB");
    if (cb_info.type != dtype::i8) bad(cb_info, "expected dtype I8 (LLM.int8() weights)");
    if (cb_info.shape.size() != 2) bad(cb_info, "expected a 2-D [out_features, in_features] tensor");
    if (const tensor_info* fmt = source.find(prefix + ".weight_format")) {
        if (product(fmt->shape) != 1 || (fmt->type != dtype::u8 && fmt->type != dtype::i64 && fmt->type != dtype::i32))
            bad(*fmt, "weight_format must be one integer");
        const host_tensor t = source.read(fmt->name);
        std::int64_t v = 0;
        if (fmt->type == dtype::u8) v = static_cast<std::int64_t>(std::to_integer<std::uint8_t>(t.data[0]));
        else if (fmt->type == dtype::i32) v = t.as<std::int32_t>()[0];
        else v = t.as<std::int64_t>()[0];
        if (v != 0)
            bad(*fmt, "weight_format " + std::to_string(v) +
                          " (col32 / col_turing / col_ampere) is not supported; only the row layout (0) loads");
    }
    int8_weight w;
    w.rows = cb_info.shape[0];
    w.cols = cb_info.shape[1];
    const host_tensor cb = source.read(cb_info.name);
    w.cb.resize(static_cast<std::size_t>(w.rows * w.cols));
    std::memcpy(w.cb.data(), cb.data.data(), w.cb.size());
    w.scb = read_f32(source, scb_info, w.rows);
    return w;
}

}  // namespace qbench::bnb
