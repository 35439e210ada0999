#pragma once
/// The CUDA engine as the runner sees it. Host-only: no CUDA headers, so code that merely names these types builds
/// everywhere; the definitions exist only in CUDA builds (QBENCH_HAVE_CUDA, library qbench_cuda).
///
/// Typical use in a cell's child process:
///   auto ctx = make_device_context({.vram_budget_bytes = instance.vram_usable_bytes});  // may throw out_of_memory
///   auto exec = make_cuda_executor(model, source, backend, cell, *ctx);                // may throw out_of_memory
///   exec->generate(prompt, config);  exec->last_timing();  memory_report(*ctx);
///   bandwidth_utilization = exec->bytes_per_decode_step(beam, context) / step_s / (stream_gbs * 1e9)
#include "qbench/engine/generation.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string_view>
#include <optional>
#include <string>

namespace qbench {

class backend;
class device_context;  // harness/cuda/device_context.cuh
class tensor_source;
struct cell_spec;
struct model_config;

struct cuda_context_options {
    int device = 0;
    /// The emulated instance's usable VRAM (context, libraries and allocations together); empty = no budget.
    std::optional<std::uint64_t> vram_budget_bytes;
};

/// Destroys a context from code that cannot see its definition.
struct device_context_deleter {
    void operator()(device_context* context) const noexcept;
};
using device_context_ptr = std::unique_ptr<device_context, device_context_deleter>;

/// Creates the CUDA context (measuring what it and the cuBLAS handles take) and the accounted cuBLAS workspace.
/// Throws cuda_error without a usable GPU, out_of_memory(vram) when the context alone exceeds the budget.
device_context_ptr make_device_context(const cuda_context_options& options = {});

/// Memory figures of a context, bytes.
struct cuda_memory_report {
    std::uint64_t allocated_peak_bytes = 0;     ///< accounting allocator high-water mark (vram_allocated_peak_bytes)
    std::uint64_t allocated_current_bytes = 0;
    std::uint64_t device_peak_bytes = 0;        ///< high-water mark of cudaMemGetInfo's used bytes (vram_device_peak)
    std::uint64_t context_bytes = 0;            ///< taken by the CUDA context
    std::uint64_t library_bytes = 0;            ///< taken by creating the cuBLAS/cuBLASLt handles
    std::uint64_t workspace_bytes = 0;          ///< cuBLAS workspace (inside allocated_*)
    std::uint64_t device_total_bytes = 0;
    std::optional<std::uint64_t> budget_bytes;
};
cuda_memory_report memory_report(const device_context& context);
/// Restarts the peaks at the current values (after a provenance measurement, before a cell).
void reset_memory_peaks(device_context& context);

/// Device memory held beside the model for something qbench accounts for but does not execute (MiniGPT-4's vision
/// tower, engine/vision_tower.hpp): allocated through the context's accounting allocator, so it counts against the
/// budget (throws out_of_memory(vram) when it does not fit), and zero-filled so the pages really exist. Freed when
/// the returned handle is destroyed; it must not outlive the context.
std::shared_ptr<void> hold_device_memory(device_context& context, std::uint64_t bytes, std::string_view what);

/// GPU name, compute capability, SMs, L2, memory, clocks, ECC, driver/runtime/cuBLAS versions, context bytes.
nlohmann::json gpu_environment(const device_context& context);
/// Read-only streaming bandwidth, GB/s (10^9 B/s): 16-byte loads over >= 2 GiB, median of 15 runs (once per run,
/// recorded in provenance; the denominator of bandwidth_utilization).
double measure_stream_bandwidth_gbs(device_context& context);

/// Where load time went, seconds: reading the checkpoint, host-to-device copies through the context, and the rest
/// (quantize-on-load and whatever else the backend does).
struct cuda_load_report {
    double read_s = 0;
    double upload_s = 0;
    double quantize_s = 0;
    double total_s = 0;
    std::uint64_t weight_bytes = 0;  ///< linear layers (lm_head included) in the backend's format
    std::uint64_t other_bytes = 0;   ///< embeddings and norm weights (fp16)
};

/// The CUDA executor: the whole decoder on the GPU, every linear through the cell's backend, the decode step
/// replayed as a CUDA graph. Timing (last_timing) comes from CUDA events.
class cuda_executor : public executor {
public:
    virtual const cuda_load_report& load_report() const = 0;
    /// Bytes one decode step of `beam` sequences must read with `context_len` positions cached: every linear's
    /// weight_bytes (lm_head included), the K and V rows of every beam, the embedding rows, the norm weights.
    virtual std::uint64_t bytes_per_decode_step(std::int64_t beam, std::int64_t context_len) const = 0;
    /// The kernel path of the model's linears for `rows` rows (layer 0's q_proj, e.g. "gemv-f16-vec-rpw1").
    virtual std::string kernel_path(std::int64_t rows) const = 0;
    /// Decode steps replay a captured CUDA graph (default on) or launch kernel by kernel.
    virtual void set_graphs_enabled(bool on) = 0;
    /// Whether the last generate() replayed a graph (false when disabled or when capture failed).
    virtual bool graphs_used() const = 0;
};

/// Loads the model onto the GPU of `context` (which must outlive the executor): linears through
/// backend.load_device_linear, embeddings and norms as fp16. Throws out_of_memory(vram) over the budget,
/// unsupported_error when the backend has no CUDA path, input_error for a bad checkpoint.
std::unique_ptr<cuda_executor> make_cuda_executor(const model_config& model, const tensor_source& source,
                                                  const backend& backend, const cell_spec& cell,
                                                  device_context& context);

}  // namespace qbench
