#pragma once
// Test helpers of the bnb tests: an in-memory tensor_source, seeded fp16-valued weights and activations with
// LLM-like outlier columns, and a safetensors file written byte by byte from the format's specification (8-byte
// little-endian header length, JSON header with dtype / shape / data_offsets, raw little-endian data), so the
// reader is checked against the spec rather than against our own writer.
#include "qbench/common/counter_rng.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/common/half.hpp"
#include "qbench/common/tensor.hpp"
#include "qbench/io/tensor_source.hpp"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace qbench::bnb::test {

class memory_source : public tensor_source {
public:
    void add(const std::string& name, host_tensor tensor) { m_tensors[name] = std::move(tensor); }
    void erase(const std::string& name) { m_tensors.erase(name); }

    const std::filesystem::path& path() const override { return m_path; }
    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& [name, tensor] : m_tensors) out.push_back(name);
        return out;
    }
    const tensor_info* find(std::string_view name) const override {
        auto it = m_tensors.find(std::string(name));
        if (it == m_tensors.end()) return nullptr;
        auto& info = m_infos[it->first];
        info = {it->first, it->second.type, it->second.shape, it->second.byte_size(), m_path, 0};
        return &info;
    }
    host_tensor read(std::string_view name) const override {
        auto it = m_tensors.find(std::string(name));
        if (it == m_tensors.end()) throw input_error(m_path.string(), "tensor '" + std::string(name) + "'", "missing");
        return it->second;
    }
    const std::map<std::string, std::string>& metadata() const override { return m_metadata; }
    std::uint64_t total_bytes() const override {
        std::uint64_t total = 0;
        for (const auto& [name, tensor] : m_tensors) total += tensor.byte_size();
        return total;
    }

private:
    std::filesystem::path m_path = "memory:bnb-test";
    std::map<std::string, host_tensor> m_tensors;
    std::map<std::string, std::string> m_metadata;
    mutable std::map<std::string, tensor_info> m_infos;  // stable addresses for find()
};

/// fp16-representable weights: normal * scale, seeded.
inline std::vector<float> random_weights(std::uint64_t seed, std::int64_t n, float scale) {
    std::vector<float> v(static_cast<std::size_t>(n));
    const std::uint64_t key = stream_key(seed, hash_string("bnb-test-weights"));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = round_to_half(normal01(key, i) * scale);
    return v;
}

/// fp16-representable activations [m, k]: unit normal, with columns c % outlier_every == 3 scaled to |x| ~ 8-12
/// (LLM.int8()'s systematic outlier features) when outlier_every > 0.
inline std::vector<float> random_activations(std::uint64_t seed, std::int64_t m, std::int64_t k, std::int64_t outlier_every) {
    std::vector<float> v(static_cast<std::size_t>(m * k));
    const std::uint64_t key = stream_key(seed, hash_string("bnb-test-activations"));
    for (std::int64_t r = 0; r < m; ++r)
        for (std::int64_t c = 0; c < k; ++c) {
            const auto i = static_cast<std::size_t>(r * k + c);
            float x = normal01(key, i);
            if (outlier_every > 0 && c % outlier_every == 3) x = (x < 0 ? -1.0f : 1.0f) * (8.0f + 4.0f * uniform01(key, i + 7919));
            v[i] = round_to_half(x);
        }
    return v;
}

inline host_tensor f16_tensor(const std::vector<float>& values, std::vector<std::int64_t> shape) {
    return make_f16_tensor(values, std::move(shape));
}

/// One tensor for write_spec_safetensors: dtype as safetensors spells it and raw little-endian bytes.
struct spec_tensor {
    std::string name;
    std::string dtype;  // "U8", "I8", "F32", "F16"
    std::vector<std::int64_t> shape;
    std::vector<unsigned char> bytes;
};

template <class T>
spec_tensor spec(const std::string& name, const std::string& dtype, std::vector<std::int64_t> shape,
                 const std::vector<T>& values) {
    spec_tensor t{name, dtype, std::move(shape), {}};
    t.bytes.resize(values.size() * sizeof(T));
    if (!values.empty()) std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
    return t;
}

/// Writes a safetensors file exactly as the format specifies it (header JSON written by hand, in the given order).
inline void write_spec_safetensors(const std::filesystem::path& path, const std::vector<spec_tensor>& tensors,
                                   const std::string& metadata_json = "{\"format\":\"pt\"}") {
    std::string header = "{\"__metadata__\":" + metadata_json;
    std::uint64_t offset = 0;
    for (const spec_tensor& t : tensors) {
        header += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
        for (std::size_t i = 0; i < t.shape.size(); ++i) header += (i ? "," : "") + std::to_string(t.shape[i]);
        header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + t.bytes.size()) + "]}";
        offset += t.bytes.size();
    }
    header += "}";
    while (header.size() % 8 != 0) header += ' ';
    std::ofstream out(path, std::ios::binary);
    const std::uint64_t len = header.size();
    unsigned char le[8];
    for (int i = 0; i < 8; ++i) le[i] = static_cast<unsigned char>(len >> (8 * i));
    out.write(reinterpret_cast<const char*>(le), 8);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const spec_tensor& t : tensors) out.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
}

/// A fresh directory under the system temp dir, removed with the object.
class temp_dir {
public:
    explicit temp_dir(const std::string& tag) {
        m_path = std::filesystem::temp_directory_path() /
                 ("qbench-bnb-" + tag + "-" + std::to_string(reinterpret_cast<std::uintptr_t>(this)));
        std::filesystem::remove_all(m_path);
        std::filesystem::create_directories(m_path);
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(m_path, ec);
    }
    const std::filesystem::path& path() const { return m_path; }

private:
    std::filesystem::path m_path;
};

}  // namespace qbench::bnb::test
