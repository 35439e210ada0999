#pragma once
/// Warp and block reductions shared by the kernels (device code only).
#include <cuda_runtime.h>

namespace qbench {

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

template <class T>
__device__ __forceinline__ T warp_sum_t(T v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

/// Sum over `warps` whole warps (threads tid < 32 * warps, tid the thread's index among them; float or double): every
/// one of them gets the result. `sync` is their barrier (__syncthreads for a whole block, a named barrier for a part of
/// one, as in a persistent kernel); `scratch` holds 32 values. The order of additions is fixed by the thread layout,
/// so the result is deterministic.
template <class T, class Sync>
__device__ __forceinline__ T group_sum(T v, T* scratch, int tid, int warps, Sync sync) {
    const int lane = tid & 31, warp = tid >> 5;
    v = warp_sum_t(v);
    sync();  // scratch may still be read by a previous reduction
    if (lane == 0) scratch[warp] = v;
    sync();
    v = lane < warps ? scratch[lane] : T(0);
    return warp_sum_t(v);
}

/// The maximum over `warps` whole warps, as group_sum.
template <class Sync>
__device__ __forceinline__ float group_max(float v, float* scratch, int tid, int warps, Sync sync) {
    const int lane = tid & 31, warp = tid >> 5;
    v = warp_max(v);
    sync();
    if (lane == 0) scratch[warp] = v;
    sync();
    v = lane < warps ? scratch[lane] : -INFINITY;
    return warp_max(v);
}

struct block_sync {
    __device__ __forceinline__ void operator()() const { __syncthreads(); }
};

/// Sum over the block (float or double); every thread gets the result. `scratch` holds 32 values; blockDim.x is a
/// multiple of 32.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
    return group_sum(v, scratch, static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x >> 5), block_sync{});
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
    return group_max(v, scratch, static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x >> 5), block_sync{});
}

}  // namespace qbench
