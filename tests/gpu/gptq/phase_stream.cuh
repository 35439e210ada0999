#pragma once
// A memory-only probe for bench_gptq (BM_phase_stream): what the boundaries between a decode step's phases cost, and
// how much of it a persistent kernel would win back, before anyone writes one.
//
// Why: on the H200 the 7B 4-bit step's linears take 1.45 ms, of which streaming their bytes is ~0.75 ms; the rest is
// ~190 kernel boundaries (backends/gptq/PERF_NOTES.md, eleventh session). A persistent kernel per step would replace
// each boundary by a grid-wide barrier, and could request the next phase's weights (which never depend on the
// activations) before that barrier. This probe streams the same bytes, phase by phase, in the schedules below, with
// no arithmetic but an XOR per vector (and optionally 48 ALU instructions, `work`), so the differences are the
// boundaries alone. What it found (PERF_NOTES.md, twelfth to fifteenth sessions): a grid barrier's cost is its release;
// a persistent bulk-copy ring synchronised without one (`ring_flags_hinted`) beats one kernel per phase.
//
// A phase is one contiguous region of `bytes` (rounded up to whole 512-byte requests per warp), shared out evenly to
// every warp of the grid as one contiguous run each (as kernel v3 does); a phase of 0 bytes is a "norm" phase: in
// `launches` a one-CTA kernel that triggers its successor early (as the executor's RMSNorm kernels), in the
// persistent schedules one more grid barrier.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace qbench::gptq::test {

enum class phase_schedule : int {
    launches = 0,          ///< one kernel per phase in the stream (PDL as v3: first loads before the wait)
    barrier = 1,           ///< one persistent kernel; a grid barrier between phases, then the next phase's loads
    barrier_prefetch = 2,  ///< as `barrier`, but each warp's first loads of the next phase are in flight before it
    no_barrier = 3,        ///< one persistent kernel streaming every phase back to back: the ceiling
    /// one persistent kernel whose weights come through a ring of shared-memory stages filled by the bulk copy engine
    /// (harness/cuda/bulk_ring.cuh): one producer thread per CTA runs ahead across the phases, bounded by the ring
    /// only, while the 16 consumer warps take the grid barriers (sm_90). The question: does a producer that never
    /// waits at a barrier keep memory busy through the boundaries, as requests in registers cannot?
    ring = 4,
    /// one kernel per phase as `launches`, each fed through its own shared-memory ring as `ring` (the producer's first
    /// copies issued before the PDL wait): bulk copies without the persistent kernel (sm_90)
    launches_ring = 5,
    /// as `launches_ring` with one CTA per SM taking two CTAs' shares: each phase's kernel leaves room on every SM for
    /// the next one's CTA, whose producer then fills its ring before the PDL wait while this phase is still streaming
    /// (a boundary covered without a persistent kernel)
    launches_ring_overlap = 6,
    /// as `ring` without the grid barriers: what the ring streams when nothing waits (its ceiling, as `no_barrier` is
    /// the register ring's), so that `ring`'s cost per boundary splits into the barrier and the ring itself
    ring_no_barrier = 7,
    /// as `ring` with grid barriers that neither release nor acquire (measurement only: no data would be safe across
    /// them), and as `barrier_prefetch` with such barriers: what the memory ordering of a grid barrier costs apart
    /// from its round trips (does the release wait for the memory operations in flight?)
    ring_relaxed = 8,
    barrier_prefetch_relaxed = 9,
    /// as `ring`, the grid barriers replaced by the data as its own flag: every output word starts the step unwritten
    /// (a pattern no writer stores), its one writer stores it relaxed, and a CTA starts a phase once it has read every
    /// word of the previous one written (relaxed polls): a sync with no fence at GPU scope and no counter, the one a
    /// persistent decode step would use (PERF_NOTES.md, fifteenth session). The norm phases take no sync.
    ring_flags = 10,
    /// as `ring` with the barrier's ordering taken apart (measurement; see barrier_order in phase_stream.cu): a release
    /// arrival and relaxed polls (no acquire: not a correct barrier); a release arrival, relaxed polls and one acquire
    /// load at the end (a correct barrier); a relaxed arrival and acquire polls (no release: not correct)
    ring_release_only = 11,
    ring_acquire_once = 12,
    ring_relaxed_arrival = 13,
    /// ring_flags with a relaxed grid barrier before the polls: the counter says when the words are likely all written
    /// (no fence: a hint), the words themselves say that they are (each checked by value), so the sync is correct
    /// with no release anywhere and reads the outputs about once
    ring_flags_hinted = 14,
};

