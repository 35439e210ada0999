#pragma once
/// An optional capability of a backend's linears: a decode step's whole layer stack, at one row, as one persistent
/// kernel (the GPTQ backend's: backends/gptq/gptq_chain.cuh). The executor asks the first layer's q projection for one
/// (dynamic_cast) once its buffers are sized, when QBENCH_DECODE_STACK=1 asks for it (off by default: the GPTQ stack
/// still loses to the launched layers, PERF_NOTES.md), and enqueues the layers kernel by kernel where the backend has
/// none or declines. A stack's outputs must be bit-identical to the launched layers'.
///
/// Why: at one row every kernel of a step streams a few megabytes at most, and the 224 launches of a 7B step (with
/// their ramps, tails and the gaps between them) cost a third of a 4-bit step's time on an H200; one persistent grid
/// pays instead a light sync between phases (backends/gptq/PERF_NOTES.md, fifteenth and sixteenth sessions).
#include "qbench/backend/device_linear.hpp"

#include <cuda_fp16.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qbench {

class device_context;

/// One layer as the stack reads it: the linears (q, k, v, o, gate, up, down), the norms' weights and the layer's caches.
struct decode_stack_layer {
    device_linear* linear[7] = {};
    const __half* input_norm = nullptr;
    const __half* post_norm = nullptr;
    __half* k_cache = nullptr;
    __half* v_cache = nullptr;
};

/// The model's shape and the executor's buffers a stack reads and writes; they must outlive it at these addresses.
struct decode_stack_desc {
    int hidden = 0, heads = 0, kv_heads = 0, head_dim = 0;
    double eps = 0;
    float scale = 0;              ///< attention's 1 / sqrt(head_dim)
    std::int64_t max_len = 0;     ///< positions per slot of the caches
    const float* inv_freq = nullptr;
    const std::int32_t* pos = nullptr;         ///< the row's position (device)
    const std::int32_t* slot_table = nullptr;  ///< row 0 of the beam slot table (device)
    __half* x = nullptr;  ///< the residual stream [hidden]: the embedding in, the last layer's output out
    std::vector<decode_stack_layer> layers;
};

/// A built stack: one decode step's layers at one row.
class decode_stack {
public:
    virtual ~decode_stack() = default;
    /// Enqueues the layers on `stream` (capturable in a CUDA graph): desc.x in, desc.x out.
    virtual void enqueue(CUstream_st* stream) = 0;
};

/// The capability: implemented by a backend's device linears that can run a whole stack.
class decode_stack_provider {
public:
    virtual ~decode_stack_provider() = default;
    /// The stack for these layers, or null with `why` saying why not (other linears, shapes the kernel does not take,
    /// not enough shared memory or device memory). Never enqueues anything; may synchronize the context's stream.
    virtual std::unique_ptr<decode_stack> make_decode_stack(device_context& context, const decode_stack_desc& desc,
                                                            std::string& why) = 0;
};

}  // namespace qbench
