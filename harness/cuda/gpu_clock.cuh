#pragma once
/// Clocks for in-kernel traces (measurement only): the GPU's nanosecond timer, common to every SM (so stamps of
/// different CTAs and kernels compare), and the SM a thread runs on.
#if defined(__CUDACC__)
namespace qbench {

__device__ __forceinline__ unsigned long long gpu_time_ns() {
    unsigned long long t = 0;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

__device__ __forceinline__ unsigned sm_index() {
    unsigned sm = 0;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    return sm;
}

}  // namespace qbench
#endif  // __CUDACC__
