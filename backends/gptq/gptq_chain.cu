// The persistent GPTQ chain and decode stack (gptq_chain.cuh): v3's arithmetic fed by a bulk-copy ring, the attention
// kernel's code as a phase, phases synchronised by write-once activations.
#include "backends/gptq/gptq_chain.cuh"
#include "backends/gptq/gptq_chain_table.cuh"

#include "backends/gptq/gptq_a_layout.hpp"
#include "backends/gptq/gptq_a_ops.cuh"
#include "cuda/attention_block.cuh"
#include "cuda/bulk_ring.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/gpu_clock.cuh"
#include "cuda/l2_prefetch.cuh"
#include "cuda/launch.cuh"
#include "cuda/rms_norm.cuh"
#include "cuda/swiglu.cuh"
#include "cuda/write_once.cuh"
#include "qbench/common/errors.hpp"

#include <algorithm>
#include <climits>
#include <initializer_list>
#include <utility>
#include <string>

namespace qbench::gptq {

namespace {

using a_ops::sum_group16;

constexpr int k_consumer_warps = k_a_kslices;       // one k-slice per consumer warp, as v3
constexpr int k_consumers = k_consumer_warps * 32;  // the threads of the named barrier 1 and of the hint
constexpr int k_chain_threads = k_consumers + 32;   // and the producer warp
constexpr int k_attention_threads = 256;            // the attention kernel's CTA (attention.cu): the same bits
constexpr std::uint32_t k_record_bytes = k_a_record_words * 4;  // 64: an (mtile, k-block) record

/// The rings of a width: one per consumer warp (warp_rings), fed by lane w of the producer warp. A slot holds up to
/// `kps` k-blocks of one tile of the warp's run, chunks then records, each a contiguous piece of v3's layout (a warp's
/// chunks of a tile lie back to back, and so do its records): two copies of ~2 KB and a few records where a stage
/// shared by all warps took 32 copies of 512 and 64 bytes. 3 bits: 768-byte chunks, three slots a warp.
template <int Bits>
struct ring_of {
    static constexpr int kps = Bits == 2 ? 4 : Bits == 8 ? 1 : 2;  // k-blocks a slot holds at most
    static constexpr std::uint32_t chunk_bytes = a_chunk_words(Bits) * 4;
    static constexpr std::uint32_t chunks_bytes = kps * a_chunks_per_block(Bits) * chunk_bytes;  // 2 KB (1.5 KB at 3 bits)
    static constexpr std::uint32_t slot_bytes = chunks_bytes + kps * k_record_bytes;
    static constexpr int slots = Bits == 3 ? 3 : 2;
    using type = warp_rings<k_consumer_warps, slots, slot_bytes>;
};

constexpr std::size_t k_table_offset = 256;  // in the scratch: the hint counter, then the table

__device__ __forceinline__ int kslice0(int kblocks, int w) {
    return static_cast<int>(kslice_begin(kblocks, w, k_consumer_warps));
}

__device__ __forceinline__ void consumers_sync() { asm volatile("bar.sync 1, %0;" ::"n"(k_consumers) : "memory"); }

/// The barrier of an attention phase's threads (the CTA's first 8 warps), as __syncthreads is the attention kernel's.
struct attention_sync {
    __device__ __forceinline__ void operator()() const {
        asm volatile("bar.sync 2, %0;" ::"n"(k_attention_threads) : "memory");
    }
};

/// The CTA that runs head h's attention: heads spread over the grid (one SM's two CTAs hold neighbours).
__device__ __forceinline__ int head_owner(int h, int heads, int ctas) {
    return heads <= ctas ? h * (ctas / heads) : h % ctas;
}

/// CTA b's mtiles of a phase: [t0, t0 + the count returned).
__device__ __forceinline__ int cta_tiles(int mtiles, int b, int ctas, int& t0) {
    t0 = static_cast<int>(static_cast<long long>(mtiles) * b / ctas);
    return static_cast<int>(static_cast<long long>(mtiles) * (b + 1) / ctas) - t0;
}

/// The trace's clock (chain_tuning::trace): the SM's cycle counter (gpu_clock.cuh has the GPU's nanosecond timer).
__device__ __forceinline__ unsigned long long trace_clock() { return static_cast<unsigned long long>(clock64()); }

/// A CTA's trace entry of phase p (its header is entry -1).
__device__ __forceinline__ unsigned long long* trace_entry(unsigned long long* cta_trace, int p) {
    return cta_trace + static_cast<std::size_t>(p + 1) * k_trace_fields;
}

/// The CTA's tile tl of a phase (of its ntl mtiles from t0; paired: 2 ntl tiles, the gate's then the up's): which part,
/// and which mtile of that part.
__device__ __forceinline__ int part_index(const chain_phase& e, int t0, int ntl, int tl, int& lt) {
    if (e.paired != 0) {
        lt = t0 + (tl < ntl ? tl : tl - ntl);
        return tl < ntl ? 0 : 1;
    }
    const int gt = t0 + tl;
    const int pi = (gt >= e.part[1].tile0 ? 1 : 0) + (gt >= e.part[2].tile0 ? 1 : 0);
    lt = gt - e.part[pi].tile0;
    return pi;
}

/// The input of a linear phase into shared memory (xs, fp16) with its sums per k-block (xsum), from write-once words:
/// as it is, or normed (rms_norm.cuh's contract, as v3's stage_normed_x: bit-identical to launch_rms_norm). norm_w0:
/// the norm weights' vector `tid` (the first round's), requested by the caller before the phase's hint.
__device__ __forceinline__ void stage_input(const chain_phase& e, int tid, __half* xs, float* xsum, double* warp_sums,
                                            uint4 norm_w0) {
    const int vecs = e.kblocks * static_cast<int>(k_block_rows) / 8;  // a multiple of 16: whole half-warps are valid or not
    uint4* xs4 = reinterpret_cast<uint4*>(xs);
    const uint4* x4 = reinterpret_cast<const uint4*>(e.x);
    if (e.input == k_input_norm) {
        const int warp = tid >> 5, lane = tid & 31;
        for (int base = 0; base < vecs; base += k_consumers) {
            if (base + 32 * warp >= vecs) continue;  // warp-uniform: no chunk of this warp is in the row
            const int c = base + tid;
            const bool ok = c < vecs;
            const uint4 u = ok ? load_written(x4 + c) : make_uint4(0u, 0u, 0u, 0u);
            if (ok) xs4[c] = u;
            const double w_sum = rms_butterfly(ok ? rms_chunk_sumsq(u) : 0.0);
            if (lane == 0) warp_sums[(base >> 5) + warp] = w_sum;
        }
        consumers_sync();
        const int row_warps = (vecs + 31) / 32;
        const float inv = rms_inv(rms_butterfly(lane < row_warps ? warp_sums[lane] : 0.0), static_cast<std::int64_t>(vecs) * 8, e.eps);
        for (int base = 0; base < vecs; base += k_consumers) {
            const int c = base + tid;
            const bool ok = c < vecs;
            const uint4 nv = base == 0 ? norm_w0 : ok ? reinterpret_cast<const uint4*>(e.norm_weight)[c] : make_uint4(0u, 0u, 0u, 0u);
            const uint4 v = ok ? rms_norm_chunk(xs4[c], inv, nv) : make_uint4(0u, 0u, 0u, 0u);
            if (ok) xs4[c] = v;
            sum_group16(v, ok, 0, ok ? c : 0, xsum);
        }
        return;
    }
    for (int base = 0; base < vecs; base += k_consumers) {
        const int v = base + tid;
        const bool valid = v < vecs;
        const uint4 u4 = valid ? load_written(x4 + v) : make_uint4(0u, 0u, 0u, 0u);
        if (valid) xs4[v] = u4;
        sum_group16(u4, valid, 0, valid ? v : 0, xsum);
    }
}

/// An attention phase on this CTA: every head it owns, on its first 8 warps (the attention kernel's 256 threads, so the
/// same bits), with `region` (the linear phases' staging, free until the next hint) as shared memory.
__device__ __noinline__ void attention_phase(const chain_phase& e, int tid, float* region) {
    constexpr int D = k_attention_head_dim;
    const int ctas = static_cast<int>(gridDim.x), b = static_cast<int>(blockIdx.x);
    float* smem = region;
    float* scratch = smem + (attention_smem_floats(k_attention_threads, D, e.max_len) + 3) / 4 * 4;  // 16-byte aligned
    uint4* staged = reinterpret_cast<uint4*>(scratch + 32);  // q, k, v of the head (16 vectors each), then the output
    const attention_sync sync;
    for (int h = 0; h < e.heads; ++h) {
        if (head_owner(h, e.heads, ctas) != b) continue;
        const int g = h / (e.heads / e.kv_heads);
        auto wait = [&] {  // the phase before wrote q, k, v: staged once each is there (write_once.cuh)
            if (tid < 48) {
                const int which = tid / 16, i = tid % 16;
                const std::uint32_t* src = which == 0 ? e.q + h * (D / 2) : which == 1 ? e.k + g * (D / 2) : e.v + g * (D / 2);
                staged[tid] = load_written(reinterpret_cast<const uint4*>(src) + i);
            }
            sync();
        };
        const __half* sh = reinterpret_cast<const __half*>(staged);
        __half* orow = const_cast<__half*>(sh) + 3 * D;
        attention_block<true, D, k_attention_threads, true>(tid, 0, h, sh, sh + D, sh + 2 * D, orow, e.inv_freq, e.pos, 0,
                                                      e.slot_table, e.heads, e.kv_heads, D, e.max_len, e.scale,
                                                      e.k_cache, e.v_cache, smem, scratch, sync, wait);
        sync();
        if (tid < D / 2)
            store_once(e.out + h * (D / 2) + tid, written_word(reinterpret_cast<const std::uint32_t*>(orow)[tid]));
        sync();  // the staging is rewritten by the next head
    }
}

/// Producer lane k's walk over ring k's slots, every linear phase in order: which tile and k-blocks of warp k's run
/// each slot holds, and where its chunks and records lie (v3's layout: warp k's chunks of a part's mtile lt start at
/// chunk (mtiles * kb0 + lt * nkb) * CPB, its records at the same (mtile, k-block) index).
template <int Bits>
struct slot_walk {
    static constexpr int KPS = ring_of<Bits>::kps, CPB = a_chunks_per_block(Bits);
    const chain_phase* table;
    int count, k, b, ctas;
    int p = -1, t0 = 0, ntl = 0, tiles = 0, kb0 = 0, nkb = 0, tl = 0, kb = 0;

