#pragma once
/// A backend = one framework style (fp16, gptq, bnb): its weight formats and its execution strategy.
///
/// Non-virtual public entry points check arguments once and forward to private virtuals (NVI), so a backend
/// implements only the work. The base never branches on which backend it is.
#include "qbench/backend/cpu_linear.hpp"
#include "qbench/backend/device_linear.hpp"
#include "qbench/config/cell.hpp"
#include "qbench/engine/model_config.hpp"

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {

class tensor_source;
class device_context;  // harness/cuda/device_context.cuh; only exists in CUDA builds

/// Whether a backend can run a cell, and why not.
struct support {
    bool ok = true;
    std::string reason;  ///< empty when ok
    static support yes() { return {}; }
    static support no(std::string why) { return {false, std::move(why)}; }
};

/// What a backend needs to load one linear layer.
struct linear_request {
    const tensor_source& source;  ///< the cell's checkpoint (FP16, or the backend's artifact)
    std::string prefix;           ///< "model.layers.0.self_attn.q_proj" (tensors are prefix + ".weight", ...)
    linear_kind kind;
    std::int64_t in_features;
    std::int64_t out_features;
    const cell_spec& cell;
};

/// Where artifacts live and which FP16 checkpoint they derive from.
struct artifact_request {
    const cell_spec& cell;
    const model_config& model;
    std::filesystem::path fp16_checkpoint;  ///< the synthetic (or user's) FP16 safetensors checkpoint
    std::filesystem::path cache_dir;        ///< where artifacts are cached
    bool use_cuda = false;                  ///< may use the GPU to make the artifact
};

class backend {
public:
    virtual ~backend() = default;

    /// The matrix `framework` value: "fp16", "gptq", "bnb".
    virtual std::string_view name() const = 0;
    /// One line for `qbench list backends`.
    virtual std::string_view description() const = 0;
    /// Bit widths this backend has a path for (others are `unsupported`).
    virtual std::vector<std::int64_t> supported_bits() const = 0;

    /// Can this backend run the cell? An impossible cell is recorded as `unsupported` with the reason.
    virtual support supports(const cell_spec& cell) const = 0;

    /// The checkpoint the cell loads: the FP16 checkpoint itself, or an artifact made from it (GPTQ quantizes ahead
    /// of time and caches the result). Default: the FP16 checkpoint.
    virtual std::filesystem::path prepare_artifact(const artifact_request& request) const {
        return request.fp16_checkpoint;
    }

    /// Loads one linear layer for the CPU reference engine. lm_head (kind lm_head) stays FP16 in every backend, as
    /// transformers keeps it: backends delegate it to the fp16 linear (backends/fp16/fp16_linear.hpp).
    std::unique_ptr<cpu_linear> load_cpu_linear(const linear_request& request) const;
    /// Loads one linear layer onto the GPU (through the context's accounting allocator).
    std::unique_ptr<device_linear> load_device_linear(const linear_request& request, device_context& context) const;

private:
    virtual std::unique_ptr<cpu_linear> do_load_cpu_linear(const linear_request& request) const = 0;
    /// Default: unsupported (a backend without a CUDA path, or a CPU-only build).
    virtual std::unique_ptr<device_linear> do_load_device_linear(const linear_request& request,
                                                                 device_context& context) const;
};

}  // namespace qbench
