#pragma once
/// Hopper's bulk copy engine feeding a ring of shared-memory stages: the PTX a producer/consumer kernel needs, and
/// nothing else (sm_90 and later; on older chips every function traps, so callers must not reach them there).
///
/// Why: a kernel that streams weights through registers has as many bytes in flight as its registers hold (kernel v3:
/// six 16-byte vectors per lane), and a warp waiting at a barrier stops requesting. A bulk copy
/// (cp.async.bulk, one instruction per stage, no registers) lands in shared memory and signals an mbarrier when its
/// bytes have arrived, so one producer thread can keep a deep ring full while the consumer warps compute or wait.
///
/// The protocol of a ring of S stages, stage i % S used for the i-th copy:
///
///     producer (one thread)                         consumers (C warps)
///     wait empty[s] (phase of round i / S - 1)      wait full[s] (phase of round i / S)
///     full[s].arrive_expect_tx(bytes)               read stage s
///     bulk_copy(stage s, src, bytes, full[s])       one lane per warp: empty[s].arrive()
///
/// full[s] is initialised with count 1 (the producer's arrival; the copy's bytes complete it), empty[s] with count C.
/// An mbarrier's phase parity flips each time it completes, so round r waits for parity r & 1.
#include <cuda_runtime.h>

#include <cstdint>

namespace qbench {

#if defined(__CUDACC__)

/// The 32-bit shared-window address of a shared-memory object (what the PTX below takes).
__device__ __forceinline__ std::uint32_t shared_address(const void* p) {
    return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbarrier_init(std::uint64_t* bar, std::uint32_t count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(shared_address(bar)), "r"(count) : "memory");
#else
    (void)bar, (void)count;
    __trap();
#endif
}

/// After a thread initialised the CTA's mbarriers and before any other thread or the copy engine uses them (then a
/// CTA barrier).
__device__ __forceinline__ void mbarrier_init_fence() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#else
    __trap();
#endif
}

/// Arrives once and announces `bytes` of copies that will complete the current phase.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(std::uint64_t* bar, std::uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(shared_address(bar)), "r"(bytes) : "memory");
#else
    (void)bar, (void)bytes;
    __trap();
#endif
}

/// Arrives once (release: the thread's earlier reads of the stage are done before the producer may overwrite it).
__device__ __forceinline__ void mbarrier_arrive(std::uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(shared_address(bar)) : "memory");
#else
    (void)bar;
    __trap();
#endif
}

/// Waits until the phase of parity `parity` has completed (acquire: the stage's bytes are visible afterwards).
__device__ __forceinline__ void mbarrier_wait(std::uint64_t* bar, std::uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const std::uint32_t addr = shared_address(bar);
    std::uint32_t done = 0;
    do {
        asm volatile(
            "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
            : "=r"(done)
            : "r"(addr), "r"(parity)
            : "memory");
    } while (done == 0);
#else
    (void)bar, (void)parity;
    __trap();
#endif
}

/// Whether the phase of parity `parity` has completed, without waiting (acquire when it has): for a thread that serves
/// several barriers and must not block on one of them while another is ready.
__device__ __forceinline__ bool mbarrier_test(std::uint64_t* bar, std::uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    std::uint32_t done = 0;
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}"
        : "=r"(done)
        : "r"(shared_address(bar)), "r"(parity)
        : "memory");
    return done != 0;
#else
    (void)bar, (void)parity;
    __trap();
    return false;
#endif
}

/// `bytes` (a multiple of 16; both addresses 16-byte aligned) from global memory into this CTA's shared memory by the
/// bulk copy engine; their arrival counts towards `bar`'s expected transaction bytes. Streaming data: the copy asks
/// L2 to evict the lines first (evict_first), as ld.global.cs does for register loads.
__device__ __forceinline__ void bulk_copy_to_shared(void* dst, const void* src, std::uint32_t bytes, std::uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    std::uint64_t policy = 0;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::"r"(
            shared_address(dst)),
        "l"(src), "r"(bytes), "r"(shared_address(bar)), "l"(policy)
        : "memory");
#else
    (void)dst, (void)src, (void)bytes, (void)bar;
    __trap();
#endif
}

/// A ring of Stages stages of StageBytes each in the CTA's shared memory (the caller's storage: static or dynamic),
/// with the protocol above: produce() for the producer thread, acquire() then release() for each consumer warp.
template <int Stages, std::uint32_t StageBytes>
struct bulk_ring {
    static_assert(Stages >= 1 && StageBytes % 16 == 0, "whole 16-byte vectors per stage");
    static constexpr std::uint32_t stage_vecs = StageBytes / 16;
    uint4* stages;  // Stages x StageBytes, 16-byte aligned
    std::uint64_t* full;
    std::uint64_t* empty;