    __device__ bool valid() const { return p < count; }
    __device__ bool phase_start() const { return tl == 0 && kb == 0; }
    /// To the first slot of the next phase that gives ring k any (attention phases and empty shares give none).
    __device__ void next_phase() {
        for (++p; p < count; ++p) {
            const chain_phase& e = table[p];
            if (e.attention != 0) continue;
            ntl = cta_tiles(e.mtiles, b, ctas, t0);
            tiles = e.paired != 0 ? 2 * ntl : ntl;
            kb0 = kslice0(e.kblocks, k);
            nkb = kslice0(e.kblocks, k + 1) - kb0;
            tl = 0, kb = 0;
            if (tiles > 0 && nkb > 0) return;
        }
    }
    __device__ void advance() {
        kb += KPS;
        if (kb < nkb) return;
        kb = 0;
        if (++tl == tiles) next_phase();
    }
    __device__ int blocks() const { return min(KPS, nkb - kb); }
    __device__ std::uint32_t chunk_bytes() const { return static_cast<std::uint32_t>(blocks() * CPB) * ring_of<Bits>::chunk_bytes; }
    __device__ std::uint32_t record_bytes() const { return static_cast<std::uint32_t>(blocks()) * k_record_bytes; }
    /// The slot's first (mtile, k-block) index in its part's layout, and the part.
    __device__ std::size_t first(const chain_part*& part) const {
        const chain_phase& e = table[p];
        int lt = 0;
        part = &e.part[part_index(e, t0, ntl, tl, lt)];
        return static_cast<std::size_t>(part->mtiles) * kb0 + static_cast<std::size_t>(lt) * nkb + kb;
    }
};

/// The producer warp's work: lane k (< 16) fills consumer warp k's ring, every linear phase's slots in order, each
/// slot up to KPS k-blocks of one tile of warp k's run (chunks, then their records: two copies). Out of line, so that
/// its walk's registers do not weigh on the consumers' main loop.
template <int Bits>
__device__ __noinline__ void produce_slots(const typename ring_of<Bits>::type& rings, const chain_phase* table, int count,
                                           int lane, int producer, unsigned long long* my_trace) {
    constexpr int CPB = a_chunks_per_block(Bits), CV = a_chunk_words(Bits) / 4;
    slot_walk<Bits> walk{table, count, lane, static_cast<int>(blockIdx.x), static_cast<int>(gridDim.x)};
    walk.next_phase();
    std::uint32_t i = 0;  // ring k's slot index
    auto issue = [&](std::uint64_t* bar) {
        if (my_trace != nullptr && lane == 0) {
            unsigned long long* at = trace_entry(my_trace, walk.p);
            if (walk.phase_start()) at[k_trace_producer_first] = trace_clock();
            at[k_trace_producer_last] = trace_clock();
        }
        const chain_part* part = nullptr;
        const std::size_t at = walk.first(part);
        unsigned char* slot = rings.slot(lane, i);
        bulk_copy_to_shared(slot, part->qweight + at * CPB * CV, walk.chunk_bytes(), bar);
        bulk_copy_to_shared(slot + ring_of<Bits>::chunks_bytes, part->meta + at * 8, walk.record_bytes(), bar);
        walk.advance();
        ++i;
    };
    if (producer == k_producer_blocking) {
        while (walk.valid()) issue(rings.produce(lane, i, walk.chunk_bytes() + walk.record_bytes()));
        return;
    }
    // k_producer_polling: each lane issues whenever its own ring has a free slot, the 16 lanes converged.
    constexpr unsigned lanes = (1u << k_consumer_warps) - 1u;
    bool live = walk.valid();
    while (__any_sync(lanes, live)) {
        std::uint64_t* bar = live ? rings.try_produce(lane, i, walk.chunk_bytes() + walk.record_bytes()) : nullptr;
        if (bar != nullptr) {
            issue(bar);
            live = walk.valid();
        }
        if (!__any_sync(lanes, bar != nullptr)) __nanosleep(64);
    }
}

/// Asks L2 for the key and value rows an attention phase will read on this CTA: positions [0, pos) of each head it
/// owns (the phase appends pos itself); `a` carries the attention phase's decode state (chain_phase::prefetch_rows).
/// Why: those rows lie in DRAM, and the phase reads them on 8 warps with few loads in flight while every other CTA
/// streams weights, so each round trip is a loaded DRAM latency: the 7B stack's attention took ~17 us a layer on the
/// H100 (the trace, PERF_NOTES.md, seventeenth session). Called by the phase before (q/k/v), before its hint, on the
/// 32 CTAs that own a head: the rows arrive while q/k/v streams. One line (half a row) per thread and round.
__device__ __noinline__ void prefetch_attention_rows(const chain_phase& a, int tid, int b, int ctas) {
    constexpr int D = k_attention_head_dim;
    constexpr int lines_per_row = D * 2 / 128;
    const int pos = *a.pos;
    for (int h = 0; h < a.heads; ++h) {
        if (head_owner(h, a.heads, ctas) != b) continue;
        const int g = h / (a.heads / a.kv_heads);
        for (int j = tid; j < pos * 2 * lines_per_row; j += k_consumers) {
            const int p = j / (2 * lines_per_row), line = j % (2 * lines_per_row);
            const __half* cache = line < lines_per_row ? a.k_cache : a.v_cache;
            const std::int64_t slot = a.slot_table[p];
            prefetch_l2_line(cache + ((slot * a.max_len + p) * a.kv_heads + g) * D + (line % lines_per_row) * 64);
        }
    }
}

/// Dynamic shared memory: the warps' rings, then the linear phases' region: the input x [max_kb * 128] (fp16), its
/// sums [k-block][8 rows] (fp32; rows past the first stay zero), the partial outputs [mtile of the CTA][warp][16]
/// (fp32); an attention phase uses the region as its own shared memory.
template <int Bits>
__global__ void __launch_bounds__(k_chain_threads, 2) gptq_chain_kernel(const chain_phase* table, int count, int max_kb,
                                                                        unsigned* counter, int producer,
                                                                        int prefetch_attention, unsigned long long* trace) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    using rings_t = typename ring_of<Bits>::type;
    constexpr std::uint32_t chunks_bytes = ring_of<Bits>::chunks_bytes;
    constexpr int KPS = ring_of<Bits>::kps;
    constexpr int CR = a_chunk_rows(Bits), CPB = a_chunks_per_block(Bits), MMAS = a_mmas_per_chunk(Bits);
    constexpr int XV = CR / 32;                // 16-byte activation vectors per lane per chunk
    constexpr int CV = a_chunk_words(Bits) / 4;  // 16-byte vectors per chunk (48 at 3 bits: the high bits follow)
    constexpr int bars = k_consumer_warps * ring_of<Bits>::slots;
    extern __shared__ uint4 smem[];
    __shared__ std::uint64_t full_bars[bars], empty_bars[bars];
    __shared__ double warp_sums[32];
    const rings_t rings = rings_t::make(smem, full_bars, empty_bars);
    __half* xs = reinterpret_cast<__half*>(reinterpret_cast<unsigned char*>(smem) + rings_t::bytes);
    float* xsum = reinterpret_cast<float*>(xs + static_cast<std::size_t>(max_kb) * k_block_rows);
    float* red = xsum + static_cast<std::size_t>(max_kb) * 8;
    const int tid = static_cast<int>(threadIdx.x), w = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, t = lane & 3;
    const int b = static_cast<int>(blockIdx.x), ctas = static_cast<int>(gridDim.x);
    // The trace (chain_tuning::trace): per CTA a header (clock and ns at the start and the end), then k_trace_fields
    // per phase.
    unsigned long long* const my_trace = trace != nullptr ? trace + static_cast<std::size_t>(b) * (count + 1) * k_trace_fields : nullptr;
    auto stamp = [&](int p, int field) {
        if (my_trace != nullptr) trace_entry(my_trace, p)[field] = trace_clock();
    };
    if (my_trace != nullptr && tid == 0) my_trace[0] = trace_clock(), my_trace[1] = gpu_time_ns();

