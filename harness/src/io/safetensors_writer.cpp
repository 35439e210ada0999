#include "qbench/io/safetensors_writer.hpp"

#include "posix_file.hpp"

#include "qbench/common/errors.hpp"
#include "qbench/io/safetensors.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <utility>

namespace qbench {

std::uint64_t tensor_decl::byte_size() const {
    std::uint64_t n = dtype_size(type);
    for (auto d : shape) {
        if (d < 0) throw error("tensor '" + name + "': negative dimension in shape " + shape_to_string(shape));
        if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(d), &n))
            throw error("tensor '" + name + "': shape " + shape_to_string(shape) + " is too large");
    }
    return n;
}

safetensors_stream_writer::safetensors_stream_writer(std::filesystem::path path, std::vector<tensor_decl> tensors,
                                                     const std::map<std::string, std::string>& metadata)
    : m_path(std::move(path)) {
    // Larger elements first, then by name: with the header padded to 8 bytes every tensor starts at a multiple of
    // its element size, so a memory-mapped file can be used in place.
    std::sort(tensors.begin(), tensors.end(), [](const tensor_decl& a, const tensor_decl& b) {
        const auto sa = dtype_size(a.type), sb = dtype_size(b.type);
        return sa != sb ? sa > sb : a.name < b.name;
    });

    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
        auto& md = header["__metadata__"] = nlohmann::ordered_json::object();
        for (const auto& [k, v] : metadata) md[k] = v;
    }
    std::uint64_t offset = 0;
    for (auto& t : tensors) {
        if (t.name == "__metadata__") throw error(m_path.string() + ": '__metadata__' is reserved, not a tensor name");
        if (header.contains(t.name)) throw error(m_path.string() + ": tensor '" + t.name + "' declared twice");
        slot s;
        s.size = t.byte_size();
        s.begin = offset;
        offset += s.size;
        header[t.name] = {{"dtype", std::string(traits_of(t.type).name)},
                          {"shape", t.shape},
                          {"data_offsets", {s.begin, offset}}};
        s.decl = std::move(t);
        m_slots.push_back(std::move(s));
    }
    m_data_bytes = offset;

    std::string text;
    try {
        text = header.dump();
    } catch (const nlohmann::json::exception& e) {  // e.g. a name that is not valid UTF-8
        throw error(m_path.string() + ": cannot encode the header: " + e.what());
    }
    const std::uint64_t a = k_safetensors_header_alignment;
    text.append(static_cast<std::size_t>((a - (8 + text.size()) % a) % a), ' ');
    if (text.size() > k_safetensors_max_header_bytes)
        throw error(m_path.string() + ": header of " + std::to_string(text.size()) + " bytes exceeds the format's limit");
    m_data_start = 8 + text.size();

    m_by_name.resize(m_slots.size());
    for (std::size_t i = 0; i < m_slots.size(); ++i) m_by_name[i] = i;
    std::sort(m_by_name.begin(), m_by_name.end(),
              [&](std::size_t x, std::size_t y) { return m_slots[x].decl.name < m_slots[y].decl.name; });

    m_temp_path = io_detail::temporary_sibling(m_path);
    m_file = std::make_unique<io_detail::posix_file>(io_detail::posix_file::create(m_temp_path));
    try {
        std::vector<std::byte> head(8 + text.size());
        std::uint64_t n = text.size();
        for (std::size_t i = 0; i < 8; ++i) head[i] = static_cast<std::byte>((n >> (8 * i)) & 0xffu);
        std::memcpy(head.data() + 8, text.data(), text.size());
        m_file->write_all(head, 0);
    } catch (...) {
        m_file.reset();
        std::error_code ec;
        std::filesystem::remove(m_temp_path, ec);
        throw;
    }
}

safetensors_stream_writer::~safetensors_stream_writer() {
    if (m_finished) return;
    m_file.reset();
    std::error_code ec;
    std::filesystem::remove(m_temp_path, ec);
}

