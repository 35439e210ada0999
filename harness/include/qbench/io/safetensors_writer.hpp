#pragma once
/// Writing safetensors files (layout in safetensors.hpp): whole maps of tensors, or streamed tensor by tensor.
///
/// Both writers lay a file out the way the reference writer does: the JSON header padded with spaces so the data
/// buffer starts at a multiple of 8, tensors ordered by descending element size, then by name, so every tensor is
/// naturally aligned when the file is memory-mapped. Output goes to a temporary sibling that is flushed to disk and
/// then renamed over the target, so a reader (or a crash) never sees a half-written file.
#include "qbench/common/tensor.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {

namespace io_detail {
class posix_file;
}

/// A tensor known by name, type and shape before its bytes exist (for streaming writers).
struct tensor_decl {
    std::string name;
    dtype type = dtype::f16;
    std::vector<std::int64_t> shape;

    /// numel * element size; throws error on a negative dimension or overflow.
    std::uint64_t byte_size() const;
};

/// Writes `tensors` (and the optional `__metadata__` map) to `path` atomically.
/// Throws error when a tensor's data size does not match its shape, a name is "__metadata__", or I/O fails.
void write_safetensors(const std::filesystem::path& path, const std::map<std::string, host_tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// Writes a safetensors file whose tensors are declared up front and supplied one at a time, so a checkpoint
/// larger than RAM never has to be held whole. The header is written at construction; each write() puts one
/// tensor's bytes at its final offset (any order; several threads may write different tensors at once);
/// finish() checks that every tensor was written, flushes and renames into place. Destroying an unfinished writer
/// removes the temporary file.
class safetensors_stream_writer {
public:
    safetensors_stream_writer(std::filesystem::path path, std::vector<tensor_decl> tensors,
                              const std::map<std::string, std::string>& metadata = {});
    ~safetensors_stream_writer();
    safetensors_stream_writer(const safetensors_stream_writer&) = delete;
    safetensors_stream_writer& operator=(const safetensors_stream_writer&) = delete;

    /// The tensors in file order: writing in this order writes the file sequentially.
    std::vector<std::string> file_order() const;
    /// The declaration of a tensor; throws error when it was not declared.
    const tensor_decl& decl(std::string_view name) const;
    /// Writes the bytes of tensor `name`; their size must be its byte_size(). Each tensor exactly once.
    void write(std::string_view name, std::span<const std::byte> bytes);
    /// Writes a host tensor, checking its type and shape against the declaration.
    void write(std::string_view name, const host_tensor& tensor);
    /// Completes the file; throws error naming the first tensor not written.
    void finish();

    const std::filesystem::path& path() const { return m_path; }
    /// Size of the finished file.
    std::uint64_t file_size() const { return m_data_start + m_data_bytes; }
    /// Sum of the tensor bytes.
    std::uint64_t data_bytes() const { return m_data_bytes; }

private:
    struct slot {
        tensor_decl decl;
        std::uint64_t begin = 0;
        std::uint64_t size = 0;
        bool written = false;
    };
    slot& find_slot(std::string_view name);
    const slot& find_slot(std::string_view name) const;

    std::filesystem::path m_path;
    std::filesystem::path m_temp_path;
    std::unique_ptr<io_detail::posix_file> m_file;
    std::vector<slot> m_slots;  // in file order
    std::vector<std::size_t> m_by_name;  // indices into m_slots, sorted by name
    std::uint64_t m_data_start = 0;
    std::uint64_t m_data_bytes = 0;
    std::mutex m_mutex;  // guards the written flags
    bool m_finished = false;
};

}  // namespace qbench
