#pragma once
/// safetensors: the Hugging Face checkpoint format, read with every check the reference reader makes.
///
///   byte 0          8                      8 + N                                         file end
///   +---------------+----------------------+---------------------------------------------+
///   | N: u64, LE    | JSON header, N bytes | data buffer: tensors back to back, no holes |
///   |               | '{' ... '}' + spaces | offsets [begin, end) relative to byte 8 + N |
///   +---------------+----------------------+---------------------------------------------+
///
///   header = { "__metadata__": {"format": "pt", ...},           optional, string -> string only
///              "<name>": {"dtype": "F16", "shape": [4096, 11008], "data_offsets": [BEGIN, END]}, ... }
///
/// Tensors are little-endian, row-major. end - begin == numel * element size; sorted by begin, the tensors tile the
/// data buffer from 0 with no gap and no overlap, and 8 + N + last end == file size. 0-rank tensors (shape [])
/// hold one element; tensors with a 0 dimension hold none. Writers pad the JSON with spaces so 8 + N is a multiple
/// of 8 and put tensors with larger elements first, so every tensor is naturally aligned when mapped, but a reader
/// cannot rely on that (third-party writers).
///
/// Every violation is an input_error whose place names the byte offset in the file and/or the tensor, so a user
/// can find the problem with a hex dump.
#include "qbench/common/tensor.hpp"
#include "qbench/io/tensor_source.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace qbench {

namespace io_detail {
class posix_file;
}

/// The reference reader's limit on N; a larger header is refused before it is read.
inline constexpr std::uint64_t k_safetensors_max_header_bytes = 100'000'000;
/// Writers pad 8 + N to a multiple of this.
inline constexpr std::uint64_t k_safetensors_header_alignment = 8;

/// One tensor of a safetensors header.
struct safetensors_entry {
    std::string name;
    dtype type = dtype::f16;
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0;  ///< relative to the data buffer
    std::uint64_t end = 0;    ///< one past the last byte
    std::uint64_t byte_size() const { return end - begin; }
};

/// A validated safetensors header.
struct safetensors_header {
    std::uint64_t header_bytes = 0;            ///< N
    std::vector<safetensors_entry> tensors;    ///< in file order (by begin offset)
    std::map<std::string, std::string> metadata;

    /// Absolute file offset of the data buffer.
    std::uint64_t data_start() const { return 8 + header_bytes; }
    /// Bytes of the data buffer (== file size - data_start() for a valid file).
    std::uint64_t data_bytes() const { return tensors.empty() ? 0 : tensors.back().end; }
};

/// Parses and validates a safetensors header held in memory. `bytes` is the start of the file (at least 8 + N
/// bytes of it, more is ignored) and `file_size` the size of the whole file, against which offsets are checked.
/// Throws input_error(file_name, place, message) for the first problem found; never reads outside `bytes`.
safetensors_header parse_safetensors_header(std::span<const std::byte> bytes, std::uint64_t file_size,
                                            const std::string& file_name);

/// Reads and validates the header of a safetensors file.
safetensors_header read_safetensors_header(const std::filesystem::path& file);

/// One safetensors file as a tensor_source. Keeps one descriptor open; reads are positioned, so concurrent
/// read() calls from several threads are safe.
class safetensors_file final : public tensor_source {
public:
    /// Opens and validates the file; throws input_error on any problem.
    explicit safetensors_file(std::filesystem::path file);
    ~safetensors_file() override;
    safetensors_file(const safetensors_file&) = delete;
    safetensors_file& operator=(const safetensors_file&) = delete;

    const std::filesystem::path& path() const override { return m_path; }
    std::vector<std::string> names() const override;
    const tensor_info* find(std::string_view name) const override;
    host_tensor read(std::string_view name) const override;
    void read_into(std::string_view name, std::span<std::byte> out) const override;
    const std::map<std::string, std::string>& metadata() const override { return m_header.metadata; }
    std::uint64_t total_bytes() const override { return m_header.data_bytes(); }

    const safetensors_header& header() const { return m_header; }

private:
    std::filesystem::path m_path;
    std::unique_ptr<io_detail::posix_file> m_file;
    safetensors_header m_header;
    std::vector<tensor_info> m_infos;  // sorted by name, for binary search
};

}  // namespace qbench
