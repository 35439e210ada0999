#pragma once
/// A grid-wide barrier for persistent kernels: every CTA of the grid arrives, then all go on, with everything written
/// before the barrier visible to every CTA after it.
///
/// Why not cooperative_groups' grid sync: the same idea, but its state is the runtime's; here the counter is ours (a
/// memset node in the same graph resets it for each replay, visibly) and the memory semantics are spelled out, so the
/// cost of one barrier can be measured on its own (bench_gptq's BM_phase_stream). Why it is safe only under a
/// cooperative launch (launch_options::cooperative): a CTA spins until every other CTA has arrived, so every CTA must
/// be resident at once, which a cooperative launch guarantees (or refuses to launch). Measured on the H200 (backends/
/// gptq/PERF_NOTES.md, twelfth session): ~1.5-2.8 us per barrier in a streaming grid, more than a PDL kernel boundary.
///
/// The counter: one unsigned in global memory, zeroed before the launch (a memset node in the same graph), counting
/// arrivals monotonically; the k-th barrier of a launch (k = 1, 2, ...) waits until it reaches k * gridDim.x, so no
/// reset (and no second counter) is needed between barriers. One thread per CTA arrives with release semantics (its
/// CTA's writes, ordered before it by the first __syncthreads, are published) and spins with acquire semantics (every
/// other CTA's published writes are visible to it, and to its CTA after the second __syncthreads).
#include <cuda_runtime.h>

namespace qbench {

#if defined(__CUDACC__)
/// The memory ordering of an arrival and its polls: `acq_rel` (a barrier: everything written before it is visible
/// after it), or `relaxed` (no fence: a hint that orders nothing, for data that says by itself whether it is written,
/// harness/cuda/write_once.cuh; its release is what a barrier costs under a full stream, ~0.9 of ~1.4 us on the H100,
/// backends/gptq/PERF_NOTES.md, fifteenth session).
enum class grid_order { acq_rel, relaxed };

/// One thread of the CTA arrives for it and waits (both CTA barriers around it are the caller's).
template <grid_order Order = grid_order::acq_rel>
__device__ __forceinline__ void grid_barrier_arrive_and_wait(unsigned* counter, unsigned target) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    unsigned seen = 0;
    if constexpr (Order == grid_order::acq_rel) {
        asm volatile("atom.add.release.gpu.u32 %0, [%1], 1;" : "=r"(seen) : "l"(counter) : "memory");
        ++seen;  // atom returns the value before this CTA's arrival
        while (seen < target) asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(seen) : "l"(counter) : "memory");
    } else {
        asm volatile("atom.add.relaxed.gpu.u32 %0, [%1], 1;" : "=r"(seen) : "l"(counter) : "memory");
        ++seen;
        while (seen < target) asm volatile("ld.relaxed.gpu.u32 %0, [%1];" : "=r"(seen) : "l"(counter) : "memory");
    }
#else
    (void)counter, (void)target;
    __trap();  // no acquire / release before sm_70: persistent kernels are not built for it
#endif
}

__device__ __forceinline__ void grid_barrier(unsigned* counter, unsigned target) {
    __syncthreads();
    if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) grid_barrier_arrive_and_wait(counter, target);
    __syncthreads();
}

/// The same among the first `Threads` threads of each CTA only (named barrier `Id`, 1..15; 0 is __syncthreads'), so
/// that other warps of the CTA (a producer feeding shared memory, say) run on meanwhile. Immediate operands: with a
/// register id ptxas reserves all 16 of the SM's barriers for the CTA.
template <int Id, int Threads, grid_order Order = grid_order::acq_rel>
__device__ __forceinline__ void grid_barrier_among(unsigned* counter, unsigned target) {
    static_assert(Id >= 1 && Id < 16 && Threads % 32 == 0, "a named barrier of whole warps");
    asm volatile("bar.sync %0, %1;" ::"n"(Id), "n"(Threads) : "memory");
    if (threadIdx.x == 0) grid_barrier_arrive_and_wait<Order>(counter, target);
    asm volatile("bar.sync %0, %1;" ::"n"(Id), "n"(Threads) : "memory");
}
#endif  // __CUDACC__

}  // namespace qbench
