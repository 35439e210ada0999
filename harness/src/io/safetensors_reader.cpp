#include "qbench/io/safetensors.hpp"

#include "posix_file.hpp"
#include "strict_json.hpp"

#include "qbench/common/errors.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <string_view>
#include <tuple>

namespace qbench {

namespace {

using nlohmann::json;
using io_detail::json_kind;

// safetensors dtypes that exist in the format but have no qbench::dtype (sub-byte or exotic floats, complex): a
// clearer message than "unknown" for a file that is valid but beyond what the harness computes with.
constexpr std::array<std::string_view, 7> k_known_unsupported{"F4",          "F6_E2M3",     "F6_E3M2", "F8_E8M0",
                                                             "F8_E4M3FNUZ", "F8_E5M2FNUZ", "C64"};

std::uint64_t read_u64_le(std::span<const std::byte> b) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint64_t>(b[static_cast<std::size_t>(i)]);
    return v;
}

std::string tensor_place(const std::string& name) { return "tensor '" + name + "'"; }

std::string range_text(std::uint64_t begin, std::uint64_t end) {
    return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

// Reads a non-negative JSON integer; `what` names it in messages.
std::uint64_t non_negative_integer(const json& v, const std::string& file, const std::string& place,
                                   const std::string& what) {
    if (v.is_number_unsigned()) return v.get<std::uint64_t>();
    if (v.is_number_integer()) {
        const auto s = v.get<std::int64_t>();
        if (s < 0) throw input_error(file, place, what + " is negative (" + std::to_string(s) + ")");
        return static_cast<std::uint64_t>(s);
    }
    throw input_error(file, place, what + " must be a non-negative integer, found " + json_kind(v) +
                                       (v.is_number_float() ? " (" + v.dump() + ")" : ""));
}

// Everything about one tensor entry that can be checked without looking at the others.
safetensors_entry parse_entry(const std::string& name, const json& v, const std::string& file,
                              std::uint64_t data_start, std::uint64_t data_size) {
    const std::string place = tensor_place(name);
    if (!v.is_object())
        throw input_error(file, place, "entry must be an object {dtype, shape, data_offsets}, found " + json_kind(v));
    for (const auto& [key, unused] : v.items()) {
        if (key != "dtype" && key != "shape" && key != "data_offsets")
            throw input_error(file, place, "unknown key '" + key + "' (an entry has dtype, shape, data_offsets)");
    }
    for (const char* key : {"dtype", "shape", "data_offsets"}) {
        if (!v.contains(key)) throw input_error(file, place, std::string("missing '") + key + "'");
    }

    safetensors_entry e;
    e.name = name;

    const json& dt = v["dtype"];
    if (!dt.is_string()) throw input_error(file, place, "dtype must be a string, found " + json_kind(dt));
    const auto& dt_name = dt.get_ref<const std::string&>();
    if (auto parsed = parse_dtype(dt_name)) {
        e.type = *parsed;
    } else if (std::find(k_known_unsupported.begin(), k_known_unsupported.end(), dt_name) !=
               k_known_unsupported.end()) {
        throw input_error(file, place, "dtype '" + dt_name + "' is valid safetensors but not supported by qbench");
    } else {
        throw input_error(file, place, "unknown dtype '" + dt_name + "'");
    }

    const json& shape = v["shape"];
    if (!shape.is_array()) throw input_error(file, place, "shape must be an array, found " + json_kind(shape));
    // numel and the byte count are computed in 64 bits with overflow checks: a hostile shape like
    // [2^32, 2^32, 16] must be an error, not a small wrapped-around size that happens to match the offsets. The
    // running product must stay within int64 (host_tensor::numel multiplies in that order and type), so even a
    // shape with a later 0 is refused once its prefix overflows, as the reference reader does.
    constexpr auto k_max_numel = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    std::uint64_t numel = 1;
    for (std::size_t i = 0; i < shape.size(); ++i) {
        const std::uint64_t d =
            non_negative_integer(shape[i], file, place, "shape[" + std::to_string(i) + "]");
        if (d > k_max_numel)
            throw input_error(file, place, "shape[" + std::to_string(i) + "] = " + std::to_string(d) + " is too large");
        e.shape.push_back(static_cast<std::int64_t>(d));
        if (__builtin_mul_overflow(numel, d, &numel) || numel > k_max_numel)
            throw input_error(file, place, "shape " + shape.dump() + " has more than 2^63 elements");
    }
    std::uint64_t need = 0;
    if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(dtype_size(e.type)), &need))
        throw input_error(file, place, "shape " + shape_to_string(e.shape) + " of " + dt_name + " needs more than 2^64 bytes");

