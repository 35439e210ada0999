// The phase-boundary probe of phase_stream.cuh.
#include "phase_stream.cuh"

#include "cuda/bulk_ring.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/grid_barrier.cuh"
#include "cuda/launch.cuh"
#include "cuda/write_once.cuh"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace qbench::gptq::test {

namespace {

constexpr int k_threads = 512;
constexpr int k_stages = 6;          // 512-byte requests in flight per warp: v3's ring at 4 bits
constexpr int k_deep_stages = 12;    // twice as many (phase_stream_plan::deep): more than v3's 64 registers allow it
constexpr int k_max_phases = 256;
constexpr std::size_t k_table_offset = 4096, k_norm_in = 8192, k_norm_out = 16384, k_sink_offset = 32768;
constexpr std::size_t k_x_offset = 65536, k_y_offset = 131072, k_scratch_bytes = 256 * 1024;
constexpr std::size_t k_flags_offset = k_scratch_bytes;  // ring_flags: one word per consumer warp per phase
static_assert(k_flags_offset + (4u << 20) == phase_stream_scratch_bytes, "the flags take the last 4 MB of the scratch");

constexpr std::uint32_t k_ring_stage_bytes = 8192;  // one 512-byte request per consumer warp of a CTA
constexpr int k_ring_threads = k_threads + 32;      // 16 consumer warps and the producer warp

struct phase_desc {
    const uint4* base;        // the phase's region
    std::uint32_t requests;   // per warp; 0 = a norm phase
    std::uint32_t pad;
};

// ---- grid barriers with their memory ordering taken apart (measurement only) ----

/// How a CTA's arriving thread arrives and polls (grid_barrier_arrive_and_wait in harness/cuda/grid_barrier.cuh is
/// `acq_rel`: a release arrival, acquire polls). The others price the parts: `relaxed` has no fence at all (nothing
/// written before it is guaranteed visible after it: grid_order::relaxed, write_once.cuh's hint, never a barrier for
/// data); `release_only` and `relaxed_arrival` keep one half; `acquire_once` is release, relaxed polls, then a single
/// acquire load of the counter once it has reached the target (which synchronises with every arrival, as each is a
/// release RMW of the one counter): a correct barrier without an acquire per poll.
enum class barrier_order : int { acq_rel = 1, relaxed = 2, release_only = 4, acquire_once = 5, relaxed_arrival = 6 };

__device__ __forceinline__ void arrive_and_wait_ordered(unsigned* counter, unsigned target, barrier_order order) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    if (order == barrier_order::acq_rel) {
        grid_barrier_arrive_and_wait(counter, target);
        return;
    }
    if (order == barrier_order::relaxed) {
        grid_barrier_arrive_and_wait<grid_order::relaxed>(counter, target);
        return;
    }
    unsigned seen = 0;
    if (order == barrier_order::relaxed_arrival)
        asm volatile("atom.add.relaxed.gpu.u32 %0, [%1], 1;" : "=r"(seen) : "l"(counter) : "memory");
    else
        asm volatile("atom.add.release.gpu.u32 %0, [%1], 1;" : "=r"(seen) : "l"(counter) : "memory");
    ++seen;
    if (order == barrier_order::relaxed_arrival) {
        while (seen < target) asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(seen) : "l"(counter) : "memory");
        return;
    }
    while (seen < target) asm volatile("ld.relaxed.gpu.u32 %0, [%1];" : "=r"(seen) : "l"(counter) : "memory");
    if (order == barrier_order::acquire_once) asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(seen) : "l"(counter) : "memory");
#else
    (void)counter, (void)target, (void)order;
    __trap();
#endif
}

/// The grid barrier of the whole CTA (grid_barrier) with the given ordering.
__device__ __forceinline__ void grid_barrier_ordered(unsigned* counter, unsigned target, barrier_order order) {
    __syncthreads();
    if (threadIdx.x == 0) arrive_and_wait_ordered(counter, target, order);
    __syncthreads();
}