    if (w == k_consumer_warps) {
        if (lane < k_consumer_warps) produce_slots<Bits>(rings, table, count, lane, producer, my_trace);
        return;
    }

    unsigned hints = 0;
    std::uint32_t i = 0;  // this warp's slot index, as its producer lane's
    for (int p = 0; p < count; ++p) {
        const chain_phase& e = table[p];
        // The norm weights are constant: requested before the hint, their round trip overlaps the wait.
        uint4 norm_w0 = make_uint4(0u, 0u, 0u, 0u);
        if (e.input == k_input_norm && tid < e.kblocks * static_cast<int>(k_block_rows) / 8)
            norm_w0 = reinterpret_cast<const uint4*>(e.norm_weight)[tid];
        if (prefetch_attention != 0 && e.prefetch_rows != 0) prefetch_attention_rows(e, tid, b, ctas);
        // The input: written by other CTAs in the phases before. The hint says when it probably is; the words say when
        // it is (load_written), so nothing here needs a fence.
        if (p > 0) grid_hint_among<1, k_consumers>(counter, ++hints * static_cast<unsigned>(ctas));
        if (tid == 0) stamp(p, k_trace_hint);
        if (e.attention != 0) {
            if (w < k_attention_threads / 32) attention_phase(e, tid, reinterpret_cast<float*>(xs));
            if (tid == 0) stamp(p, k_trace_stored);
            continue;
        }
        int t0 = 0;
        const int ntl = cta_tiles(e.mtiles, b, ctas, t0), tiles = e.paired != 0 ? 2 * ntl : ntl;
        if (ntl == 0) {  // no mtiles of this phase here (and so no slots)
            if (tid == 0) stamp(p, k_trace_stored);
            continue;
        }
        for (int j = tid; j < e.kblocks * 8; j += k_consumers) xsum[j] = 0.0f;
        for (int j = tid; j < tiles * k_consumer_warps * static_cast<int>(k_a_tile_cols); j += k_consumers) red[j] = 0.0f;
        consumers_sync();
        stage_input(e, tid, xs, xsum, warp_sums, norm_w0);
        consumers_sync();
        if (tid == 0) stamp(p, k_trace_staged);

        // v3's main loop (gptq_gemm_a.cu, a_gemm_kernel's consume) at one row, per tile of the CTA: the warp's k-blocks
        // of its slice in order, its chunks and records read from its own ring's slots instead of v3's register ring.
        const int kb0 = kslice0(e.kblocks, w), nkb = kslice0(e.kblocks, w + 1) - kb0;
        const __half* xbase = xs + static_cast<std::size_t>(kb0) * k_block_rows + t * (CR / 4);
        const float* sbase = xsum + kb0 * 8 + 2 * t;
        if (my_trace != nullptr && tid == 0 && nkb > 0) {  // (the wait again in the loop returns at once)
            (void)rings.acquire(w, i);
            stamp(p, k_trace_first_slot);
        }
        for (int tl = 0; tl < tiles && nkb > 0; ++tl) {
            const __half* xp = xbase;
            const float* sp = sbase;
            float out[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int kb = 0; kb < nkb; kb += KPS, ++i) {
                const int n = min(KPS, nkb - kb);
                const uint4* slot = rings.acquire(w, i);
                const uint2* records = reinterpret_cast<const uint2*>(slot + chunks_bytes / 16);
                for (int j = 0; j < n; ++j) {
                    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
                    for (int c = 0; c < CPB; ++c) {
                        const uint4* chunk = slot + (j * CPB + c) * CV;
                        const uint4 wv = chunk[lane];
                        std::uint32_t wq[a_lane_words(Bits)];
                        wq[0] = wv.x, wq[1] = wv.y, wq[2] = wv.z, wq[3] = wv.w;
                        if constexpr (Bits == 3) {
                            const uint2 hv = reinterpret_cast<const uint2*>(chunk + 32)[lane];
                            wq[4] = hv.x, wq[5] = hv.y;
                        }
                        std::uint32_t xw[4 * XV];
                        a_ops::load_x_words<XV>(xp, xw);
                        xp += CR;
                        a_ops::chunk_mmas<Bits, XV, MMAS>(wq, xw, acc);
                    }
                    a_ops::correct_block<Bits>(out, acc, records[j * 8 + g], sp);
                }
                rings.release(w, i, lane);
            }
            // this warp's slice of the tile is done: park its partial sums (row 0)
            float* park = red + static_cast<std::size_t>(tl * k_consumer_warps + w) * k_a_tile_cols;
            if (t == 0) {
                park[g] = out[0];
                park[g + 8] = out[2];
            }
        }
        if (tid == 0) stamp(p, k_trace_warp0_done);
        // The residual's word of this thread's outputs (ntl * 8 <= 48 threads have one pair each), requested before
        // the barrier so that its round trip overlaps the slowest warp's last chunks (written phases ago).
        const bool outputs = tid < ntl * 8;
        std::uint32_t prior = 0;
        if (outputs && e.residual != 0) prior = load_written(e.res + ((t0 + tid / 8) * static_cast<int>(k_a_tile_cols) + 2 * (tid % 8)) / 2);
        consumers_sync();
        if (tid == 0) stamp(p, k_trace_loop_done);
        // v3's epilogue: the 16 warps' partials of an output added in warp order, rounded to fp16 (plus the residual,
        // as forward_residual adds it; paired: the SwiGLU product of the gate's and the up's, as v3's gate/up kernel
        // forms it); here two adjacent outputs per thread, stored once as one word.
        auto output_sum = [&](int tile, int col) {
            float sum = 0.0f;
#pragma unroll
            for (int wq = 0; wq < k_consumer_warps; ++wq) sum += red[(tile * k_consumer_warps + wq) * k_a_tile_cols + col];
            return sum;
        };
        static_assert(k_chain_max_tiles * 8 <= k_consumers, "one pair of outputs per thread at most");
        if (outputs) {
            const int tile = tid / 8, col = 2 * (tid % 8);
            __half h[2];
            for (int c = 0; c < 2; ++c) {
                h[c] = __float2half_rn(output_sum(tile, col + c));
                if (e.paired != 0) {
                    const float gs = __half2float(h[c]), us = __half2float(__float2half_rn(output_sum(ntl + tile, col + c)));
                    h[c] = __float2half_rn(silu_times(gs, us));
                }
            }
            int lt = 0;
            const int pi = part_index(e, t0, ntl, tile, lt);
            if (e.residual != 0) {
                h[0] = rms_residual_add(__ushort_as_half(static_cast<unsigned short>(prior & 0xffffu)), h[0]);
                h[1] = rms_residual_add(__ushort_as_half(static_cast<unsigned short>(prior >> 16)), h[1]);
            }
            const std::uint32_t word = static_cast<std::uint32_t>(__half_as_ushort(h[0])) | (static_cast<std::uint32_t>(__half_as_ushort(h[1])) << 16);
            store_once(e.part[pi].y + (lt * static_cast<int>(k_a_tile_cols) + col) / 2, written_word(word));
        }
        consumers_sync();  // the partials and x are rewritten by the next phase
        if (tid == 0) stamp(p, k_trace_stored);
    }
    if (my_trace != nullptr && tid == 0) my_trace[2] = trace_clock(), my_trace[3] = gpu_time_ns();
#else
    (void)table, (void)count, (void)max_kb, (void)counter, (void)producer, (void)prefetch_attention, (void)trace;
    __trap();
#endif
}

template <int Bits>
void set_smem_limit(std::size_t smem) {
    QB_CUDA_CHECK(cudaFuncSetAttribute(gptq_chain_kernel<Bits>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
}

template <int Bits>
int resident_per_sm(std::size_t smem) {
    int per_sm = 0;
    QB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gptq_chain_kernel<Bits>, k_chain_threads, smem));
    return per_sm;
}

/// The ring's bytes of a width.
std::size_t ring_bytes(int bits) {
    std::size_t bytes = 0;
    a_with_bits(bits, [&](auto b) { bytes = ring_of<decltype(b)::value>::type::bytes; });
    return bytes;
}

std::size_t attention_bytes(std::int64_t max_len) {
    if (max_len <= 0) return 0;
    return ((attention_smem_floats(k_attention_threads, k_attention_head_dim, max_len) + 3) / 4 * 4 + 32) * sizeof(float) +
           4 * k_attention_head_dim * sizeof(__half);
}

}  // namespace

