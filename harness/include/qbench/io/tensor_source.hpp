#pragma once
/// A read-only set of named tensors: one safetensors file, a sharded checkpoint (index + shards), or a directory
/// holding either. Backends load their weights through this, so they never care how the checkpoint is laid out.
#include "qbench/common/tensor.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <span>
#include <string_view>
#include <vector>

namespace qbench {

/// Where a tensor lives and what it is.
struct tensor_info {
    std::string name;
    dtype type = dtype::f16;
    std::vector<std::int64_t> shape;
    std::uint64_t byte_size = 0;
    std::filesystem::path file;      ///< the safetensors file holding it
    std::uint64_t file_offset = 0;   ///< absolute byte offset of its data in that file
};

class tensor_source {
public:
    virtual ~tensor_source() = default;
    /// The path this source was opened from (for messages and provenance).
    virtual const std::filesystem::path& path() const = 0;
    /// All tensor names, sorted.
    virtual std::vector<std::string> names() const = 0;
    /// nullptr when absent.
    virtual const tensor_info* find(std::string_view name) const = 0;
    /// Reads a tensor into host memory; throws input_error naming the file and tensor when absent or unreadable.
    virtual host_tensor read(std::string_view name) const = 0;
    /// Reads a tensor's bytes into caller memory (e.g. a pinned staging buffer), saving a copy; `out.size()` must
    /// equal the tensor's byte_size (else error). The default goes through read().
    virtual void read_into(std::string_view name, std::span<std::byte> out) const;
    /// The `__metadata__` map (merged over shards).
    virtual const std::map<std::string, std::string>& metadata() const = 0;
    /// Total bytes of tensor data.
    virtual std::uint64_t total_bytes() const = 0;

    bool contains(std::string_view name) const { return find(name) != nullptr; }
    /// Like find(), but throws input_error when absent.
    const tensor_info& require(std::string_view name) const;
};

/// Opens a checkpoint: a .safetensors file, a model.safetensors.index.json, or a directory containing
/// model.safetensors or model.safetensors.index.json (or a single *.safetensors file).
std::unique_ptr<tensor_source> open_checkpoint(const std::filesystem::path& path);

}  // namespace qbench