/// The scratch a probe needs (launch_phase_stream's `scratch`): 256 KB of tables and buffers, 4 MB of ring_flags' words.
inline constexpr std::size_t phase_stream_scratch_bytes = (256u << 10) + (4u << 20);

/// What a per-phase kernel (schedule `launches`) does besides streaming: nothing, or what kernel v3 does around its
/// stream: the activations staged into shared memory after the PDL wait (an L2 round trip and a CTA barrier before
/// the first product) and read there per request, and besides that the end-of-CTA reduction of the 16 warps'
/// partial sums through shared memory (another barrier).
enum class phase_shape : int { bare = 0, staged_x = 1, staged_x_reduced = 2 };

/// The device buffers of a probe: the phases' bytes back to back, a barrier counter and a sink.
struct phase_stream_plan {
    std::vector<std::size_t> bytes;      ///< per phase; 0 = a norm phase
    std::vector<int> x_vecs;              ///< per phase: the activations' 16-byte vectors (a power of two, <= 4096)
    std::vector<std::uint32_t> requests;  ///< per phase: 512-byte requests per warp (set by plan_phase_stream)
    /// `launches` only: 12 requests in flight per warp instead of v3's 6 (192 KB per SM instead of 96): whether more
    /// bytes in flight shorten each launch's ramp and tail.
    bool deep = false;
    /// `ring` and the `launches_ring` schedules: shared-memory stages of 8 KB per CTA (a 512-byte request per consumer warp): 12 (192 KB per SM) or 6
    /// (96 KB per SM, as many bytes as v3's register ring).
    int ring_stages = 12;
    /// The persistent ring schedules: each stage gathered by 16 copies of 512 bytes, consumer warp w's from its own
    /// run (the bytes the register schedules' warp w reads), as kernel v3's layout (one contiguous run per warp) would
    /// need them, instead of one 8 KB copy of the CTA's contiguous share.
    bool ring_gather = false;
    /// `launches` (bare), the persistent schedules and the ring schedules: ALU instructions per 16-byte vector besides the XOR (0 or 48; 48 is about what
    /// kernel v3 spends per vector at 4 bits: ~12 instructions per mma, 4 mmas per vector), so that the consumers' own
    /// time is in the picture.
    int work = 0;
    int ring_ctas_per_sm = 0;  ///< set by plan_phase_stream: what the ring kernels keep resident (0 before sm_90)
    int ctas = 0, threads = 512;
    std::size_t total_read = 0;  ///< bytes the grid reads per step
};

/// Sizes the grid (CTAs of 512 threads, as many as stay resident: 2 per SM where registers allow) and the per-warp
/// requests of every phase; returns the bytes of source the phases need.
std::size_t plan_phase_stream(phase_stream_plan& plan, int sms);

/// Enqueues one step on `stream`: `src` holds the phases back to back (plan_phase_stream's size), `scratch`
/// phase_stream_scratch_bytes (the barrier counter, the phase table, the norm phases' 8 KB rows, the warps' sink words, the activations
/// and the outputs). The persistent schedules launch cooperatively (every CTA resident, or the launch fails) and
/// ignore `shape`; the ring schedules throw before sm_90.
void launch_phase_stream(const phase_stream_plan& plan, phase_schedule schedule, phase_shape shape, const void* src,
                         void* scratch, cudaStream_t stream, bool pdl);

/// Copies the phase table into `scratch` (once, before any launch_phase_stream of a persistent schedule).
void upload_phase_table(const phase_stream_plan& plan, const void* src, void* scratch, cudaStream_t stream);

}  // namespace qbench::gptq::test