// The phase table's host side (gptq_chain_table.cuh), shared with the decode stack's builder (gptq_decode_stack.cu).

chain_plan plan_phases(const phase_list& list, int bits) {
    if (!a_with_bits(bits, [](auto) {})) throw error("gptq chain: " + std::to_string(bits) + "-bit layers have no persistent kernel");
    chain_plan plan;
    plan.bits = bits;
    plan.linears = static_cast<int>(list.phases.size());
    plan.max_kblocks = list.max_kblocks;
    int device = 0, sms = 0;
    QB_CUDA_CHECK(cudaGetDevice(&device));
    QB_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    plan.ctas = 2 * sms;  // two CTAs an SM, as v3 (checked below)
    const int max_tiles = std::max((list.max_mtiles + plan.ctas - 1) / plan.ctas, 2 * ((list.max_paired_mtiles + plan.ctas - 1) / plan.ctas));
    if (max_tiles > k_chain_max_tiles)
        throw error("gptq chain: a phase gives a CTA " + std::to_string(max_tiles) + " mtiles, more than " + std::to_string(k_chain_max_tiles));
    const std::size_t region = static_cast<std::size_t>(plan.max_kblocks) * k_block_rows * 2 +
                               static_cast<std::size_t>(plan.max_kblocks) * 8 * sizeof(float) +
                               static_cast<std::size_t>(k_chain_max_tiles) * k_consumer_warps * k_a_tile_cols * sizeof(float);
    plan.smem = ring_bytes(bits) + std::max(region, attention_bytes(list.max_len));
    int per_sm = 0;
    a_with_bits(bits, [&](auto b) {
        set_smem_limit<decltype(b)::value>(plan.smem);
        per_sm = resident_per_sm<decltype(b)::value>(plan.smem);
    });
    if (per_sm < 2)
        throw error("gptq chain: two CTAs with " + std::to_string(plan.smem) + " bytes of shared memory each do not fit an SM" +
                    (list.max_len > 0 ? " (attention over " + std::to_string(list.max_len) + " positions)" : std::string()));
    plan.scratch_bytes = k_table_offset + list.phases.size() * sizeof(chain_phase);
    return plan;
}