/// The grid barrier among the first Threads threads of each CTA (named barrier Id) with the given ordering.
template <int Id, int Threads>
__device__ __forceinline__ void grid_barrier_among_ordered(unsigned* counter, unsigned target, barrier_order order) {
    asm volatile("bar.sync %0, %1;" ::"n"(Id), "n"(Threads) : "memory");
    if (threadIdx.x == 0) arrive_and_wait_ordered(counter, target, order);
    asm volatile("bar.sync %0, %1;" ::"n"(Id), "n"(Threads) : "memory");
}

// ---- one kernel per phase (schedule `launches`) ----

/// Work instructions on a 16-byte vector besides the XOR: four independent chains of LOP3 (volatile, so that the
/// compiler keeps every one), standing in for a kernel's decode and mma work per vector.
template <int Work>
__device__ __forceinline__ std::uint32_t busy_work(const uint4& v) {
    std::uint32_t c[4] = {v.x, v.y, v.z, v.w};
    const std::uint32_t k = 0x5bd1e995u;
#pragma unroll
    for (int i = 0; i < Work / 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) asm volatile("lop3.b32 %0, %0, %1, %2, 0x96;" : "+r"(c[j]) : "r"(k), "r"(c[(j + 1) & 3]));
    return c[0] ^ c[1] ^ c[2] ^ c[3];
}

/// A vector into the warp's running XOR, with Work instructions of busy_work.
template <int Work>
__device__ __forceinline__ void fold(std::uint32_t& acc, const uint4& v) {
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
    if constexpr (Work > 0) acc ^= busy_work<Work>(v);
}

/// The warp's XOR across its lanes into sink[warp] (so that no load is dead code).
__device__ __forceinline__ void store_warp_xor(std::uint32_t acc, std::uint32_t* sink, std::size_t warp, int lane) {
#pragma unroll
    for (int o = 16; o >= 1; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) sink[warp] = acc;
}

/// Streams one warp's run of `requests` 512-byte requests (Stages in flight), XOR-ing them into `acc` with
/// use(request) (a shared-memory read of the activations, or nothing) and Work instructions each (busy_work);
/// `between` runs once the first loads are in flight (the PDL wait of a per-phase kernel).
template <int Stages, int Work = 0, class Between, class Use>
__device__ __forceinline__ void stream_run(const uint4* run, std::uint32_t requests, std::uint32_t& acc, Between between,
                                           Use use) {
    uint4 ring[Stages];
#pragma unroll
    for (int i = 0; i < Stages; ++i)
        if (static_cast<std::uint32_t>(i) < requests) ring[i] = __ldcs(run + i * 32);
    between();
    for (std::uint32_t b = 0; b < requests; b += Stages) {
#pragma unroll
        for (int i = 0; i < Stages; ++i) {
            if (b + i < requests) {
                fold<Work>(acc, ring[i]);
                acc ^= use(b + i);
                if (b + i + Stages < requests) ring[i] = __ldcs(run + (b + i + Stages) * 32);
            }
        }
    }
}

constexpr int k_outputs_per_cta = 48;  // 3 mtiles of 16 columns at one row: what a v3 CTA reduces at the end

