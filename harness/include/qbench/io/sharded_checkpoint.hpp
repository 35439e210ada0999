#pragma once
/// Sharded Hugging Face checkpoints: several safetensors files and an index naming the file of every tensor.
///
///   <dir>/model.safetensors.index.json
///       {"metadata": {"total_size": <sum of tensor bytes>},
///        "weight_map": {"model.embed_tokens.weight": "model-00001-of-00003.safetensors", ...}}
///   <dir>/model-00001-of-00003.safetensors      shards: 5-digit, 1-based, each a complete safetensors file
///   <dir>/model-00002-of-00003.safetensors
///   <dir>/model-00003-of-00003.safetensors
///
/// A checkpoint that fits in one shard is a single <dir>/model.safetensors with no index, as Hugging Face writes it.
/// Shards are filled greedily in declaration order (a tensor larger than the limit gets a shard of its own), so the
/// embedding and the first layers land in shard 1, as in Hugging Face's split_torch_state_dict_into_shards.
#include "qbench/io/safetensors.hpp"
#include "qbench/io/safetensors_writer.hpp"
#include "qbench/io/tensor_source.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {

inline constexpr std::string_view k_single_checkpoint_file = "model.safetensors";
inline constexpr std::string_view k_checkpoint_index_file = "model.safetensors.index.json";

/// "model-00002-of-00003.safetensors" for index 2 (1-based) of 3.
std::string shard_file_name(std::size_t index, std::size_t count);

/// The contents of model.safetensors.index.json.
struct checkpoint_index {
    std::map<std::string, std::string> weight_map;  ///< tensor name -> shard file name (relative to the index)
    std::optional<std::uint64_t> total_size;        ///< metadata.total_size when present
};

/// Reads and validates an index file (JSON syntax, weight_map of strings naming plain files in its directory);
/// throws input_error(file, place, message).
checkpoint_index read_checkpoint_index(const std::filesystem::path& index_file);

/// A sharded checkpoint as one tensor_source. Every shard is opened and validated up front, and the index must
/// agree with the shards exactly (each mapped tensor in its shard, no unmapped tensors).
class sharded_checkpoint final : public tensor_source {
public:
    explicit sharded_checkpoint(std::filesystem::path index_file);
    ~sharded_checkpoint() override;

    const std::filesystem::path& path() const override { return m_path; }
    std::vector<std::string> names() const override;
    const tensor_info* find(std::string_view name) const override;
    host_tensor read(std::string_view name) const override;
    void read_into(std::string_view name, std::span<std::byte> out) const override;
    /// The shards' `__metadata__` maps merged (the first shard wins on a conflicting key).
    const std::map<std::string, std::string>& metadata() const override { return m_metadata; }
    std::uint64_t total_bytes() const override { return m_total_bytes; }

    std::size_t shard_count() const { return m_shards.size(); }

private:
    const safetensors_file& shard_of(std::string_view name) const;

    std::filesystem::path m_path;
    std::vector<std::unique_ptr<safetensors_file>> m_shards;
    std::vector<tensor_info> m_infos;   // sorted by name
    std::vector<std::size_t> m_shard;   // m_shard[i]: the shard holding m_infos[i]
    std::map<std::string, std::string> m_metadata;
    std::uint64_t m_total_bytes = 0;
};

/// Splits tensors (in the given order) into shards of at most `max_shard_bytes` of tensor data each; returns the
/// indices of each shard's tensors.
std::vector<std::vector<std::size_t>> plan_shards(std::span<const tensor_decl> tensors, std::uint64_t max_shard_bytes);

/// Streams a checkpoint into a directory as one file or as shards plus index (see above); the declaration order
/// decides the shard split. Each shard gets `metadata` as its `__metadata__`. Tensors may be written in any order,
/// but file_order() writes every shard sequentially.
class sharded_stream_writer {
public:
    sharded_stream_writer(std::filesystem::path dir, std::vector<tensor_decl> tensors,
                          const std::map<std::string, std::string>& metadata, std::uint64_t max_shard_bytes);
    ~sharded_stream_writer();
    sharded_stream_writer(const sharded_stream_writer&) = delete;
    sharded_stream_writer& operator=(const sharded_stream_writer&) = delete;

    /// Shard by shard, each in its file order.
    std::vector<std::string> file_order() const;
    const tensor_decl& decl(std::string_view name) const;
    void write(std::string_view name, std::span<const std::byte> bytes);
    void write(std::string_view name, const host_tensor& tensor);
    /// Finishes every shard, then writes the index (when there is more than one shard). Returns what
    /// open_checkpoint() should be given: the index, or the single model.safetensors.
    std::filesystem::path finish();

    std::size_t shard_count() const { return m_shards.size(); }
    std::uint64_t data_bytes() const { return m_data_bytes; }

private:
    safetensors_stream_writer& writer_of(std::string_view name) const;

    std::filesystem::path m_dir;
    std::vector<std::unique_ptr<safetensors_stream_writer>> m_shards;
    std::vector<std::string> m_shard_files;
    std::map<std::string, std::size_t, std::less<>> m_shard_of;  // tensor name -> shard
    std::uint64_t m_data_bytes = 0;
};

/// Writes `tensors` into `dir` (created if missing) as one file or shards + index; returns the path to open.
/// Shards are assigned in natural name order ("layers.2" before "layers.10").
std::filesystem::path write_sharded_checkpoint(const std::filesystem::path& dir,
                                               const std::map<std::string, host_tensor>& tensors,
                                               const std::map<std::string, std::string>& metadata,
                                               std::uint64_t max_shard_bytes);

}  // namespace qbench
