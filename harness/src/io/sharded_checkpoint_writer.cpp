#include "qbench/io/sharded_checkpoint.hpp"

#include "posix_file.hpp"

#include "qbench/common/errors.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

namespace qbench {

namespace {

// "a.2.b" < "a.10.b": runs of digits compare by value, so layers come out in model order.
bool natural_less(std::string_view a, std::string_view b) {
    std::size_t i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
        const bool da = std::isdigit(static_cast<unsigned char>(a[i])) != 0;
        const bool db = std::isdigit(static_cast<unsigned char>(b[j])) != 0;
        if (da && db) {
            std::size_t ie = i, je = j;
            while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
            while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
            // Compare by value without converting (runs may exceed 64 bits): strip leading zeros, then length.
            std::size_t is = i, js = j;
            while (is + 1 < ie && a[is] == '0') ++is;
            while (js + 1 < je && b[js] == '0') ++js;
            const auto ra = a.substr(is, ie - is), rb = b.substr(js, je - js);
            if (ra.size() != rb.size()) return ra.size() < rb.size();
            if (ra != rb) return ra < rb;
            i = ie;
            j = je;
        } else {
            if (a[i] != b[j]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]);
            ++i;
            ++j;
        }
    }
    if ((a.size() - i) != (b.size() - j)) return (a.size() - i) < (b.size() - j);
    return a < b;  // equal by value ("01" vs "1"): any strict, consistent order
}

}  // namespace

std::vector<std::vector<std::size_t>> plan_shards(std::span<const tensor_decl> tensors, std::uint64_t max_shard_bytes) {
    if (max_shard_bytes == 0) throw error("plan_shards: max_shard_bytes must be positive");
    std::vector<std::vector<std::size_t>> shards;
    std::uint64_t current = 0;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
        const std::uint64_t size = tensors[i].byte_size();
        if (shards.empty() || (!shards.back().empty() && current + size > max_shard_bytes)) {
            shards.emplace_back();
            current = 0;
        }
        shards.back().push_back(i);
        current += size;
    }
    return shards;
}

sharded_stream_writer::sharded_stream_writer(std::filesystem::path dir, std::vector<tensor_decl> tensors,
                                             const std::map<std::string, std::string>& metadata,
                                             std::uint64_t max_shard_bytes)
    : m_dir(std::move(dir)) {
    const auto plan = plan_shards(tensors, max_shard_bytes);
    const std::size_t count = std::max<std::size_t>(plan.size(), 1);
    for (std::size_t s = 0; s < count; ++s) {
        std::vector<tensor_decl> part;
        if (s < plan.size()) {
            for (std::size_t i : plan[s]) {
                if (!m_shard_of.emplace(tensors[i].name, s).second)
                    throw error(m_dir.string() + ": tensor '" + tensors[i].name + "' declared twice");
                m_data_bytes += tensors[i].byte_size();
                part.push_back(std::move(tensors[i]));
            }
        }
        m_shard_files.push_back(count == 1 ? std::string(k_single_checkpoint_file) : shard_file_name(s + 1, count));
        m_shards.push_back(
            std::make_unique<safetensors_stream_writer>(m_dir / m_shard_files.back(), std::move(part), metadata));
    }
}

sharded_stream_writer::~sharded_stream_writer() = default;

std::vector<std::string> sharded_stream_writer::file_order() const {
    std::vector<std::string> out;
    for (const auto& w : m_shards) {
        auto part = w->file_order();
        out.insert(out.end(), part.begin(), part.end());
    }
    return out;
}

safetensors_stream_writer& sharded_stream_writer::writer_of(std::string_view name) const {
    auto it = m_shard_of.find(name);
    if (it == m_shard_of.end()) throw error(m_dir.string() + ": tensor '" + std::string(name) + "' was not declared");
    return *m_shards[it->second];
}

const tensor_decl& sharded_stream_writer::decl(std::string_view name) const { return writer_of(name).decl(name); }

void sharded_stream_writer::write(std::string_view name, std::span<const std::byte> bytes) {
    writer_of(name).write(name, bytes);
}

void sharded_stream_writer::write(std::string_view name, const host_tensor& tensor) {
    writer_of(name).write(name, tensor);
}

std::filesystem::path sharded_stream_writer::finish() {
    for (auto& w : m_shards) w->finish();
    if (m_shards.size() == 1) {
        // An index left by an earlier sharded write would win over the new file in open_checkpoint().
        std::error_code ec;
        std::filesystem::remove(m_dir / k_checkpoint_index_file, ec);
        return m_dir / k_single_checkpoint_file;
    }
    nlohmann::json index;
    index["metadata"]["total_size"] = m_data_bytes;
    auto& map = index["weight_map"] = nlohmann::json::object();
    for (const auto& [name, shard] : m_shard_of) map[name] = m_shard_files[shard];
    const auto path = m_dir / k_checkpoint_index_file;
    // The index goes last: until it exists, the directory does not look like a sharded checkpoint.
    io_detail::write_file_atomic(path, index.dump(2) + "\n");
    return path;
}

std::filesystem::path write_sharded_checkpoint(const std::filesystem::path& dir,
                                               const std::map<std::string, host_tensor>& tensors,
                                               const std::map<std::string, std::string>& metadata,
                                               std::uint64_t max_shard_bytes) {
    std::vector<tensor_decl> decls;
    for (const auto& [name, t] : tensors) {
        tensor_decl d{name, t.type, t.shape};
        if (d.byte_size() != t.data.size())
            throw error(dir.string() + ": tensor '" + name + "' " + shape_to_string(t.shape) + " needs " +
                        std::to_string(d.byte_size()) + " bytes but holds " + std::to_string(t.data.size()));
        decls.push_back(std::move(d));
    }
    std::stable_sort(decls.begin(), decls.end(),
                     [](const tensor_decl& a, const tensor_decl& b) { return natural_less(a.name, b.name); });
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw error(dir.string() + ": cannot create directory: " + ec.message());
    sharded_stream_writer w(dir, std::move(decls), metadata, max_shard_bytes);
    for (const auto& name : w.file_order()) w.write(name, tensors.find(name)->second);
    return w.finish();
}

}  // namespace qbench
