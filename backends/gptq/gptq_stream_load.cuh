#pragma once
/// How the GPTQ kernels read their weights and scales: streamed once per forward, never written while a kernel runs
/// (so they may be read before griddepcontrol.wait and through the non-coherent path). Two policies, measured against
/// each other (QBENCH_GPTQ_LOAD, PERF_NOTES.md): ld.global.cs (allocates in L1, evict-first) and
/// ld.global.nc.L1::no_allocate (past L1, as the fp16 GEMV reads its weights).
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace qbench::gptq {

/// QBENCH_GPTQ_LOAD=na reads past L1; anything else (the default) keeps ld.global.cs.
inline bool weight_loads_bypass_l1() {
    const char* v = std::getenv("QBENCH_GPTQ_LOAD");
    return v != nullptr && std::string(v) == "na";
}

#if defined(__CUDACC__)
template <bool NoAlloc>
__device__ __forceinline__ uint4 stream_load(const uint4* p) {
    if constexpr (NoAlloc) {
        uint4 v;
        asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                     : "l"(p));
        return v;
    } else {
        return __ldcs(p);
    }
}
template <bool NoAlloc>
__device__ __forceinline__ uint2 stream_load(const uint2* p) {
    if constexpr (NoAlloc) {
        uint2 v;
        asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
        return v;
    } else {
        return __ldcs(p);
    }
}
template <bool NoAlloc>
__device__ __forceinline__ std::uint32_t stream_load(const std::uint32_t* p) {
    if constexpr (NoAlloc) {
        std::uint32_t v;
        asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(v) : "l"(p));
        return v;
    } else {
        return __ldcs(p);
    }
}
#endif

}  // namespace qbench::gptq
