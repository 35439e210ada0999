#pragma once
/// Words that say by their value whether they have been written: how the phases of a persistent kernel can hand each
/// other activations with no fence at GPU scope.
///
/// Why: a grid barrier's release (atom.add.release.gpu, a MEMBAR at GPU scope) waits, under a full weight stream,
/// about one loaded memory latency: ~0.9 us of a ~1.4 us barrier on the H100, the rest being two round trips
/// (backends/gptq/PERF_NOTES.md, fifteenth session). Data that carries its own "written" bit needs no release:
///
///     before the launch     every word of the buffer is k_unwritten (a memset: cudaMemsetAsync(buf, 0xff, bytes))
///     writer                store_once(word, value)        one relaxed 32-bit store, value != k_unwritten
///     reader                load_written(vector)           relaxed 16-byte loads until none of its words is k_unwritten
///
/// A 32-bit store is single-copy atomic, so a reader sees either k_unwritten or the final value, never a torn or a
/// stale one, whatever order the stores reach memory in: nothing needs ordering, so nothing is fenced. Polling alone
/// is slow when every CTA polls at once (17 KB a round per CTA measured 3-8 us per sync), so a reader first passes
/// grid_hint_among: a grid barrier with a relaxed arrival and relaxed polls, which orders nothing and only says "the
/// words are probably written by now". Measured on the H100's phase probe: 0.8-1.6 us per sync against 1.3-1.5 us for
/// a release barrier, and the whole step at 0.86 of the stream against 0.80 (PERF_NOTES.md).
///
/// The protocol's conditions (the callers'): each word has exactly one writer per launch; a buffer is re-armed (set
/// to k_unwritten) before the launch that writes it, never during it; a value that could equal k_unwritten goes
/// through written_word first (fp16 pairs: two 0xffff NaNs become canonical NaNs, 0x7e00).
#include "cuda/grid_barrier.cuh"
#include "qbench/common/counter_rng.hpp"  // QB_HOST_DEVICE

#include <cuda_runtime.h>

#include <cstdint>

namespace qbench {

/// What every word of a write-once buffer holds until its writer stores it (a memset of 0xff bytes).
inline constexpr std::uint32_t k_unwritten = 0xffffffffu;

/// `bits` as a storable word: k_unwritten (as fp16, two NaNs 0xffff) becomes two canonical NaNs; every other word is
/// itself. Host and device, so the CPU references can apply it as the kernels do.
QB_HOST_DEVICE constexpr std::uint32_t written_word(std::uint32_t bits) { return bits == k_unwritten ? 0x7e007e00u : bits; }

#if defined(__CUDACC__)

/// The writer's store: relaxed at GPU scope (L2, not held in this SM's L1). `value` must not be k_unwritten.
__device__ __forceinline__ void store_once(std::uint32_t* word, std::uint32_t value) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    asm volatile("st.relaxed.gpu.global.u32 [%0], %1;" ::"l"(word), "r"(value) : "memory");
#else
    (void)word, (void)value;
    __trap();
#endif
}

/// One relaxed 16-byte load at GPU scope (never served from a stale L1 line).
__device__ __forceinline__ uint4 load_relaxed(const uint4* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    uint4 v;
    asm volatile("ld.relaxed.gpu.global.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p)
                 : "memory");
    return v;
#else
    (void)p;
    __trap();
    return uint4{};
#endif
}

/// Whether all four words of a loaded vector have been written.
__device__ __forceinline__ bool all_written(const uint4& v) {
    return v.x != k_unwritten && v.y != k_unwritten && v.z != k_unwritten && v.w != k_unwritten;
}

/// The vector once all of its words are written: relaxed loads, `pause_ns` apart, until then.
__device__ __forceinline__ uint4 load_written(const uint4* p, unsigned pause_ns = 256) {
    uint4 v = load_relaxed(p);
    while (!all_written(v)) {
        __nanosleep(pause_ns);
        v = load_relaxed(p);
    }
    return v;
}

/// One word once it is written (a relaxed 32-bit load at GPU scope, `pause_ns` apart, until it is not k_unwritten).
__device__ __forceinline__ std::uint32_t load_written(const std::uint32_t* p, unsigned pause_ns = 256) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    std::uint32_t v;
    asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    while (v == k_unwritten) {
        __nanosleep(pause_ns);
        asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    }
    return v;
#else
    (void)p, (void)pause_ns;
    __trap();
    return 0;
#endif
}

/// The relaxed grid barrier among the first `Threads` threads of each CTA (named barrier `Id`, as grid_barrier_among):
/// it orders nothing (what was written before it need not be visible after it), so it is only a hint for write-once
/// readers, never a barrier for data. The counter as grid_barrier.cuh's: zeroed before the launch, the k-th hint of a
/// launch waits for k * gridDim.x.
template <int Id, int Threads>
__device__ __forceinline__ void grid_hint_among(unsigned* counter, unsigned target) {
    grid_barrier_among<Id, Threads, grid_order::relaxed>(counter, target);
}

#endif  // __CUDACC__

}  // namespace qbench
