#include "cuda/swiglu.cuh"

#include <algorithm>

namespace qbench {

namespace {

__global__ void swiglu_kernel(const __half2* __restrict__ gate, const __half2* __restrict__ up, std::int64_t pairs,
                              __half2* act) {
    pdl_wait();
    pdl_trigger();
    const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
    for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < pairs; i += stride) {
        const float2 g = __half22float2(gate[i]);
        const float2 u = __half22float2(up[i]);
        act[i] = __floats2half2_rn(silu_times(g.x, u.x), silu_times(g.y, u.y));
    }
}

__global__ void swiglu_scalar_kernel(const __half* __restrict__ gate, const __half* __restrict__ up,
                                     std::int64_t count, __half* act) {
    pdl_wait();
    pdl_trigger();
    const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
    for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride)
        act[i] = __float2half_rn(silu_times(__half2float(gate[i]), __half2float(up[i])));
}

}  // namespace

void launch_swiglu(const __half* gate, const __half* up, std::int64_t count, __half* act, const launch_options& o) {
    if (count <= 0) return;
    const int threads = 256;
    const bool paired = count % 2 == 0 && reinterpret_cast<std::uintptr_t>(gate) % 4 == 0 &&
                        reinterpret_cast<std::uintptr_t>(up) % 4 == 0 && reinterpret_cast<std::uintptr_t>(act) % 4 == 0;
    const std::int64_t work = paired ? count / 2 : count;
    const unsigned blocks = static_cast<unsigned>(std::min<std::int64_t>((work + threads - 1) / threads, 4096));
    if (paired)
        launch_kernel(swiglu_kernel, dim3(blocks), dim3(threads), 0, o, reinterpret_cast<const __half2*>(gate),
                      reinterpret_cast<const __half2*>(up), work, reinterpret_cast<__half2*>(act));
    else
        launch_kernel(swiglu_scalar_kernel, dim3(blocks), dim3(threads), 0, o, gate, up, count, act);
}

}  // namespace qbench
