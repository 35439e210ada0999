#pragma once
/// GPTQ artifacts on disk: an AutoGPTQ checkpoint directory, cached by everything that decides its contents.
///
///   <cache_dir>/gptq/<model>-<bits>b-g<group>-<key>/
///       gptq_model-<bits>bit-<group>g.safetensors   every tensor of the model: quantized linears as qweight, qzeros,
///                                                    scales, g_idx (gptq_format.hpp); embeddings, norms, lm_head F16;
///                                                    metadata format=pt plus the quantize_config fields
///       quantize_config.json                          AutoGPTQ BaseQuantizeConfig.to_dict()
///       config.json                                   Hugging Face LlamaConfig with "quantization_config"
///       quantize_report.json                          how it was made: times, memory peaks, per-layer errors
///       .qbench-complete                              written last
///
/// <key> is a hash of (model shape and name, bits, group size, desc_act, static_groups, sym, damp_percent,
/// calibration count and length, true_sequential, seed, artifact version): equal keys mean equal artifacts.
/// The memory plan and the device that ran the algorithm are not part of it.
#include "backends/gptq/gptq_pack.hpp"
#include "qbench/config/cell.hpp"
#include "qbench/engine/model_config.hpp"
#include "qbench/io/tensor_source.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qbench {
class safetensors_stream_writer;
}

namespace qbench::gptq {

/// Bump when the algorithm or the file layout changes, so stale caches are not reused.
inline constexpr int k_artifact_version = 1;
inline constexpr const char* k_artifact_complete_marker = ".qbench-complete";
inline constexpr const char* k_quantize_report_file = "quantize_report.json";

/// AutoGPTQ's quantize_config.json fields.
struct quantize_config {
    std::int64_t bits = 4;
    std::int64_t group_size = 128;
    double damp_percent = 0.01;
    bool desc_act = false;
    bool static_groups = false;
    bool sym = true;
    bool true_sequential = true;
    std::string model_name_or_path;
    std::string model_file_base_name;
    std::string quant_method = "gptq";
    std::string checkpoint_format = "gptq";

    nlohmann::json to_json() const;
    /// Throws input_error naming `file` on a malformed object (unknown keys are ignored, as AutoGPTQ does).
    static quantize_config from_json(const nlohmann::json& j, const std::string& file);
};

/// Everything that decides an artifact's contents.
struct artifact_key {
    std::string model;
    model_config shape;
    std::int64_t bits = 4;
    gptq_options options;
    bool true_sequential = true;
    std::uint64_t seed = 0;

    /// Canonical JSON of the fields above (what the hash covers).
    nlohmann::json to_json() const;
    /// 16 hex digits.
    std::string hash() const;
    /// "<model>-<bits>b-g<group>-<hash>"
    std::string directory_name() const;
};

/// The directory of an artifact under a cache root.
std::filesystem::path artifact_directory(const std::filesystem::path& cache_dir, const artifact_key& key);
/// Whether a directory holds a finished artifact.
bool artifact_complete(const std::filesystem::path& dir);

/// Streams an artifact's safetensors file: declares every tensor of the model up front, then takes quantized linears
/// and copied fp16 tensors in any order.
class artifact_writer {
public:
    artifact_writer(const std::filesystem::path& dir, const model_config& model, const quantize_config& config,
                    const tensor_source& fp16);
    ~artifact_writer();
    artifact_writer(const artifact_writer&) = delete;
    artifact_writer& operator=(const artifact_writer&) = delete;

    /// Packs and writes one quantized linear (prefix "model.layers.3.mlp.down_proj").
    void write_linear(const std::string& prefix, const quantized_linear& q);
    /// Copies the embeddings, norms and lm_head from the fp16 checkpoint (as F16).
    void copy_unquantized();
    /// Completes the safetensors file and writes quantize_config.json and config.json.
    void finish();
    const std::filesystem::path& weights_path() const { return m_weights; }
    std::uint64_t bytes_written() const { return m_bytes; }

private:
    std::filesystem::path m_dir, m_weights;
    model_config m_model;
    quantize_config m_config;
    const tensor_source& m_fp16;
    std::unique_ptr<safetensors_stream_writer> m_writer;
    std::uint64_t m_bytes = 0;
};

/// The names of the tensors a model keeps unquantized (embed_tokens, every norm, lm_head).
std::vector<std::string> unquantized_tensor_names(const model_config& model);

/// Reads one layer's AutoGPTQ tensors, checking dtypes and shapes against (in_features, out_features); bits come
/// from the qweight shape, the group count from scales, the group size from the metadata or g_idx.
/// Errors are input_error naming the checkpoint and the tensor. read_qweight = false leaves qweight empty (the GPU
/// loader reads it straight into pinned memory).
packed_linear read_packed_linear(const tensor_source& source, const std::string& prefix, std::int64_t in_features,
                                 std::int64_t out_features, bool read_qweight = true);

/// Reads <dir>/quantize_config.json if present.
std::optional<quantize_config> read_quantize_config(const std::filesystem::path& dir);

}  // namespace qbench::gptq