void upload_table(const std::vector<chain_phase>& phases, void* scratch, cudaStream_t stream) {
    QB_CUDA_CHECK(cudaMemcpyAsync(static_cast<unsigned char*>(scratch) + k_table_offset, phases.data(),
                                  phases.size() * sizeof(chain_phase), cudaMemcpyHostToDevice, stream));
    QB_CUDA_CHECK(cudaStreamSynchronize(stream));  // the host table must outlive the copy
}

void launch_phases(const chain_plan& plan, std::uint32_t* outputs, std::size_t output_words, void* scratch, cudaStream_t stream,
                   const chain_tuning& tuning) {
    auto* counter = static_cast<unsigned*>(scratch);
    QB_CUDA_CHECK(cudaMemsetAsync(counter, 0, sizeof(unsigned), stream));
    QB_CUDA_CHECK(cudaMemsetAsync(outputs, 0xff, output_words * 4, stream));
    launch_options o{stream, false};
    o.cooperative = true;  // consumers wait for other CTAs' outputs: every CTA must be resident
    const auto* table = reinterpret_cast<const chain_phase*>(static_cast<const unsigned char*>(scratch) + k_table_offset);
    a_with_bits(plan.bits, [&](auto b) {
        launch_kernel(gptq_chain_kernel<decltype(b)::value>, dim3(static_cast<unsigned>(plan.ctas)), dim3(k_chain_threads), plan.smem, o,
                      table, plan.linears, plan.max_kblocks, counter, tuning.producer, tuning.prefetch_attention ? 1 : 0, tuning.trace);
    });
}