/// A per-phase kernel, shaped (phase_shape) like kernel v3 or bare: with `staged_x` the CTA copies x_vecs vectors of
/// activations from L2 into shared memory after the wait (one barrier) and each request reads a word of them; with
/// `staged_x_reduced` besides, each warp parks 48 partial sums in shared memory at the end and, after a barrier, 48
/// threads add the 16 warps' and store them.
template <int Stages, int Work>
__global__ void __launch_bounds__(k_threads, 2) phase_kernel(const uint4* base, std::uint32_t requests, std::uint32_t* sink,
                                                             const uint4* x, int x_vecs, int shape, float* y) {
    extern __shared__ uint4 xs[];
    const int tid = static_cast<int>(threadIdx.x), lane = tid & 31;
    const std::size_t warp = (static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
    const bool staged = shape >= static_cast<int>(phase_shape::staged_x);
    const auto* words = reinterpret_cast<const std::uint32_t*>(xs);
    const std::uint32_t word_mask = static_cast<std::uint32_t>(x_vecs) * 4 - 1;  // x_vecs: a power of two
    std::uint32_t acc = 0;
    stream_run<Stages, Work>(
        base + warp * requests * 32 + lane, requests, acc,
        [&] {
            pdl_wait();
            pdl_trigger();
            if (staged) {
                for (int i = tid; i < x_vecs; i += k_threads) xs[i] = x[i];
                __syncthreads();
            }
        },
        [&](std::uint32_t r) { return staged ? words[(r * 32 + static_cast<std::uint32_t>(lane)) & word_mask] : 0u; });
    store_warp_xor(acc, sink, warp, lane);
    if (shape == static_cast<int>(phase_shape::staged_x_reduced)) {
        float* red = reinterpret_cast<float*>(xs + x_vecs);
        const int w = tid >> 5;
        for (int i = lane; i < k_outputs_per_cta; i += 32) red[w * k_outputs_per_cta + i] = static_cast<float>(acc & 0xffu) + i;
        __syncthreads();
        if (tid < k_outputs_per_cta) {
            float sum = 0.0f;
#pragma unroll
            for (int v = 0; v < k_threads / 32; ++v) sum += red[v * k_outputs_per_cta + tid];
            y[blockIdx.x * k_outputs_per_cta + tid] = sum;
        }
    }
}

// A norm phase as the executor's RMSNorm kernel at beam 1: one CTA, one 8 KB row in and out, early trigger.
__global__ void norm_phase_kernel(const uint4* in, uint4* out) {
    pdl_enter(true);
    out[threadIdx.x] = in[threadIdx.x];
}

// ---- one persistent kernel (schedules barrier, barrier_prefetch, no_barrier) ----

/// Where a warp is in the sequence of phases: a phase index (norm phases skipped) and a request within it.
struct cursor {
    int phase;
    std::uint32_t request;
};

/// Moves to the next request; returns how many phase boundaries it crossed (1 + the norm phases in between).
__device__ __forceinline__ int advance(cursor& c, const phase_desc* table, int phases) {
    if (++c.request < table[c.phase].requests) return 0;
    c.request = 0;
    int crossed = 0;
    do {
        ++c.phase;
        ++crossed;
    } while (c.phase < phases && table[c.phase].requests == 0);
    return crossed;
}

template <int Work>
__global__ void __launch_bounds__(k_threads, 2) persistent_kernel(const phase_desc* table, int phases, int schedule,
                                                                   unsigned* counter, std::uint32_t* sink) {
    const int lane = static_cast<int>(threadIdx.x & 31);
    const std::size_t warp = (static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
    const bool barriers = schedule != static_cast<int>(phase_schedule::no_barrier);
    const bool relaxed = schedule == static_cast<int>(phase_schedule::barrier_prefetch_relaxed);
    unsigned barriers_passed = 0;
    auto address = [&](const cursor& c) { return table[c.phase].base + (warp * table[c.phase].requests + c.request) * 32 + lane; };
    std::uint32_t acc = 0;
    cursor first{0, 0};
    while (first.phase < phases && table[first.phase].requests == 0) ++first.phase;  // a leading norm phase: no barrier
    if (schedule == static_cast<int>(phase_schedule::barrier)) {
        // Phase by phase: the barrier, then this phase's first loads.
        for (int p = first.phase; p < phases; ++p) {
            if (p > first.phase && barriers) grid_barrier(counter, ++barriers_passed * gridDim.x);
            const std::uint32_t requests = table[p].requests;
            if (requests == 0) continue;
            stream_run<k_stages, Work>(table[p].base + warp * requests * 32 + lane, requests, acc, [] {},
                                       [](std::uint32_t) { return 0u; });
        }
    } else {
        // One ring over all phases: the loads run k_stages requests ahead of the use, across phase boundaries, so the
        // next phase's first requests are in flight while the warp waits at the barrier.
        cursor load = first, use = first;
        uint4 ring[k_stages];
#pragma unroll
        for (int i = 0; i < k_stages; ++i) {
            if (load.phase < phases) {
                ring[i] = __ldcs(address(load));
                advance(load, table, phases);
            }
        }
        while (use.phase < phases) {
#pragma unroll
            for (int i = 0; i < k_stages; ++i) {
                if (use.phase >= phases) break;
                fold<Work>(acc, ring[i]);
                if (load.phase < phases) {
                    ring[i] = __ldcs(address(load));
                    advance(load, table, phases);
                }
                const int crossed = advance(use, table, phases);
                if (barriers && use.phase < phases)
                    for (int b = 0; b < crossed; ++b) grid_barrier_ordered(counter, ++barriers_passed * gridDim.x,
                                                                    relaxed ? barrier_order::relaxed : barrier_order::acq_rel);
            }
        }
    }
    store_warp_xor(acc, sink, warp, lane);
}

// ---- one persistent kernel fed by the bulk copy engine (schedule ring) ----

/// A CTA's ring of Stages x 8 KB in dynamic shared memory (bulk_ring.cuh), its barriers static; every thread calls
/// it. Consumer warp w reads the w-th 512 bytes of each stage.
template <int Stages>
struct cta_ring {
    using ring = bulk_ring<Stages, k_ring_stage_bytes>;
    static constexpr int consumer_warps = k_threads / 32;
    __device__ static ring make() {
        extern __shared__ uint4 ring_stages[];
        __shared__ std::uint64_t full_bars[Stages], empty_bars[Stages];
        return ring::make(ring_stages, full_bars, empty_bars, consumer_warps);
    }
    /// Warp w's 16 bytes per lane of the i-th stage, released once read.
    __device__ static uint4 consume(const ring& r, std::uint32_t i, int w, int lane) {
        const uint4 v = r.acquire(i)[static_cast<std::uint32_t>(w) * 32 + static_cast<std::uint32_t>(lane)];
        r.release(i, lane);
        return v;
    }
};

// ---- the data as its own flag (schedule ring_flags) ----

// ring_kernel's `barriers` besides the barrier_order values: none, and the two flag schedules.
constexpr int k_no_barriers = 0, k_flags = 3, k_flags_hinted = 7;

/// The consumers of a CTA wait until none of `vecs` 16-byte vectors of a phase's outputs holds an unwritten word:
/// each thread polls its (at most 4) vectors at once, all again while any is unwritten, then the consumers' named
/// barrier. No fence, no counter: each word has one writer, and a relaxed load sees its relaxed store eventually.
template <int Threads, unsigned PollPauseNs>
__device__ __forceinline__ void wait_until_written(const uint4* outputs, int vecs, int tid) {
    constexpr int k_per_thread = 4;
    for (bool written = false; !written;) {
        uint4 v[k_per_thread];
#pragma unroll
        for (int k = 0; k < k_per_thread; ++k)
            if (tid + k * Threads < vecs) v[k] = load_relaxed(outputs + tid + k * Threads);
        written = true;
#pragma unroll
        for (int k = 0; k < k_per_thread; ++k)
            if (tid + k * Threads < vecs && !all_written(v[k])) written = false;
        // Without a pause the early CTAs' polls (264 x 17 KB a round) crowd L2 while the stream still runs: measured
        // 4-9 us per sync on the H100 with back-to-back rounds (PERF_NOTES.md, fifteenth session).
        if (!written && PollPauseNs > 0) __nanosleep(PollPauseNs);
    }
    asm volatile("bar.sync 1, %0;" ::"n"(Threads) : "memory");
}

/// Warp 16 of each CTA is the producer: its first thread walks every phase's share of the CTA (the 16 warps' runs
/// are contiguous, so the CTA's share of a phase is one region of requests x 8 KB) and copies it stage by stage into
/// the ring, waiting only for a stage to be released. The 16 consumer warps take stage after stage (warp w the w-th
/// 512 bytes: the same bytes a warp of the other schedules reads, in another order), release it, and take the grid
/// barriers between phases among themselves (named barrier 1), as schedule `barrier` does.
/// `barriers`: k_no_barriers, k_flags / k_flags_hinted (the data as its own flag), else grid barriers of that
/// barrier_order. Flags: each consumer warp writes one word per phase (its running XOR, never the unwritten pattern)
/// into `flags` (phases x grid x 16 words, unwritten at the launch), and the CTA's consumers start a phase only once
/// every word of the previous linear phase is written: a CTA needs all of x, as v3 does. The norm phases take no
/// sync (each CTA would normalise x itself).
template <int Stages, int Work>
__global__ void __launch_bounds__(k_ring_threads, 2) ring_kernel(const phase_desc* table, int phases, unsigned* counter,
                                                                 std::uint32_t* sink, int barriers, std::uint32_t* flags,
                                                                 bool gather) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    constexpr int consumer_warps = cta_ring<Stages>::consumer_warps;
    constexpr std::uint32_t stage_vecs = cta_ring<Stages>::ring::stage_vecs;
    const auto ring = cta_ring<Stages>::make();
    const int tid = static_cast<int>(threadIdx.x), w = tid >> 5, lane = tid & 31;
    const std::size_t first_warp = static_cast<std::size_t>(blockIdx.x) * consumer_warps;
    if (w == consumer_warps) {  // the producer
        if (lane != 0) return;
        std::uint32_t i = 0;
        for (int p = 0; p < phases; ++p) {
            const std::uint32_t requests = table[p].requests;
            const uint4* src = table[p].base + first_warp * requests * 32;
            for (std::uint32_t j = 0; j < requests; ++j, ++i) {
                if (gather)  // warp w's j-th 512 bytes of its own run, as v3's layout would have them: 16 copies
                    ring.produce_gather(i, consumer_warps, [&](std::uint32_t k) { return src + (k * requests + j) * 32; });
                else
                    ring.produce(i, src + j * stage_vecs);
            }
        }
        return;
    }
    std::uint32_t acc = 0, i = 0;
    unsigned barriers_passed = 0;
    int first = 0;
    while (first < phases && table[first].requests == 0) ++first;  // a leading norm phase: no barrier
    const int words = static_cast<int>(gridDim.x) * consumer_warps;  // per phase
    int previous = -1;                                                 // ring_flags: the last linear phase
    for (int p = first; p < phases; ++p) {
        const std::uint32_t requests = table[p].requests;
        const bool flag_sync = barriers == k_flags || barriers == k_flags_hinted;
        if (flag_sync) {
            if (requests == 0) continue;
            if (previous >= 0) {
                // hinted: a relaxed grid barrier first, so that the words are read once they are likely all written
                if (barriers == k_flags_hinted)
                    grid_barrier_among_ordered<1, k_threads>(counter, ++barriers_passed * gridDim.x,
                                                             barrier_order::relaxed);
                const auto* outputs = reinterpret_cast<const uint4*>(flags + static_cast<std::size_t>(previous) * words);
                wait_until_written<k_threads, 256>(outputs, words / 4, tid);
            }
        } else if (p > first && barriers != k_no_barriers) {
            grid_barrier_among_ordered<1, k_threads>(counter, ++barriers_passed * gridDim.x,
                                                     static_cast<barrier_order>(barriers));
        }
        for (std::uint32_t j = 0; j < requests; ++j, ++i) fold<Work>(acc, cta_ring<Stages>::consume(ring, i, w, lane));
        if (flag_sync) {
            if (lane == 0)
                store_once(flags + static_cast<std::size_t>(p) * words + blockIdx.x * consumer_warps + w, acc & 0x7fffffffu);
            previous = p;
        }
    }
    store_warp_xor(acc, sink, first_warp + static_cast<std::size_t>(w), lane);
#else
    (void)table, (void)phases, (void)counter, (void)sink, (void)barriers, (void)flags, (void)gather;
    __trap();
#endif
}

/// One phase of schedule `launches_ring`: the CTA's share of the phase through its ring, the producer's first Stages
/// copies issued before the PDL wait (the weights are constants), the consumers after it. `share` 2
/// (`launches_ring_overlap`): one CTA per SM takes the shares of two, so that the next phase's CTA finds room beside
/// it and fills its ring while this one works.
template <int Stages, int Work>
__global__ void __launch_bounds__(k_ring_threads, 2) phase_ring_kernel(const uint4* base, std::uint32_t requests,
                                                                       std::uint32_t* sink, std::uint32_t share) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    constexpr int consumer_warps = cta_ring<Stages>::consumer_warps;
    const auto ring = cta_ring<Stages>::make();
    const int tid = static_cast<int>(threadIdx.x), w = tid >> 5, lane = tid & 31;
    const std::size_t first_warp = static_cast<std::size_t>(blockIdx.x) * consumer_warps;
    if (w == consumer_warps) {
        if (lane != 0) return;
        const uint4* src = base + first_warp * share * requests * 32;
        for (std::uint32_t j = 0; j < share * requests; ++j) ring.produce(j, src + j * cta_ring<Stages>::ring::stage_vecs);
        return;
    }
    pdl_wait();
    pdl_trigger();
    std::uint32_t acc = 0;
    for (std::uint32_t j = 0; j < share * requests; ++j) fold<Work>(acc, cta_ring<Stages>::consume(ring, j, w, lane));
    store_warp_xor(acc, sink, first_warp + static_cast<std::size_t>(w), lane);
#else
    (void)base, (void)requests, (void)sink, (void)share;
    __trap();
#endif
}

