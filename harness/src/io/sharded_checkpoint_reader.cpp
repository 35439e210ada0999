#include "qbench/io/sharded_checkpoint.hpp"

#include "posix_file.hpp"
#include "strict_json.hpp"

#include "qbench/common/errors.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace qbench {

namespace {
constexpr std::uint64_t k_max_index_bytes = 100'000'000;

std::string tensor_place(const std::string& name) { return "tensor '" + name + "'"; }

// A shard must sit next to its index: no directories, no "..", so an index cannot point reads anywhere else.
bool is_plain_file_name(const std::string& s) {
    return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos && s.find('\0') == std::string::npos;
}
}  // namespace

std::string shard_file_name(std::size_t index, std::size_t count) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", index, count);
    return buf;
}

checkpoint_index read_checkpoint_index(const std::filesystem::path& index_file) {
    const std::string file = index_file.string();
    const std::string text = io_detail::read_text_file(index_file, k_max_index_bytes);
    const nlohmann::json doc =
        io_detail::parse_json_strict(text, file, 0, io_detail::json_place_style::line_column, "key");
    if (!doc.is_object()) throw input_error(file, "line 1, column 1", "index must be a JSON object, found " + io_detail::json_kind(doc));

    checkpoint_index idx;
    if (auto md = doc.find("metadata"); md != doc.end()) {
        if (!md->is_object())
            throw input_error(file, "key 'metadata'", "must be an object, found " + io_detail::json_kind(*md));
        if (auto ts = md->find("total_size"); ts != md->end()) {
            // Some exporters write total_size as a float; accept it when it is a whole, non-negative number.
            if (ts->is_number_unsigned()) {
                idx.total_size = ts->get<std::uint64_t>();
            } else if (ts->is_number_float() && ts->get<double>() >= 0 && ts->get<double>() < 1.8e19 &&
                       std::floor(ts->get<double>()) == ts->get<double>()) {
                idx.total_size = static_cast<std::uint64_t>(ts->get<double>());
            } else {
                throw input_error(file, "key 'metadata.total_size'",
                                  "must be a non-negative integer, found " + io_detail::json_kind(*ts) +
                                      (ts->is_number() ? " (" + ts->dump() + ")" : ""));
            }
        }
    }
    const auto wm = doc.find("weight_map");
    if (wm == doc.end()) throw input_error(file, "key 'weight_map'", "missing");
    if (!wm->is_object())
        throw input_error(file, "key 'weight_map'", "must be an object, found " + io_detail::json_kind(*wm));
    if (wm->empty()) throw input_error(file, "key 'weight_map'", "is empty: the checkpoint has no tensors");
    for (const auto& [name, shard] : wm->items()) {
        if (!shard.is_string())
            throw input_error(file, tensor_place(name),
                              "weight_map value must be a shard file name, found " + io_detail::json_kind(shard));
        const auto& s = shard.get_ref<const std::string&>();
        if (!is_plain_file_name(s))
            throw input_error(file, tensor_place(name),
                              "shard '" + s + "' must be a plain file name in the index's directory");
        idx.weight_map.emplace(name, s);
    }
    return idx;
}

sharded_checkpoint::sharded_checkpoint(std::filesystem::path index_file) : m_path(std::move(index_file)) {
    const checkpoint_index idx = read_checkpoint_index(m_path);
    const std::filesystem::path dir = m_path.parent_path();

    std::map<std::string, std::size_t> shard_number;  // shard file -> position in m_shards
    for (const auto& [name, shard] : idx.weight_map) {
        if (shard_number.count(shard)) continue;
        shard_number.emplace(shard, m_shards.size());
        m_shards.push_back(std::make_unique<safetensors_file>(dir / shard));
    }
    for (const auto& [name, shard] : idx.weight_map) {
        const std::size_t s = shard_number.at(shard);
        const tensor_info* info = m_shards[s]->find(name);
        if (!info)
            throw input_error(m_path.string(), tensor_place(name),
                              "mapped to shard '" + shard + "', which does not contain it");
        m_infos.push_back(*info);
        m_shard.push_back(s);
        m_total_bytes += info->byte_size;
    }
    // Every tensor of every shard must be in the map: one that is not would be invisible to readers that follow
    // the index, and may be a duplicate of a mapped one.
    for (const auto& shard : m_shards) {
        for (const auto& name : shard->names()) {
            auto it = idx.weight_map.find(name);
            if (it == idx.weight_map.end() || it->second != shard->path().filename().string())
                throw input_error(shard->path().string(), tensor_place(name),
                                  "not mapped to this shard by the weight_map of " + m_path.string());
        }
        for (const auto& [k, v] : shard->metadata()) m_metadata.emplace(k, v);
    }
    // weight_map iteration is already sorted by name; m_infos follows it.
}

sharded_checkpoint::~sharded_checkpoint() = default;

std::vector<std::string> sharded_checkpoint::names() const {
    std::vector<std::string> out;
    out.reserve(m_infos.size());
    for (const auto& i : m_infos) out.push_back(i.name);
    return out;
}

const tensor_info* sharded_checkpoint::find(std::string_view name) const {
    auto it = std::lower_bound(m_infos.begin(), m_infos.end(), name,
                               [](const tensor_info& i, std::string_view n) { return i.name < n; });
    return it != m_infos.end() && it->name == name ? &*it : nullptr;
}

const safetensors_file& sharded_checkpoint::shard_of(std::string_view name) const {
    const tensor_info& info = require(name);
    return *m_shards[m_shard[static_cast<std::size_t>(&info - m_infos.data())]];
}

host_tensor sharded_checkpoint::read(std::string_view name) const { return shard_of(name).read(name); }

void sharded_checkpoint::read_into(std::string_view name, std::span<std::byte> out) const {
    shard_of(name).read_into(name, out);
}

}  // namespace qbench
