#pragma once
/// The SwiGLU product of the Llama MLP: act = fp16( silu(gate) * up ), silu(g) = g / (1 + exp(-g)), in double.
#include "cuda/launch.cuh"

#include <cuda_fp16.h>

#include <cstdint>

namespace qbench {

#if defined(__CUDACC__)
/// fp16(silu(g) * u) in double without intermediate rounding, as swiglu_ref: the elementwise work is tiny next to
/// the GEMVs around it, and matching the oracle's rounding keeps the executors' tokens identical. Shared with the
/// fused gate/up GEMV epilogue (backends/fp16), so both paths round alike.
__device__ __forceinline__ float silu_times(float g, float u) {
    const double gd = g;
    const double silu = __ddiv_rn(gd, __dadd_rn(1.0, exp(-gd)));
    return __double2float_rn(__dmul_rn(silu, static_cast<double>(u)));
}
#endif

/// `count` elements: act[i] = fp16(silu(gate[i]) * up[i]).
void launch_swiglu(const __half* gate, const __half* up, std::int64_t count, __half* act, const launch_options& o);

}  // namespace qbench
