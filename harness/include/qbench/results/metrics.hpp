#pragma once
/// The names, units and JSON shapes of every figure a cell record may carry in its `metrics` object.
///
/// Producers (backends, the engine, the runner) spell metric keys only through the constants below, so a figure
/// has one name everywhere: in results files, in `qbench compare`, in plots. Each key carries its unit
/// (`_s`, `_ms`, `_bytes`, `_per_s`); a ratio has none. A key appears only when it was measured: an `oom_vram` cell
/// may hold `load_read_s` and `oom` but no decode figures.
///
/// JSON shapes (metric_kind):
///   number      one finite number >= 0                          "load_time_s": 4.21
///   integer     one integer >= 0                                 "vram_peak_bytes": 7516192768
///   summary     a repeated measurement, warm-up excluded:
///               {"median", "p10", "p90", "mean", "stddev", "min", "max", "count", "samples": [...]}
///               (percentiles by linear interpolation, stddev with Bessel's correction; see common/stats.hpp)
///   oom         {"requested_bytes", "available_bytes", "budget_bytes" (only under a budget), "kind": "vram"|"host"}
///   quality     {"top1_agreement", "mean_kl", "max_kl", "layer_relative_error_mean", "layer_relative_error_max",
///                "compared_positions", "reference_framework"}, each optional
///   string_map  {"<phase or layer>": "<kernel path>", ...}
///
/// Adding a metric: a constant here, a row in k_metric_table, a property in results/schema/qbench-results.schema.json
/// and a minor bump of the schema version (results/README.md). test_results checks that table and schema agree.
#include "qbench/common/errors.hpp"
#include "qbench/common/stats.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

