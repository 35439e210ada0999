#pragma once
/// `qbench quantize`: GPTQ over a whole model, as AutoGPTQ runs it, into an AutoGPTQ artifact (gptq_artifact.hpp).
///
/// Calibration: `calibration_samples` synthetic token sequences of `calibration_seq_len` tokens (BOS, then ids drawn
/// from the counter RNG keyed by the seed) are embedded and flow through the decoder layer by layer; each layer's
/// input is the output of the already-quantized layers before it. Within a layer, true_sequential (AutoGPTQ's
/// default) quantizes [q, k, v] -> [o] -> [gate, up] -> [down], each group seeing the outputs of the groups quantized
/// before it; otherwise all seven Hessians come from the layer's fp16 forward. Per linear: H = (2/n) sum x x^T in fp32,
/// then the algorithm of gptq_algorithm_ref.hpp (on the GPU: gptq_algorithm_cuda.hpp).
///
/// Quality: a few extra held-out sequences (other seed) flow alongside without entering any Hessian; for each linear
/// the relative output error ||X (W - Wq)^T|| / ||X W^T|| on their inputs is measured for GPTQ and for round-to-
/// nearest with the same bits and groups.
///
/// Memory: memory_plan "autogptq" reads the whole fp16 model into host RAM first (as AutoGPTQ holds the model on the
/// CPU), "streaming" reads one tensor at a time; both are accounted in qbench::host_memory, so an instance budget
/// turns into out_of_memory(host). Calibration activations live on the GPU (GPU path) or are accounted (CPU path).
#include "qbench/config/cell.hpp"
#include "qbench/engine/model_config.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace qbench {
class tensor_source;
}

namespace qbench::gptq {

struct gptq_quantize_options {
    std::int64_t bits = 4;
    /// group_size, desc_act, static_groups, sym, damp_percent, calibration_samples/seq_len, memory_plan.
    gptq_options gptq;
    bool true_sequential = true;
    /// Seeds the calibration tokens (and the held-out tokens).
    std::uint64_t seed = 0;
    /// Held-out sequences for the quality figures; -1: max(1, calibration_samples / 32); 0: no quality figures.
    std::int64_t quality_sequences = -1;
    /// Provenance for quantize_config.json.
    std::string model_name_or_path;
    /// Sequences per chunk of the GPU calibration forward (0: chosen from the model size).
    std::int64_t chunk_sequences = 0;
    /// Called after each decoder layer with (layers done, layers in all, seconds since the start); may be empty.
    std::function<void(std::int64_t, std::int64_t, double)> on_layer;
};

struct gptq_layer_report {
    std::string name;                 ///< "model.layers.0.self_attn.q_proj"
    std::int64_t in_features = 0;
    std::int64_t out_features = 0;
    double gptq_relative_error = -1;  ///< on held-out inputs; -1 when not measured
    double rtn_relative_error = -1;
    double gptq_loss = 0;             ///< the algorithm's own sum of (w-q)^2/d^2/2
    double damp_percent_used = 0;
    double seconds = 0;               ///< the algorithm on this layer (Cholesky, column loop)
};

struct gptq_quantize_report {
    std::string device;               ///< "cuda: NVIDIA H200" or "cpu"
    double quantize_time_s = 0;       ///< the whole run, from reading the fp16 model to the finished artifact
    double read_s = 0;                ///< fp16 weights into host RAM / to the device
    double forward_s = 0;             ///< calibration forward passes incl. Hessian accumulation
    double algorithm_s = 0;           ///< GPTQ per linear
    double quality_s = 0;
    double write_s = 0;               ///< time the run waited for the artifact writer (it writes in the background)
    double write_busy_s = 0;          ///< time the background writer spent packing and writing
    std::uint64_t host_peak_bytes = 0;   ///< accounted host peak during the run
    std::uint64_t rss_peak_bytes = 0;    ///< the process's peak RSS (getrusage)
    std::uint64_t vram_peak_bytes = 0;   ///< accounting-allocator peak (GPU path)
    std::uint64_t device_peak_bytes = 0; ///< device-level peak from cudaMemGetInfo (GPU path)
    std::uint64_t artifact_bytes = 0;
    std::vector<gptq_layer_report> layers;
    double mean_gptq_relative_error = -1;
    double mean_rtn_relative_error = -1;
    std::filesystem::path artifact;   ///< the artifact directory

    /// Keys as the results schema names them (quantize_time_s, quantize_host_peak_bytes, quantize_vram_peak_bytes)
    /// plus the details above.
    nlohmann::ordered_json to_json(const gptq_quantize_options& options) const;
};

/// Runs GPTQ over `model` read from `fp16` and writes the artifact into `out_dir` (created; quantize_report.json
/// included, the completion marker last). use_cuda: the GPU path (cuBLAS/cuSOLVER); else the CPU reference, for
/// small models. Throws unsupported_error for bits outside {2, 3, 4, 8}, out_of_memory(host) over a host budget.
gptq_quantize_report quantize_model(const model_config& model, const tensor_source& fp16,
                                    const gptq_quantize_options& options, const std::filesystem::path& out_dir,
                                    bool use_cuda);

/// The cached artifact for (model, options, seed) under cache_dir, made with quantize_model when missing (built in
/// a temporary directory and renamed into place, so a crash or a racing process never leaves half an artifact).
std::filesystem::path ensure_gptq_artifact(const model_config& model, const std::filesystem::path& fp16_checkpoint,
                                           const gptq_quantize_options& options, const std::filesystem::path& cache_dir,
                                           bool use_cuda);

/// The options a matrix cell asks for (bits, cell.gptq, seed).
gptq_quantize_options options_for_cell(const cell_spec& cell);

}  // namespace qbench::gptq
