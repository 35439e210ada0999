#include "qbench/common/errors.hpp"
#include "qbench/io/synthetic_checkpoint.hpp"

#include <algorithm>

namespace qbench {

namespace {

// Generates tensors on read(); holds only their descriptions.
class synthetic_source final : public tensor_source {
public:
    synthetic_source(const model_config& model, std::uint64_t seed, unsigned threads)
        : m_model(model.name), m_seed(seed), m_threads(threads),
          m_path("synthetic:" + model.name + "-seed" + std::to_string(seed)) {
        for (auto& d : synthetic_tensor_decls(model)) {
            const std::uint64_t bytes = d.byte_size();
            m_total += bytes;
            m_infos.push_back(tensor_info{std::move(d.name), d.type, std::move(d.shape), bytes, {}, 0});
        }
        std::sort(m_infos.begin(), m_infos.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
        m_metadata = {{"format", "pt"}, {"qbench_synthetic", "1"}, {"model", model.name}, {"seed", std::to_string(seed)}};
    }

    const std::filesystem::path& path() const override { return m_path; }
    std::vector<std::string> names() const override {
        std::vector<std::string> out;
        for (const auto& i : m_infos) out.push_back(i.name);
        return out;
    }
    const tensor_info* find(std::string_view name) const override {
        auto it = std::lower_bound(m_infos.begin(), m_infos.end(), name,
                                   [](const tensor_info& i, std::string_view n) { return i.name < n; });
        return it != m_infos.end() && it->name == name ? &*it : nullptr;
    }
    host_tensor read(std::string_view name) const override {
        const tensor_info& info = require(name);
        host_tensor t;
        t.type = info.type;
        t.shape = info.shape;
        t.data.resize(static_cast<std::size_t>(info.byte_size));
        read_into(name, t.data);
        return t;
    }
    void read_into(std::string_view name, std::span<std::byte> out) const override {
        const tensor_info& info = require(name);
        if (out.size() != info.byte_size)
            throw error("read_into: tensor '" + info.name + "' has " + std::to_string(info.byte_size) +
                        " bytes but the buffer has " + std::to_string(out.size()));
        // A byte buffer from a vector or a pinned allocation is at least 2-byte aligned; check rather than assume.
        if (reinterpret_cast<std::uintptr_t>(out.data()) % alignof(std::uint16_t) != 0)
            throw error("read_into: buffer for tensor '" + info.name + "' is not 2-byte aligned");
        generate_synthetic_tensor(m_model, info.name, info.shape, m_seed,
                                  {reinterpret_cast<std::uint16_t*>(out.data()), out.size() / 2}, m_threads);
    }
    const std::map<std::string, std::string>& metadata() const override { return m_metadata; }
    std::uint64_t total_bytes() const override { return m_total; }

private:
    std::string m_model;
    std::uint64_t m_seed;
    unsigned m_threads;
    std::filesystem::path m_path;
    std::vector<tensor_info> m_infos;
    std::map<std::string, std::string> m_metadata;
    std::uint64_t m_total = 0;
};

}  // namespace

std::unique_ptr<tensor_source> make_synthetic_source(const model_config& model, std::uint64_t seed, unsigned threads) {
    return std::make_unique<synthetic_source>(model, seed, threads);
}

}  // namespace qbench