using phase_ring_kernel_ptr = void (*)(const uint4*, std::uint32_t, std::uint32_t*, std::uint32_t);
phase_ring_kernel_ptr phase_ring_kernel_of(int stages, int work) {
    if (stages == 12) return work == 0 ? &phase_ring_kernel<12, 0> : &phase_ring_kernel<12, 48>;
    if (stages == 6) return work == 0 ? &phase_ring_kernel<6, 0> : &phase_ring_kernel<6, 48>;
    throw std::invalid_argument("phase_stream: a ring of 6 or 12 stages");
}

using ring_kernel_ptr = void (*)(const phase_desc*, int, unsigned*, std::uint32_t*, int, std::uint32_t*, bool);
ring_kernel_ptr ring_kernel_of(int stages, int work) {
    if (stages == 12) return work == 0 ? &ring_kernel<12, 0> : &ring_kernel<12, 48>;
    if (stages == 6) return work == 0 ? &ring_kernel<6, 0> : &ring_kernel<6, 48>;
    throw std::invalid_argument("phase_stream: a ring of 6 or 12 stages");
}
using persistent_kernel_ptr = void (*)(const phase_desc*, int, int, unsigned*, std::uint32_t*);
persistent_kernel_ptr persistent_kernel_of(int work) { return work == 0 ? &persistent_kernel<0> : &persistent_kernel<48>; }
using phase_kernel_ptr = void (*)(const uint4*, std::uint32_t, std::uint32_t*, const uint4*, int, int, float*);
phase_kernel_ptr phase_kernel_of(bool deep, int work) {
    if (deep) return work == 0 ? &phase_kernel<k_deep_stages, 0> : &phase_kernel<k_deep_stages, 48>;
    return work == 0 ? &phase_kernel<k_stages, 0> : &phase_kernel<k_stages, 48>;
}

