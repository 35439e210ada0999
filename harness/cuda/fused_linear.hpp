#pragma once
/// An optional capability of a device_linear: several linears of one layer in one kernel. The executor finds it with
/// dynamic_cast and falls back to one forward() per linear (plus the separate SwiGLU kernel) where a backend does not
/// offer it or declines a call, so backends that ignore this header keep working unchanged.
///
/// Why: a decode step's linears are short (a 4096 x 4096 fp16 weight streams in ~7 us on an H200), and each launch
/// loses part of that to ramp-up and tail; q, k and v (and gate and up) read the same activations, so one kernel can
/// stream all their weights at once, and the SwiGLU product can be formed in the gate/up kernel's epilogue.
#include "qbench/backend/device_linear.hpp"

#include <cstdint>

namespace qbench {

class fused_linear {
public:
    virtual ~fused_linear() = default;
    /// y_i[rows, out_i] = x[rows, in] · W_iᵀ for this linear (i = 0) and others[0 .. count - 1] (i = 1 ..), all with
    /// this linear's in_features, enqueued as one kernel on `stream`. Returns false, enqueuing nothing, when it cannot
    /// (another format, too many rows, unaligned buffers): the caller then runs the forwards one by one.
    virtual bool forward_group(device_linear* const* others, int count, const void* x, std::int64_t rows,
                               void* const* ys, CUstream_st* stream) = 0;
    /// act[rows, out] = fp16(silu(g) * u), g = fp16(x · W_thisᵀ) (this is the gate projection), u = fp16(x · W_upᵀ),
    /// silu in double as swiglu_ref: bit-identical to forward() of both and launch_swiglu. False as above.
    virtual bool forward_swiglu(device_linear& up, const void* x, std::int64_t rows, void* act,
                                CUstream_st* stream) = 0;
};

}  // namespace qbench