    /// Every thread of the CTA calls it: thread 0 initialises the barriers (empty[s] waits for `consumer_warps`
    /// releases), then the whole CTA synchronises.
    __device__ static bulk_ring make(uint4* stages, std::uint64_t* full, std::uint64_t* empty, std::uint32_t consumer_warps) {
        if (threadIdx.x == 0) {
            for (int s = 0; s < Stages; ++s) {
                mbarrier_init(&full[s], 1);
                mbarrier_init(&empty[s], consumer_warps);
            }
            mbarrier_init_fence();
        }
        __syncthreads();
        return bulk_ring{stages, full, empty};
    }
    /// The producer's i-th copy (i = 0, 1, ...): StageBytes from `src` into stage i % Stages, once its last use is
    /// released.
    __device__ void produce(std::uint32_t i, const void* src) const {
        produce_gather(i, 1, [src](std::uint32_t) { return src; });
    }
    /// The same with the stage gathered from `parts` equal pieces (StageBytes / parts each, a multiple of 16), piece k
    /// from src_of(k): one chunk per consumer warp from each warp's own run, say, as kernel v3's layout has them.
    template <class SrcOf>
    __device__ void produce_gather(std::uint32_t i, std::uint32_t parts, SrcOf src_of) const {
        const std::uint32_t piece = StageBytes / parts;
        produce_pieces(i, StageBytes, [&](unsigned char* stage, std::uint64_t* bar) {
            for (std::uint32_t k = 0; k < parts; ++k) bulk_copy_to_shared(stage + k * piece, src_of(k), piece, bar);
        });
    }
    /// The most general form: once the stage is free, announces `bytes` (at most StageBytes) and calls
    /// issue(stage, bar), which issues bulk_copy_to_shared copies of exactly that many bytes in all into the stage.
    template <class Issue>
    __device__ void produce_pieces(std::uint32_t i, std::uint32_t bytes, Issue issue) const {
        const std::uint32_t s = i % Stages, round = i / Stages;
        if (round > 0) mbarrier_wait(&empty[s], (round - 1) & 1);
        mbarrier_arrive_expect_tx(&full[s], bytes);
        issue(reinterpret_cast<unsigned char*>(stages + s * stage_vecs), &full[s]);
    }
    /// A consumer warp's wait for the i-th copy: the stage holding it.
    __device__ const uint4* acquire(std::uint32_t i) const {
        mbarrier_wait(&full[i % Stages], (i / Stages) & 1);
        return stages + (i % Stages) * stage_vecs;
    }
    /// The warp is done reading the i-th copy (every lane calls it; one arrival per warp).
    __device__ void release(std::uint32_t i, int lane) const {
        __syncwarp();
        if (lane == 0) mbarrier_arrive(&empty[i % Stages]);
    }
};

/// One ring per consumer warp: ring w has Slots slots of SlotBytes, filled by its own producer thread (one lane of a
/// producer warp, say) and read by consumer warp w alone, each at its own pace. Why: a stage shared by every warp must
/// gather one small piece per warp, and the bulk copy engine costs about the same per copy whatever its size (~80
/// cycles an SM on the H100: backends/gptq/PERF_NOTES.md, sixteenth session); a warp's own slot can be one large
/// piece of its own contiguous run.
template <int Warps, int Slots, std::uint32_t SlotBytes>
struct warp_rings {
    static_assert(Warps >= 1 && Slots >= 1 && SlotBytes % 16 == 0, "whole 16-byte vectors per slot");
    static constexpr std::uint32_t slot_vecs = SlotBytes / 16;
    static constexpr std::size_t bytes = static_cast<std::size_t>(Warps) * Slots * SlotBytes;
    uint4* slots;          // Warps x Slots x SlotBytes, 16-byte aligned
    std::uint64_t* full;   // Warps x Slots
    std::uint64_t* empty;  // Warps x Slots

    /// Every thread of the CTA calls it: thread 0 initialises the barriers (one arrival each: the ring's producer
    /// thread for full, its consumer warp for empty), then the whole CTA synchronises.
    __device__ static warp_rings make(uint4* slots, std::uint64_t* full, std::uint64_t* empty) {
        if (threadIdx.x == 0) {
            for (int s = 0; s < Warps * Slots; ++s) {
                mbarrier_init(&full[s], 1);
                mbarrier_init(&empty[s], 1);
            }
            mbarrier_init_fence();
        }
        __syncthreads();
        return warp_rings{slots, full, empty};
    }
    __device__ unsigned char* slot(int w, std::uint32_t i) const {
        return reinterpret_cast<unsigned char*>(slots + (static_cast<std::size_t>(w) * Slots + i % Slots) * slot_vecs);
    }
    /// Ring w's producer, for its i-th slot (i = 0, 1, ...): waits until the slot's last use is released, announces
    /// `bytes` (at most SlotBytes), and returns the barrier its bulk_copy_to_shared copies into slot(w, i) complete on.
    __device__ std::uint64_t* produce(int w, std::uint32_t i, std::uint32_t bytes) const {
        const int s = w * Slots + static_cast<int>(i % Slots);
        const std::uint32_t round = i / Slots;
        if (round > 0) mbarrier_wait(&empty[s], (round - 1) & 1);
        mbarrier_arrive_expect_tx(&full[s], bytes);
        return &full[s];
    }
    /// The same without waiting: the barrier when the slot is free (its bytes announced), else nullptr and nothing done.
    /// Why: one thread serving several rings would otherwise wait on one ring while another has a free slot (and
    /// lanes of one warp that wait in turn reconverge, so each waits for the slowest ring).
    __device__ std::uint64_t* try_produce(int w, std::uint32_t i, std::uint32_t bytes) const {
        const int s = w * Slots + static_cast<int>(i % Slots);
        const std::uint32_t round = i / Slots;
        if (round > 0 && !mbarrier_test(&empty[s], (round - 1) & 1)) return nullptr;
        mbarrier_arrive_expect_tx(&full[s], bytes);
        return &full[s];
    }
    /// Consumer warp w's wait for its i-th slot.
    __device__ const uint4* acquire(int w, std::uint32_t i) const {
        mbarrier_wait(&full[w * Slots + static_cast<int>(i % Slots)], (i / Slots) & 1);
        return reinterpret_cast<const uint4*>(slot(w, i));
    }
    /// Consumer warp w is done reading its i-th slot (every lane calls it; one arrival).
    __device__ void release(int w, std::uint32_t i, int lane) const {
        __syncwarp();
        if (lane == 0) mbarrier_arrive(&empty[w * Slots + static_cast<int>(i % Slots)]);
    }
};

#endif  // __CUDACC__

}  // namespace qbench