std::byte* at(void* scratch, std::size_t offset) { return static_cast<std::byte*>(scratch) + offset; }

}  // namespace

std::size_t plan_phase_stream(phase_stream_plan& plan, int sms) {
    if (plan.bytes.empty() || plan.bytes.size() > static_cast<std::size_t>(k_max_phases))
        throw std::invalid_argument("phase_stream: 1 to 256 phases");
    int per_sm = 0;
    QB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, persistent_kernel_of(plan.work), k_threads, 0));
    int launch_per_sm = 0;
    QB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&launch_per_sm, phase_kernel_of(false, plan.work), k_threads, 0));
    int deep_per_sm = 0;
    QB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&deep_per_sm, phase_kernel_of(true, plan.work), k_threads, 0));
    launch_per_sm = std::min(launch_per_sm, deep_per_sm);
    plan.ctas = std::min(std::min(per_sm, launch_per_sm), 2) * sms;
    // The ring kernels (sm_90): their shared memory raised and their occupancy checked here, outside any capture.
    plan.ring_ctas_per_sm = 0;
    int device = 0, major = 0;
    QB_CUDA_CHECK(cudaGetDevice(&device));
    QB_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    if (major >= 9) {
        const int smem = plan.ring_stages * static_cast<int>(k_ring_stage_bytes);
        plan.ring_ctas_per_sm = 2;
        for (const auto k : {reinterpret_cast<const void*>(ring_kernel_of(plan.ring_stages, plan.work)),
                             reinterpret_cast<const void*>(phase_ring_kernel_of(plan.ring_stages, plan.work))}) {
            QB_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
            int fit = 0;
            QB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, k, k_ring_threads, static_cast<std::size_t>(smem)));
            plan.ring_ctas_per_sm = std::min(plan.ring_ctas_per_sm, fit);
        }
    }
    plan.threads = k_threads;
    const std::size_t warps = static_cast<std::size_t>(plan.ctas) * (k_threads / 32);
    if (warps * 4 > k_x_offset - k_sink_offset) throw std::invalid_argument("phase_stream: too many warps for the sink");
    if (plan.x_vecs.size() != plan.bytes.size()) throw std::invalid_argument("phase_stream: one x_vecs per phase");
    if (plan.work != 0 && plan.work != 48) throw std::invalid_argument("phase_stream: work is 0 or 48 instructions per vector");
    for (const int v : plan.x_vecs)
        if (v <= 0 || (v & (v - 1)) != 0 || static_cast<std::size_t>(v) * 16 > k_y_offset - k_x_offset)
            throw std::invalid_argument("phase_stream: x_vecs must be a power of two within 64 KB");
    if (plan.bytes.size() * static_cast<std::size_t>(plan.ctas) * (k_threads / 32) * 4 > phase_stream_scratch_bytes - k_flags_offset ||
        plan.ctas * (k_threads / 32) / 4 > 4 * k_threads)
        throw std::invalid_argument("phase_stream: too many CTAs for ring_flags' words");
    if (static_cast<std::size_t>(plan.ctas) * k_outputs_per_cta * 4 > k_scratch_bytes - k_y_offset)
        throw std::invalid_argument("phase_stream: too many CTAs for the outputs");
    plan.requests.clear();
    std::size_t source = 0;
    plan.total_read = 0;
    for (const std::size_t b : plan.bytes) {
        const std::size_t per_warp = (b + warps * 512 - 1) / (warps * 512);
        plan.requests.push_back(static_cast<std::uint32_t>(per_warp));
        source += per_warp * 512 * warps;
    }
    plan.total_read = source;
    return source;
}