chain_phase linear_phase(std::initializer_list<std::pair<chain_linear, std::uint32_t*>> parts) {
    chain_phase e;
    int i = 0;
    for (const auto& [l, y] : parts) {
        e.part[i] = chain_part{reinterpret_cast<const uint4*>(l.qweight), reinterpret_cast<const uint2*>(l.meta), y,
                               l.n / static_cast<int>(k_a_tile_cols), e.mtiles};
        e.mtiles += l.n / static_cast<int>(k_a_tile_cols);
        e.kblocks = l.kblocks;
        ++i;
    }
    return e;
}

std::string linear_refusal(const chain_linear& l) {
    if (l.qweight == nullptr || l.meta == nullptr) return " has no weights";
    if (l.n <= 0 || l.n % static_cast<int>(k_a_tile_cols) != 0) return ": n = " + std::to_string(l.n) + " is not a multiple of 16";
    if (l.kblocks < 1 || l.kblocks > k_chain_max_kblocks)
        return ": K = " + std::to_string(l.kblocks * k_block_rows) + " is outside 128 .. " +
               std::to_string(k_chain_max_kblocks * k_block_rows);
    return {};
}

void note_sizes(phase_list& list, const chain_phase& e) {
    list.max_kblocks = std::max(list.max_kblocks, e.kblocks);
    int& most = e.paired != 0 ? list.max_paired_mtiles : list.max_mtiles;
    most = std::max(most, e.mtiles);
}