std::vector<std::string> safetensors_stream_writer::file_order() const {
    std::vector<std::string> out;
    out.reserve(m_slots.size());
    for (const auto& s : m_slots) out.push_back(s.decl.name);
    return out;
}

const safetensors_stream_writer::slot& safetensors_stream_writer::find_slot(std::string_view name) const {
    auto it = std::lower_bound(m_by_name.begin(), m_by_name.end(), name,
                               [&](std::size_t i, std::string_view n) { return m_slots[i].decl.name < n; });
    if (it == m_by_name.end() || m_slots[*it].decl.name != name)
        throw error(m_path.string() + ": tensor '" + std::string(name) + "' was not declared");
    return m_slots[*it];
}

safetensors_stream_writer::slot& safetensors_stream_writer::find_slot(std::string_view name) {
    return const_cast<slot&>(std::as_const(*this).find_slot(name));
}

const tensor_decl& safetensors_stream_writer::decl(std::string_view name) const { return find_slot(name).decl; }

void safetensors_stream_writer::write(std::string_view name, std::span<const std::byte> bytes) {
    slot& s = find_slot(name);
    if (bytes.size() != s.size)
        throw error(m_path.string() + ": tensor '" + s.decl.name + "' needs " + std::to_string(s.size) +
                    " bytes, got " + std::to_string(bytes.size()));
    {
        std::lock_guard lock(m_mutex);
        if (m_finished) throw error(m_path.string() + ": write after finish()");
        if (s.written) throw error(m_path.string() + ": tensor '" + s.decl.name + "' written twice");
        s.written = true;  // claimed before the write so two threads cannot both write it
    }
    try {
        m_file->write_all(bytes, m_data_start + s.begin);
    } catch (...) {
        std::lock_guard lock(m_mutex);
        s.written = false;
        throw;
    }
}

void safetensors_stream_writer::write(std::string_view name, const host_tensor& tensor) {
    const slot& s = find_slot(name);
    if (tensor.type != s.decl.type || tensor.shape != s.decl.shape)
        throw error(m_path.string() + ": tensor '" + s.decl.name + "' was declared " +
                    std::string(traits_of(s.decl.type).name) + " " + shape_to_string(s.decl.shape) + ", got " +
                    std::string(traits_of(tensor.type).name) + " " + shape_to_string(tensor.shape));
    write(name, std::span<const std::byte>(tensor.data));
}

void safetensors_stream_writer::finish() {
    std::lock_guard lock(m_mutex);
    if (m_finished) return;
    for (const auto& s : m_slots) {
        if (!s.written) throw error(m_path.string() + ": tensor '" + s.decl.name + "' was never written");
    }
    // Flushed before the rename, so the name never points at a file whose data is still only in the page cache.
    m_file->sync_data();
    m_file->close();
    if (::rename(m_temp_path.c_str(), m_path.c_str()) != 0)
        throw error(m_path.string() + ": cannot rename " + m_temp_path.string() + " into place: " +
                    io_detail::errno_text());
    io_detail::sync_directory(m_path.has_parent_path() ? m_path.parent_path() : std::filesystem::path("."));
    m_finished = true;
}

void write_safetensors(const std::filesystem::path& path, const std::map<std::string, host_tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    std::vector<tensor_decl> decls;
    decls.reserve(tensors.size());
    for (const auto& [name, t] : tensors) {
        tensor_decl d{name, t.type, t.shape};
        if (d.byte_size() != t.data.size())
            throw error(path.string() + ": tensor '" + name + "' " + std::string(traits_of(t.type).name) + " " +
                        shape_to_string(t.shape) + " needs " + std::to_string(d.byte_size()) + " bytes but holds " +
                        std::to_string(t.data.size()));
        decls.push_back(std::move(d));
    }
    safetensors_stream_writer w(path, std::move(decls), metadata);
    for (const auto& name : w.file_order()) w.write(name, tensors.find(name)->second);
    w.finish();
}

}  // namespace qbench