void upload_phase_table(const phase_stream_plan& plan, const void* src, void* scratch, cudaStream_t stream) {
    std::vector<phase_desc> table;
    const std::size_t warps = static_cast<std::size_t>(plan.ctas) * (k_threads / 32);
    const auto* p = static_cast<const uint4*>(src);
    for (const std::uint32_t r : plan.requests) {
        table.push_back(phase_desc{p, r, 0});
        p += static_cast<std::size_t>(r) * 32 * warps;
    }
    QB_CUDA_CHECK(cudaMemcpyAsync(at(scratch, k_table_offset), table.data(), table.size() * sizeof(phase_desc),
                                  cudaMemcpyHostToDevice, stream));
    QB_CUDA_CHECK(cudaStreamSynchronize(stream));
}

namespace {
/// The persistent ring schedules' `barriers` argument of ring_kernel; -1 for the other schedules.
int ring_barriers(phase_schedule s) {
    switch (s) {
        case phase_schedule::ring: return static_cast<int>(barrier_order::acq_rel);
        case phase_schedule::ring_no_barrier: return k_no_barriers;
        case phase_schedule::ring_relaxed: return static_cast<int>(barrier_order::relaxed);
        case phase_schedule::ring_flags: return k_flags;
        case phase_schedule::ring_release_only: return static_cast<int>(barrier_order::release_only);
        case phase_schedule::ring_acquire_once: return static_cast<int>(barrier_order::acquire_once);
        case phase_schedule::ring_relaxed_arrival: return static_cast<int>(barrier_order::relaxed_arrival);
        case phase_schedule::ring_flags_hinted: return k_flags_hinted;
        default: return -1;
    }
}
}  // namespace

