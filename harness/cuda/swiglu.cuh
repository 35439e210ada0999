#pragma once
/// The SwiGLU product of the Llama MLP: act = fp16( silu(gate) * up ), silu(g) = g / (1 + exp(-g)), in double.
#include "cuda/launch.cuh"

#include <cuda_fp16.h>

#include <cstdint>

namespace qbench {

/// `count` elements: act[i] = fp16(silu(gate[i]) * up[i]).
void launch_swiglu(const __half* gate, const __half* up, std::int64_t count, __half* act, const launch_options& o);

}  // namespace qbench