    const json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2)
        throw input_error(file, place, "data_offsets must be an array [begin, end], found " +
                                           (off.is_array() ? "an array of " + std::to_string(off.size()) + " values"
                                                           : json_kind(off)));
    e.begin = non_negative_integer(off[0], file, place, "data_offsets begin");
    e.end = non_negative_integer(off[1], file, place, "data_offsets end");
    if (e.end < e.begin)
        throw input_error(file, place, "data_offsets " + range_text(e.begin, e.end) + " end before they begin");
    if (e.end - e.begin != need)
        throw input_error(file, place,
                          "dtype " + dt_name + " shape " + shape_to_string(e.shape) + " needs " + std::to_string(need) +
                              " bytes but data_offsets " + range_text(e.begin, e.end) + " hold " +
                              std::to_string(e.end - e.begin));
    if (e.end > data_size) {
        // Absolute offsets are only meaningful (and overflow-free) when begin is inside the buffer.
        const std::string at = e.begin <= data_size ? " at byte " + std::to_string(data_start + e.begin) : "";
        throw input_error(file, place + at,
                          "data_offsets " + range_text(e.begin, e.end) + " reach past the end of the data buffer (" +
                              std::to_string(data_size) + " bytes from byte " + std::to_string(data_start) +
                              "); truncated file?");
    }
    return e;
}

}  // namespace

safetensors_header parse_safetensors_header(std::span<const std::byte> bytes, std::uint64_t file_size,
                                            const std::string& file) {
    if (bytes.size() > file_size) bytes = bytes.first(static_cast<std::size_t>(file_size));
    if (file_size < 8)
        throw input_error(file, "byte 0",
                          "file is " + std::to_string(file_size) +
                              " bytes, too short for the 8-byte header size (not a safetensors file, or truncated)");
    if (bytes.size() < 8) throw input_error(file, "byte 0", "the 8-byte header size was not read");

    safetensors_header h;
    const std::uint64_t n = read_u64_le(bytes.first(8));
    if (n > k_safetensors_max_header_bytes)
        throw input_error(file, "byte 0",
                          "header size " + std::to_string(n) + " exceeds the limit of " +
                              std::to_string(k_safetensors_max_header_bytes) +
                              " bytes (not a safetensors file, or corrupt)");
    if (n > file_size - 8)
        throw input_error(file, "byte 0",
                          "header size " + std::to_string(n) + " runs past the end of the file (" +
                              std::to_string(file_size) + " bytes); truncated file?");
    if (bytes.size() - 8 < n)
        throw input_error(file, "byte " + std::to_string(bytes.size()),
                          "only " + std::to_string(bytes.size() - 8) + " of the " + std::to_string(n) +
                              " header bytes were read");
    h.header_bytes = n;
    const std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), static_cast<std::size_t>(n));
    if (text.empty()) throw input_error(file, "byte 8", "header is empty; it must be a JSON object starting with '{'");
    if (text.front() != '{')
        throw input_error(file, "byte 8", "header must be a JSON object starting with '{'");

    const json doc = io_detail::parse_json_strict(text, file, 8, io_detail::json_place_style::file_byte, "tensor");
    if (!doc.is_object()) throw input_error(file, "byte 8", "header is " + json_kind(doc) + ", not an object");

    const std::uint64_t data_start = 8 + n;
    const std::uint64_t data_size = file_size - data_start;
    for (const auto& [key, value] : doc.items()) {
        if (key == "__metadata__") {
            if (!value.is_object())
                throw input_error(file, "__metadata__", "must be an object of strings, found " + json_kind(value));
            for (const auto& [mk, mv] : value.items()) {
                if (!mv.is_string())
                    throw input_error(file, "__metadata__ key '" + mk + "'",
                                      "metadata values must be strings, found " + json_kind(mv));
                h.metadata.emplace(mk, mv.get<std::string>());
            }
            continue;
        }
        h.tensors.push_back(parse_entry(key, value, file, data_start, data_size));
    }

    // Sorted by (begin, end), an empty tensor sharing its offset with a non-empty one comes first, so a valid
    // file always tiles in this order.
    std::sort(h.tensors.begin(), h.tensors.end(), [](const safetensors_entry& a, const safetensors_entry& b) {
        return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
    });
    std::uint64_t expected = 0;
    const safetensors_entry* previous = nullptr;
    for (const auto& e : h.tensors) {
        if (e.begin < expected)
            throw input_error(file, tensor_place(e.name) + " at byte " + std::to_string(data_start + e.begin),
                              "data_offsets " + range_text(e.begin, e.end) + " overlap tensor '" + previous->name +
                                  "' at " + range_text(previous->begin, previous->end));
        if (e.begin > expected)
            throw input_error(file, "byte " + std::to_string(data_start + expected),
                              "hole of " + std::to_string(e.begin - expected) +
                                  " bytes in the data buffer before tensor '" + e.name +
                                  "' (tensors must tile the buffer from offset 0 without gaps)");
        expected = e.end;
        previous = &e;
    }
    if (expected != data_size)
        throw input_error(file, "byte " + std::to_string(data_start + expected),
                          std::to_string(data_size - expected) +
                              " bytes after the last tensor: 8 + header size + last end = " +
                              std::to_string(data_start + expected) + " but the file has " +
                              std::to_string(file_size) + " bytes");
    return h;
}

