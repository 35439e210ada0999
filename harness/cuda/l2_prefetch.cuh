#pragma once
/// A hint to the memory system: bring [p, p + bytes) into L2 through the bulk copy engine (sm_90's
/// cp.async.bulk.prefetch.L2; p 16-byte aligned, bytes a multiple of 16; a no-op on older GPUs). Why kernels use it:
/// one instruction keeps a whole run of DRAM requests in flight without registers or shared memory, and a kernel may
/// issue it for its weights before griddepcontrol.wait, while the previous kernel's last CTAs still run. So far every
/// use measured slower than none (bnb's in-loop "-p2" shapes; QBENCH_GPTQ_L2PRE and QBENCH_BNB_L2PRE before the wait:
/// +35% and +12% on the H200, backends/*/PERF_NOTES.md, eleventh session), so all of them are off by default.
#include <cuda_runtime.h>

namespace qbench {

#if defined(__CUDACC__)
/// The same for the one L2 line holding `p`, as an ordinary instruction (prefetch.global.L2): for scattered rows, a
/// thread each, where a bulk prefetch would need one request per row.
__device__ __forceinline__ void prefetch_l2_line(const void* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#else
    (void)p;
#endif
}

__device__ __forceinline__ void prefetch_l2(const void* p, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
    (void)p;
    (void)bytes;
#endif
}

/// The lanes of a warp share [p, p + bytes) out in 16-byte-aligned pieces, one prefetch_l2 each (bytes: a multiple
/// of 16; every lane calls it with the same arguments).
__device__ __forceinline__ void warp_prefetch_l2(const char* p, unsigned bytes, int lane) {
    if (bytes == 0) return;
    const unsigned piece = ((bytes + 31u) / 32u + 15u) & ~15u;
    const unsigned begin = static_cast<unsigned>(lane) * piece;
    if (begin < bytes) prefetch_l2(p + begin, min(piece, bytes - begin));
}
#endif

}  // namespace qbench