namespace qbench {

/// The JSON shape of a metric's value (see the file comment).
enum class metric_kind : std::uint8_t { number, integer, string, summary, oom, quality, string_map };

/// One known key: its name, shape and unit ("s", "ms", "bytes", "tokens/s", "1" for ratios, "" for objects).
struct metric_info {
    std::string_view name;
    metric_kind kind;
    std::string_view unit;
};

namespace metric {
// Loading (DESIGN.md "Measurements"): process start of loading -> weights resident and ready.
inline constexpr char k_load_time_s[] = "load_time_s";          ///< cold load, page cache evicted first: read + upload + quantize
inline constexpr char k_load_read_s[] = "load_read_s";          ///< part of load_time_s: reading the checkpoint files
inline constexpr char k_load_upload_s[] = "load_upload_s";      ///< part of load_time_s: host -> device copies
inline constexpr char k_load_quantize_s[] = "load_quantize_s";  ///< part of load_time_s: quantize-on-load (bnb)
inline constexpr char k_load_time_warm_s[] = "load_time_warm_s";  ///< the same load again with a warm page cache
/// PROJECTION, not a measurement: checkpoint bytes / the emulated instance's EBS baseline throughput.
inline constexpr char k_load_read_projected_s[] = "load_read_projected_s";
// Ahead-of-time quantization (gptq: `qbench quantize`, the run that made the artifact).
inline constexpr char k_quantize_time_s[] = "quantize_time_s";
inline constexpr char k_quantize_host_peak_bytes[] = "quantize_host_peak_bytes";  ///< accounted host peak during it
inline constexpr char k_quantize_vram_peak_bytes[] = "quantize_vram_peak_bytes";  ///< accounting-allocator peak during it
// Memory.
inline constexpr char k_vram_peak_bytes[] = "vram_peak_bytes";  ///< peak of the accounting allocator (all device buffers)
inline constexpr char k_vram_device_peak_bytes[] = "vram_device_peak_bytes";  ///< device-level peak (cudaMemGetInfo/NVML)
inline constexpr char k_vram_context_bytes[] = "vram_context_bytes";      ///< CUDA context, measured and counted
inline constexpr char k_vram_workspace_bytes[] = "vram_workspace_bytes";  ///< cuBLAS/cuBLASLt workspaces
inline constexpr char k_vram_vision_tower_bytes[] = "vram_vision_tower_bytes";  ///< MiniGPT-4's resident vision tower
inline constexpr char k_vram_budget_bytes[] = "vram_budget_bytes";  ///< the emulated instance's usable VRAM
inline constexpr char k_host_budget_bytes[] = "host_budget_bytes";  ///< the emulated instance's host RAM
inline constexpr char k_host_peak_rss_bytes[] = "host_peak_rss_bytes";    ///< the child's peak resident set
inline constexpr char k_host_accounted_peak_bytes[] = "host_accounted_peak_bytes";  ///< peak of host_memory accounting
inline constexpr char k_weight_bytes[] = "weight_bytes";  ///< predicted bytes of all weights incl. scales, as stored
// Speed (warm-up excluded; CUDA events for device time).
inline constexpr char k_bytes_per_decode_step[] = "bytes_per_decode_step";  ///< weights + scales + KV cache read per step
inline constexpr char k_prefill_ms[] = "prefill_ms";                    ///< summary: one prefill of image + prompt tokens
inline constexpr char k_decode_tokens_per_s[] = "decode_tokens_per_s";  ///< summary: returned-sequence tokens / decode time
inline constexpr char k_e2e_tokens_per_s[] = "e2e_tokens_per_s";        ///< summary: same tokens / (prefill + decode) time
inline constexpr char k_beam_tokens_per_s[] = "beam_tokens_per_s";      ///< summary: tokens of all beams / decode time
inline constexpr char k_token_latency_ms[] = "token_latency_ms";        ///< summary over every decode step of every repetition
/// bytes_per_decode_step x decode steps/s over the device's measured stream bandwidth (median decode); 1 = the limit.
inline constexpr char k_bandwidth_utilization[] = "bandwidth_utilization";
// Objects.
inline constexpr char k_oom[] = "oom";                    ///< why an oom_* cell stopped (kind "oom")
inline constexpr char k_quality[] = "quality";            ///< agreement with the FP16 model (kind "quality")
inline constexpr char k_kernel_paths[] = "kernel_paths";  ///< which kernel ran where, e.g. {"decode": "gptq_gemv_4bit"}

// Keys of a summary object, in the order they are written.
inline constexpr char k_median[] = "median";
inline constexpr char k_p10[] = "p10";
inline constexpr char k_p90[] = "p90";
inline constexpr char k_mean[] = "mean";
inline constexpr char k_stddev[] = "stddev";
inline constexpr char k_min[] = "min";
inline constexpr char k_max[] = "max";
inline constexpr char k_count[] = "count";
inline constexpr char k_samples[] = "samples";

// Keys of the oom object.
inline constexpr char k_requested_bytes[] = "requested_bytes";  ///< the allocation that did not fit
inline constexpr char k_available_bytes[] = "available_bytes";  ///< what was left of the budget (or device) then
inline constexpr char k_budget_bytes[] = "budget_bytes";        ///< the instance's budget; absent without one
inline constexpr char k_kind[] = "kind";                        ///< "vram" | "host"

// Keys of the quality object (the FP16 model on the same prompt is the reference).
inline constexpr char k_top1_agreement[] = "top1_agreement";  ///< fraction of positions whose argmax token agrees, in [0, 1]
inline constexpr char k_mean_kl[] = "mean_kl";                ///< mean KL(P_fp16 || P_cell) over positions, in nats
inline constexpr char k_max_kl[] = "max_kl";                  ///< largest per-position KL, in nats
inline constexpr char k_layer_relative_error_mean[] = "layer_relative_error_mean";  ///< mean ||y - y_fp16|| / ||y_fp16||
inline constexpr char k_layer_relative_error_max[] = "layer_relative_error_max";    ///< worst linear layer of the same
inline constexpr char k_compared_positions[] = "compared_positions";                ///< token positions compared
inline constexpr char k_reference_framework[] = "reference_framework";              ///< normally "fp16"
}  // namespace metric

/// Every key allowed directly under `metrics`, in the order tables and docs list them.
inline constexpr auto k_metric_table = std::to_array<metric_info>({
    {metric::k_load_time_s, metric_kind::number, "s"},
    {metric::k_load_read_s, metric_kind::number, "s"},
    {metric::k_load_upload_s, metric_kind::number, "s"},
    {metric::k_load_quantize_s, metric_kind::number, "s"},
    {metric::k_load_time_warm_s, metric_kind::number, "s"},
    {metric::k_load_read_projected_s, metric_kind::number, "s"},
    {metric::k_quantize_time_s, metric_kind::number, "s"},
    {metric::k_quantize_host_peak_bytes, metric_kind::integer, "bytes"},
    {metric::k_quantize_vram_peak_bytes, metric_kind::integer, "bytes"},
    {metric::k_vram_peak_bytes, metric_kind::integer, "bytes"},
    {metric::k_vram_device_peak_bytes, metric_kind::integer, "bytes"},
    {metric::k_vram_context_bytes, metric_kind::integer, "bytes"},
    {metric::k_vram_workspace_bytes, metric_kind::integer, "bytes"},
    {metric::k_vram_vision_tower_bytes, metric_kind::integer, "bytes"},
    {metric::k_vram_budget_bytes, metric_kind::integer, "bytes"},
    {metric::k_host_budget_bytes, metric_kind::integer, "bytes"},
    {metric::k_host_peak_rss_bytes, metric_kind::integer, "bytes"},
    {metric::k_host_accounted_peak_bytes, metric_kind::integer, "bytes"},
    {metric::k_weight_bytes, metric_kind::integer, "bytes"},
    {metric::k_bytes_per_decode_step, metric_kind::integer, "bytes"},
    {metric::k_prefill_ms, metric_kind::summary, "ms"},
    {metric::k_decode_tokens_per_s, metric_kind::summary, "tokens/s"},
    {metric::k_e2e_tokens_per_s, metric_kind::summary, "tokens/s"},
    {metric::k_beam_tokens_per_s, metric_kind::summary, "tokens/s"},
    {metric::k_token_latency_ms, metric_kind::summary, "ms"},
    {metric::k_bandwidth_utilization, metric_kind::number, "1"},
    {metric::k_oom, metric_kind::oom, ""},
    {metric::k_quality, metric_kind::quality, ""},
    {metric::k_kernel_paths, metric_kind::string_map, ""},
});

/// Every key allowed in a `quality` object.
inline constexpr auto k_quality_table = std::to_array<metric_info>({
    {metric::k_top1_agreement, metric_kind::number, "1"},
    {metric::k_mean_kl, metric_kind::number, "nats"},
    {metric::k_max_kl, metric_kind::number, "nats"},
    {metric::k_layer_relative_error_mean, metric_kind::number, "1"},
    {metric::k_layer_relative_error_max, metric_kind::number, "1"},
    {metric::k_compared_positions, metric_kind::integer, ""},
    {metric::k_reference_framework, metric_kind::string, ""},
});

/// The row of k_metric_table named `name`, or nullptr.
const metric_info* find_metric(std::string_view name) noexcept;

/// A repeated measurement as JSON: {median, p10, p90, mean, stddev, min, max, count, samples[]}.
/// `s` must be summarize(samples); samples are written in the order given (the order they were measured).
nlohmann::ordered_json summary_to_json(const summary& s, std::span<const double> samples);
/// summary_to_json(summarize(samples), samples).
nlohmann::ordered_json summary_to_json(std::span<const double> samples);

/// The `oom` object for a caught out_of_memory; budget_bytes 0 means no budget (the key is left out).
nlohmann::ordered_json oom_to_json(const out_of_memory& e, std::uint64_t budget_bytes);

}  // namespace qbench