void launch_phase_stream(const phase_stream_plan& plan, phase_schedule schedule, phase_shape shape, const void* src,
                         void* scratch, cudaStream_t stream, bool pdl) {
    auto* sink = reinterpret_cast<std::uint32_t*>(at(scratch, k_sink_offset));
    const bool overlap = schedule == phase_schedule::launches_ring_overlap;
    const bool persistent_ring = ring_barriers(schedule) >= 0;
    const bool ring = persistent_ring || schedule == phase_schedule::launches_ring || overlap;
    if (ring && plan.ring_ctas_per_sm < 2)
        throw std::invalid_argument("phase_stream: the ring kernels need sm_90 and 2 CTAs per SM (" +
                                    std::to_string(plan.ring_ctas_per_sm) + " fit)");
    const int ring_smem = plan.ring_stages * static_cast<int>(k_ring_stage_bytes);
    if (schedule == phase_schedule::launches || schedule == phase_schedule::launches_ring || overlap) {
        const std::size_t warps = static_cast<std::size_t>(plan.ctas) * (k_threads / 32);
        const auto* p = static_cast<const uint4*>(src);
        const launch_options o{stream, pdl};
        for (std::size_t i = 0; i < plan.requests.size(); ++i) {
            const std::uint32_t r = plan.requests[i];
            if (r == 0) {
                launch_kernel(norm_phase_kernel, dim3(1), dim3(k_threads), 0, o,
                              reinterpret_cast<const uint4*>(at(scratch, k_norm_in)), reinterpret_cast<uint4*>(at(scratch, k_norm_out)));
                continue;
            }
            if (ring) {
                const int share = overlap ? 2 : 1;  // (plan.ctas is even: 2 per SM)
                launch_kernel(phase_ring_kernel_of(plan.ring_stages, plan.work), dim3(static_cast<unsigned>(plan.ctas / share)),
                              dim3(k_ring_threads), static_cast<std::size_t>(ring_smem), o, p, r, sink,
                              static_cast<std::uint32_t>(share));
                p += static_cast<std::size_t>(r) * 32 * warps;
                continue;
            }
            const int x_vecs = plan.x_vecs[i];
            const std::size_t smem = shape == phase_shape::bare ? 0
                                   : x_vecs * sizeof(uint4) + (k_threads / 32) * k_outputs_per_cta * sizeof(float);
            launch_kernel(phase_kernel_of(plan.deep, plan.work), dim3(static_cast<unsigned>(plan.ctas)), dim3(k_threads), smem, o, p, r, sink,
                          reinterpret_cast<const uint4*>(at(scratch, k_x_offset)), x_vecs, static_cast<int>(shape),
                          reinterpret_cast<float*>(at(scratch, k_y_offset)));
            p += static_cast<std::size_t>(r) * 32 * warps;
        }
        return;
    }
    auto* counter = reinterpret_cast<unsigned*>(at(scratch, 0));
    QB_CUDA_CHECK(cudaMemsetAsync(counter, 0, sizeof(unsigned), stream));
    launch_options o{stream, false};
    o.cooperative = true;  // the barriers need every CTA resident
    const auto* table = reinterpret_cast<const phase_desc*>(at(scratch, k_table_offset));
    if (persistent_ring) {
        auto* flags = reinterpret_cast<std::uint32_t*>(at(scratch, k_flags_offset));
        if (schedule == phase_schedule::ring_flags || schedule == phase_schedule::ring_flags_hinted)  // every word unwritten again, each step (a node of the graph)
            QB_CUDA_CHECK(cudaMemsetAsync(flags, 0xff, plan.requests.size() * static_cast<std::size_t>(plan.ctas) * (k_threads / 32) * 4,
                                          stream));
        launch_kernel(ring_kernel_of(plan.ring_stages, plan.work), dim3(static_cast<unsigned>(plan.ctas)), dim3(k_ring_threads),
                      static_cast<std::size_t>(ring_smem), o, table, static_cast<int>(plan.requests.size()), counter, sink,
                      ring_barriers(schedule), flags, plan.ring_gather);
        return;
    }
    launch_kernel(persistent_kernel_of(plan.work), dim3(static_cast<unsigned>(plan.ctas)), dim3(k_threads), 0, o, table,
                  static_cast<int>(plan.requests.size()), static_cast<int>(schedule), counter, sink);
}

}  // namespace qbench::gptq::test