namespace {

void check_linear(const chain_linear& l, const std::string& which) {
    if (const std::string why = linear_refusal(l); !why.empty()) throw error(which + why);
}

}  // namespace

chain_plan plan_gptq_chain(const std::vector<chain_linear>& linears, int bits) {
    if (linears.empty() || linears.size() > static_cast<std::size_t>(k_chain_max_linears))
        throw error("gptq chain: 1 to " + std::to_string(k_chain_max_linears) + " linears, not " + std::to_string(linears.size()));
    phase_list list;
    for (std::size_t i = 0; i < linears.size(); ++i) {
        const chain_linear& l = linears[i];
        const std::string which = "gptq chain: linear " + std::to_string(i);
        check_linear(l, which);
        if (i > 0 && l.kblocks * static_cast<int>(k_block_rows) != linears[i - 1].n)
            throw error(which + ": K = " + std::to_string(l.kblocks * k_block_rows) + " but the previous linear gives " +
                        std::to_string(linears[i - 1].n));
        list.phases.push_back(linear_phase({{l, nullptr}}));
        note_sizes(list, list.phases.back());
    }
    chain_plan plan = plan_phases(list, bits);
    for (const chain_linear& l : linears) plan.y_words += static_cast<std::size_t>(l.n) / 2;
    return plan;
}

void upload_gptq_chain(const chain_plan& plan, const std::vector<chain_linear>& linears, const std::uint32_t* x0,
                       std::uint32_t* y, void* scratch, cudaStream_t stream) {
    if (static_cast<int>(linears.size()) != plan.linears) throw error("gptq chain: the plan was made for another chain");
    std::vector<chain_phase> phases;
    std::size_t words = 0;
    const std::uint32_t* x = x0;
    for (const chain_linear& l : linears) {
        chain_phase e = linear_phase({{l, y + words}});
        e.x = x;
        phases.push_back(e);
        x = y + words;
        words += static_cast<std::size_t>(l.n) / 2;
    }
    upload_table(phases, scratch, stream);
}

void enqueue_gptq_chain(const chain_plan& plan, std::uint32_t* y, void* scratch, cudaStream_t stream, const chain_tuning& tuning) {
    launch_phases(plan, y, plan.y_words, scratch, stream, tuning);
}

}  // namespace qbench::gptq