namespace {

// Reads what parse_safetensors_header needs: 8 bytes, then the header if its size is plausible (an implausible
// one is left for the parser to report, without allocating it).
safetensors_header read_header(const io_detail::posix_file& f) {
    const std::uint64_t size = f.size();
    std::vector<std::byte> buf(static_cast<std::size_t>(std::min<std::uint64_t>(size, 8)));
    f.read_exact(buf, 0, "byte 0");
    if (size >= 8) {
        const std::uint64_t n = read_u64_le(buf);
        if (n <= k_safetensors_max_header_bytes && n <= size - 8) {
            buf.resize(static_cast<std::size_t>(8 + n));
            f.read_exact(std::span(buf).subspan(8), 8, "byte 8");
        }
    }
    return parse_safetensors_header(buf, size, f.path().string());
}

}  // namespace

safetensors_header read_safetensors_header(const std::filesystem::path& file) {
    return read_header(io_detail::posix_file::open_read(file));
}

safetensors_file::safetensors_file(std::filesystem::path file)
    : m_path(std::move(file)),
      m_file(std::make_unique<io_detail::posix_file>(io_detail::posix_file::open_read(m_path))),
      m_header(read_header(*m_file)) {
    m_infos.reserve(m_header.tensors.size());
    for (const auto& e : m_header.tensors) {
        m_infos.push_back(tensor_info{e.name, e.type, e.shape, e.byte_size(), m_path, m_header.data_start() + e.begin});
    }
    std::sort(m_infos.begin(), m_infos.end(), [](const tensor_info& a, const tensor_info& b) { return a.name < b.name; });
}

safetensors_file::~safetensors_file() = default;

std::vector<std::string> safetensors_file::names() const {
    std::vector<std::string> out;
    out.reserve(m_infos.size());
    for (const auto& i : m_infos) out.push_back(i.name);
    return out;
}

const tensor_info* safetensors_file::find(std::string_view name) const {
    auto it = std::lower_bound(m_infos.begin(), m_infos.end(), name,
                               [](const tensor_info& i, std::string_view n) { return i.name < n; });
    return it != m_infos.end() && it->name == name ? &*it : nullptr;
}

host_tensor safetensors_file::read(std::string_view name) const {
    const tensor_info& info = require(name);
    host_tensor t;
    t.type = info.type;
    t.shape = info.shape;
    t.data.resize(static_cast<std::size_t>(info.byte_size));
    m_file->read_exact(t.data, info.file_offset,
                       "tensor '" + info.name + "' at byte " + std::to_string(info.file_offset));
    return t;
}

void safetensors_file::read_into(std::string_view name, std::span<std::byte> out) const {
    const tensor_info& info = require(name);
    if (out.size() != info.byte_size)
        throw error("read_into: tensor '" + info.name + "' has " + std::to_string(info.byte_size) +
                    " bytes but the buffer has " + std::to_string(out.size()));
    m_file->read_exact(out, info.file_offset, "tensor '" + info.name + "' at byte " + std::to_string(info.file_offset));
}

}  // namespace qbench
