// GPTQ kernel v3 (weights as the mma A operand; why and how: gptq_gemm_a.cuh, layout: gptq_a_layout.hpp), its
// load-time repack from AutoGPTQ's qweight and its reconstruct-to-fp16 for batches above the fused threshold.
#include "backends/gptq/gptq_gemm_a.cuh"
#include "backends/gptq/gptq_a_norm_staging.cuh"
#include "backends/gptq/gptq_a_ops.cuh"
#include "backends/gptq/gptq_stream_load.cuh"

#include "cuda/cuda_check.cuh"
#include "cuda/gpu_clock.cuh"
#include "cuda/l2_prefetch.cuh"
#include "cuda/rms_norm.cuh"
#include "cuda/swiglu.cuh"
#include "qbench/common/errors.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>

namespace qbench::gptq {

namespace {

/// Measurement switch, fixed at build time (backends/gptq/CMakeLists.txt, QBENCH_GPTQ_AB_DEFINES): the widths (bit b
/// for b bits) whose main loop runs as whole ring turns without per-chunk bounds checks, then the tail; the others
/// check every chunk. Default: none. The unchecked loop has 15-34% fewer instructions per mma (SASS) but measured
/// 3-12% slower at 2, 3 and 4 bits on an H100 (PERF_NOTES.md, thirteenth session): ptxas then gathers a turn's
/// refills into one batch late in the turn, so fewer bytes are in flight; at 4 bits it also spills.
#ifndef QBENCH_GPTQ_STEADY_LOOP_BITS
#define QBENCH_GPTQ_STEADY_LOOP_BITS 0
#endif

/// Chunks in flight per warp (16 bytes per lane each, 24 at 3 bits): 6 at 4 bits, 4 at 8 and 2, 3 at 3 (a k-block's
/// chunks share a ring turn; at 2 and 3 bits a chunk is a k-block, whose 8 mmas need 16 activation registers), so
/// that the kernel fits 64 registers without spilling and two 512-thread CTAs (32 warps) stay resident per SM: 96 /
/// 64 / 72 KB in flight per SM (one more chunk at 2 or 3 bits made ptxas spill ring slots in the loop).
template <int Bits>
inline constexpr int k_a_stages = Bits == 4 ? 6 : Bits == 3 ? 3 : 4;

using a_ops::sum_group16;
using a_norm_staging::scaled_row_inv;
using a_norm_staging::stage_normed_x;
using a_norm_staging::stage_scaled_x;

/// 16 bytes global -> shared without passing through registers (cp.async, sm_80+), so that a thread's copies of all
/// the batch rows are in flight at once (a plain copy loop waits one L2 round trip per 512 vectors). Measured slower
/// than the register copies at every beam (a_x_copy); kept as the `async` way for comparison.
__device__ __forceinline__ void copy_16_async(void* smem_dst, const void* gmem_src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const auto dst = static_cast<std::uint32_t>(__cvta_generic_to_shared(smem_dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(gmem_src) : "memory");
#else
    *static_cast<uint4*>(smem_dst) = *static_cast<const uint4*>(gmem_src);
#endif
}
__device__ __forceinline__ void copy_async_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_all;" ::: "memory");
#endif
}

/// A field of member `mi` of the kernel parameters, by selects: indexing the parameter array with a register would
/// make the compiler copy the whole array to local memory.
/// Thread 0's stamp of a trace field (a_args::trace; measurement only). The address is formed here, not kept live.
/// Single CTAs only: in the paired kernels the stamps cost 4 bytes more of spills, so those are never stamped (trace
/// 2 and 3 bits with QBENCH_GPTQ_PAIR=0).
template <int Pairs>
__device__ __forceinline__ void trace_stamp(const a_args& a, int field) {
    if constexpr (Pairs != 1) return;
    if (a.trace == nullptr || threadIdx.x != 0) return;
    unsigned long long* at = a.trace + static_cast<std::size_t>(blockIdx.x) * k_a_trace_fields;
    at[field] = gpu_time_ns();
    if (field == a_trace_entry) at[a_trace_sm] = sm_index();
}

/// a_args::norm_out: the launch's last CTA forms the next RMSNorm (rms_norm.cuh, last_block_rms_norm), each warp of
/// the k_a_warps standing for the fast kernel's warps w, w + k_a_warps, ...; its scratch is the staged x's shared
/// memory (no static shared memory, which would cost the largest launches their second CTA per SM).
inline constexpr int k_a_norm_per = static_cast<int>(k_rms_norm_max_chunks) / (32 * k_a_warps);

template <class F>
__device__ __forceinline__ auto member_field(const a_args& a, int mi, F f) {
    return mi == 0 ? f(a.m[0]) : mi == 1 ? f(a.m[1]) : f(a.m[2]);
}

/// The kernel (gptq_gemm_a.cuh). After pdl_wait the CTA copies the activations into shared memory and sums each
/// (row, k-block) of them (sum_k x for the zero correction). Per chunk a lane reads its activations (B) from shared
/// memory, decodes mma_count A fragments from its 16-byte vector and accumulates them; at a k-block's last chunk
/// out += S * (acc - C * sum_k x) per output (zero and scale, fp32).
/// Pairs (2): a CTA of 1024 threads hosts two of these CTAs (logical CTAs 2 * blockIdx.x and 2 * blockIdx.x + 1, one
/// per 16-warp half, each with its own partial sums and output barrier) that share one copy of the activations: half
/// the L2 -> SM traffic of staging x per SM (gptq_gemm_a.cuh, a_args::paired).
template <int Bits, bool NoAlloc, bool Swiglu, a_norm_form Norm, int Pairs>
__global__ void __launch_bounds__(k_a_threads * Pairs, 2 / Pairs) a_gemm_kernel(const a_args a) {
    constexpr int CR = a_chunk_rows(Bits), CPB = a_chunks_per_block(Bits), MMAS = a_mmas_per_chunk(Bits);
    constexpr int XV = CR / 32;  // 16-byte activation vectors per lane per chunk
    constexpr int CV = a_chunk_words(Bits) / 4;  // 16-byte vectors per chunk (32; 48 at 3 bits: the high bits follow)
    constexpr int D = k_a_stages<Bits>;
    constexpr int RUNS = Swiglu ? 2 : 1;  // member runs a CTA streams: swiglu, gate then up over the same mtiles
    static_assert(k_a_warps == k_a_kslices, "one k-slice per warp");
    static_assert(D % CPB == 0, "a k-block's chunks fill whole ring slots from a multiple of CPB");
    static_assert(Pairs == 1 || (Pairs == 2 && Norm == a_norm_form::none), "paired CTAs stage x as it is (no folded norm)");
    constexpr int T = k_a_threads * Pairs;  // threads of the CTA (both halves): they stage x together
    // Dynamic shared memory (a_smem_bytes): activations [rows][a_x_stride] fp16 (zero past K, as x is), their sums
    // [k-block][8 rows] fp32 (zero past the batch), the partial outputs [mtile of the CTA][warp][row][16] fp32 (paired:
    // [mtile][half][warp][row][16], so that a warp's slot follows from its warp index in the CTA as unpaired).
    trace_stamp<Pairs>(a, a_trace_entry);
    extern __shared__ uint4 smem[];
    const int kpad = a.kblocks * static_cast<int>(k_block_rows);
    const int xstride = a_x_stride(a.kblocks);
    __half* xs = reinterpret_cast<__half*>(smem);
    float* xsum = reinterpret_cast<float*>(xs + static_cast<std::size_t>(a.rows) * xstride);

    const int tid = static_cast<int>(threadIdx.x);
    // The logical CTA within the CTA and its thread (compile-time 0 and tid unpaired: the same code as before pairs).
    const int half = Pairs == 1 ? 0 : tid / k_a_threads, htid = Pairs == 1 ? tid : tid % k_a_threads;
    const int warp = htid >> 5, lane = tid & 31;  // warp: the k-slice within the logical CTA
    const int g = lane >> 2, t = lane & 3;
    float* red = xsum + static_cast<std::size_t>(a.kblocks) * 8;

    // This CTA's member (group: the members' CTA ranges follow each other; swiglu: member 0's tiles, then the same
    // tiles of member 1) and its mtile range within it, as a launch of that member alone would split it.
    // A logical CTA past the last member's (the grid rounded up to whole pairs) has no mtiles; it only stages x.
    // Paired: logical CTAs 2 * blockIdx.x + half, or blockIdx.x + half * gridDim.x (a_args::pair_spread).
    const int bx = static_cast<int>(blockIdx.x), grid = static_cast<int>(gridDim.x);
    int mi = 0, ctas = a.m[0].ctas;
    int b = Pairs == 1 ? bx : (a.pair_spread ? bx + half * grid : bx * Pairs + half);
    if constexpr (!Swiglu) {
#pragma unroll
        for (int i = 0; i + 1 < k_a_max_members; ++i) {
            const int c = member_field(a, i, [](const a_member& m) { return m.ctas; });
            if (mi == i && i + 1 < a.members && b >= c) {
                b -= c;
                mi = i + 1;
            }
        }
        ctas = member_field(a, mi, [](const a_member& m) { return m.ctas; });
    }
    const int mtiles = member_field(a, mi, [](const a_member& m) { return m.mtiles; });
    const bool idle = Pairs > 1 && b >= ctas;
    const int t0 = idle ? 0 : static_cast<int>(static_cast<long long>(mtiles) * b / ctas);
    const int t1 = idle ? 0 : static_cast<int>(static_cast<long long>(mtiles) * (b + 1) / ctas);
    const int ntl = t1 - t0;  // mtiles per run
    const int kb0 = static_cast<int>(kslice_begin(a.kblocks, warp, k_a_kslices));
    const int kb1 = static_cast<int>(kslice_begin(a.kblocks, warp + 1, k_a_kslices));
    const int nkb = kb1 - kb0;
    const int run_units = nkb * CPB * ntl;
    const int units = RUNS * run_units;

    // Load side: this warp's records in a run are first .. first + nkb * ntl - 1, its chunks CPB times as many.
    const std::size_t first = static_cast<std::size_t>(mtiles) * kb0 + static_cast<std::size_t>(t0) * nkb;
    auto run_weights = [&](int m) {
        const auto* q = reinterpret_cast<const uint4*>(member_field(a, m, [](const a_member& x) { return x.qweight; }));
        return q + first * CPB * CV + lane;
    };
    auto run_meta = [&](int m) {
        return reinterpret_cast<const uint2*>(member_field(a, m, [](const a_member& x) { return x.meta; })) + first * 8 + g;
    };
    const uint4* wp = run_weights(mi);
    const uint2* mp = run_meta(mi);
    int to_switch = run_units;  // swiglu: chunks left before the load side moves to member 1
    // swiglu: where the warp's up run starts, parked in shared memory (read once, at the switch) so that the two
    // pointers hold no registers through the loop (held in registers they were spilled and reloaded every chunk).
    __shared__ const uint4* up_weights[Swiglu ? k_a_warps * Pairs : 1];
    __shared__ const uint2* up_meta[Swiglu ? k_a_warps * Pairs : 1];
    if constexpr (Swiglu) {
        if (lane == 0) {
            up_weights[tid >> 5] = run_weights(1) - lane;
            up_meta[tid >> 5] = run_meta(1) - g;
        }
        __syncwarp();
    }
    uint4 wbuf[D];
    [[maybe_unused]] uint2 hbuf[Bits == 3 ? D : 1];  // 3 bits: the lane's high bits of each chunk in the ring
    uint2 mbuf[D / CPB];
    // Chunk into slot i; a k-block's record travels with its last chunk, so the slot's record is read by that chunk's
    // epilogue before the ring comes round to it again.
    auto issue = [&](int i) {
        wbuf[i] = stream_load<NoAlloc>(wp);
        if constexpr (Bits == 3) hbuf[i] = stream_load<NoAlloc>(reinterpret_cast<const uint2*>(wp + (32 - lane)) + lane);
        wp += CV;
        if (i % CPB == CPB - 1) {
            mbuf[i / CPB] = stream_load<NoAlloc>(mp);
            mp += 8;
        }
        if constexpr (Swiglu) {
            if (--to_switch == 0) {  // a run is whole k-blocks, so the switch falls between records
                wp = up_weights[threadIdx.x >> 5] + lane;  // (the warp within the CTA: recomputed, not kept live)
                mp = up_meta[threadIdx.x >> 5] + g;
            }
        }
    };
#pragma unroll
    for (int i = 0; i < D; ++i)
        if (i < units) issue(i);

    // QBENCH_GPTQ_L2PRE: the warp's next weight bytes and its records into L2 (swiglu: gate's run, then up's).
    if (a.l2_prefetch_bytes > 0 && units > 0) {
        constexpr unsigned chunk_bytes = CV * 16;
        const unsigned run_bytes = static_cast<unsigned>(run_units) * chunk_bytes;
        const unsigned issued = static_cast<unsigned>(D < run_units ? D : run_units) * chunk_bytes;
        const unsigned budget = static_cast<unsigned>(a.l2_prefetch_bytes);
        const unsigned record_bytes = static_cast<unsigned>(nkb * ntl) * 64u;  // 8 uint2 per record
        const unsigned first_part = min(budget, run_bytes - issued);
        warp_prefetch_l2(reinterpret_cast<const char*>(run_weights(mi) - lane) + issued, first_part, lane);
        warp_prefetch_l2(reinterpret_cast<const char*>(run_meta(mi) - g), record_bytes, lane);
        if constexpr (Swiglu) {
            warp_prefetch_l2(reinterpret_cast<const char*>(run_weights(1) - lane), min(budget - first_part, run_bytes), lane);
            warp_prefetch_l2(reinterpret_cast<const char*>(run_meta(1) - g), record_bytes, lane);
        }
    }

    const int red_count = RUNS * ntl * k_a_warps * a.rows * static_cast<int>(k_a_tile_cols);
    if constexpr (Pairs == 1) {  // the sums and the partials are contiguous
        for (int i = tid; i < a.kblocks * 8 + red_count; i += k_a_threads) xsum[i] = 0.0f;
    } else {  // the partials of both halves: as many tiles as the busier half has (a.red_floats per half)
        for (int i = tid; i < a.kblocks * 8 + Pairs * a.red_floats; i += T) xsum[i] = 0.0f;
    }
    __syncthreads();  // the sums are stored below by other threads

    // Norm: this thread's norm weights of the first round (chunk tid): constants, so requested before the wait (a
    // second round, K > 4096, loads its own after the wait).
    // The scaled form only asks L2 for them (no registers held across the wait: with them its SwiGLU kernel spilled).
    [[maybe_unused]] uint4 norm_w = make_uint4(0u, 0u, 0u, 0u);
    if constexpr (Norm == a_norm_form::exact) {
        if (tid < a.kblocks * static_cast<int>(k_block_rows) / 8)
            norm_w = reinterpret_cast<const uint4*>(a.norm_weight)[tid];
    } else if constexpr (Norm == a_norm_form::scaled) {
        if (tid < a.kblocks * static_cast<int>(k_block_rows) / 8)
            prefetch_l2_line(reinterpret_cast<const uint4*>(a.norm_weight) + tid);
    }

    pdl_wait();  // x and y belong to the previous kernels
    pdl_trigger();
    trace_stamp<Pairs>(a, a_trace_waited);

    // The activations into shared memory and their sums per (row, k-block) (the zero correction's sum_k x): a
    // (row, k-block) is 16 vectors = 16 consecutive threads of a half-warp (kpad/8 is a multiple of 16), which add
    // their 8 values each and combine by shuffles; the group's first thread stores the sum. Four ways to move them
    // (a_x_copy, measured against each other in PERF_NOTES.md, seventh session), all giving the same bits; the Norm
    // kernels form rms_norm(x) * w on the way instead.
    const int vecs = kpad / 8, total = a.rows * vecs;
    auto x_vec = [&](int r, int v) { return reinterpret_cast<const uint4*>(a.x + static_cast<std::size_t>(r) * a.ldx) + v; };
    auto xs_vec = [&](int r, int v) { return reinterpret_cast<uint4*>(xs + static_cast<std::size_t>(r) * xstride) + v; };
    auto sums_from_smem = [&] {
        for (int base = 0; base < total; base += T) {
            const int i = base + tid;
            const bool valid = i < total;  // whole groups of 16 are valid or not
            const int r = valid ? i / vecs : 0, v = valid ? i % vecs : 0;
            sum_group16(valid ? *xs_vec(r, v) : make_uint4(0u, 0u, 0u, 0u), valid, r, v, xsum);
        }
    };
    if constexpr (Norm == a_norm_form::exact) {
        stage_normed_x(a.x, a.ldx, a.rows, vecs, a.norm_weight, a.norm_eps, norm_w, xs, xstride, xsum, a.norm_probe);
    } else if constexpr (Norm == a_norm_form::scaled) {
        stage_scaled_x(a.x, a.ldx, a.rows, vecs, a.norm_weight, xs, xstride, xsum);
    } else if (a.x_copy == a_x_copy::async) {  // (the Norm kernels never get here)
        // Every vector in flight at once without registers (cp.async), then the sums from shared memory.
        for (int i = tid; i < total; i += T) copy_16_async(xs_vec(i / vecs, i % vecs), x_vec(i / vecs, i % vecs));
        copy_async_wait_all();
        __syncthreads();
        sums_from_smem();
    } else {
        // Through registers: N vectors per thread in flight per round (plain 1, pairs 2, quads 4), all loaded before
        // any is stored, so a round costs one L2 round trip.
        auto rounds = [&](auto n_tag) {
            constexpr int N = decltype(n_tag)::value;
            for (int base = 0; base < total; base += N * T) {
                uint4 u[N];
#pragma unroll
                for (int j = 0; j < N; ++j) {
                    const int i = base + j * T + tid;
                    u[j] = i < total ? *x_vec(i / vecs, i % vecs) : make_uint4(0u, 0u, 0u, 0u);
                }
#pragma unroll
                for (int j = 0; j < N; ++j) {
                    if (base + j * T >= total) break;  // uniform: no later part of the round exists
                    const int i = base + j * T + tid;
                    const bool valid = i < total;  // whole groups of 16 are valid or not
                    const int r = valid ? i / vecs : 0, v = valid ? i % vecs : 0;
                    if (valid) *xs_vec(r, v) = u[j];
                    sum_group16(u[j], valid, r, v, xsum);
                }
            }
        };
        if (a.x_copy == a_x_copy::quads) rounds(std::integral_constant<int, 4>{});
        else if (a.x_copy == a_x_copy::pairs) rounds(std::integral_constant<int, 2>{});
        else rounds(std::integral_constant<int, 1>{});
    }
    __syncthreads();
    trace_stamp<Pairs>(a, a_trace_staged);

    // The lane's B column is batch row g, rows p .. of each chunk; the pointers return to the slice start at each
    // mtile. A lane whose column g is past the batch reads row 0 instead: mma column g only reaches outputs of column g,
    // which are never parked or stored (rows < a.rows only), so the load needs no predicate and no zeroing (the
    // CS2R pairs that zeroed the registers were ~7% of the 2/3/4-bit loops' instructions; PERF_NOTES.md, twelfth
    // session). The outputs are the same bits.
    const __half* xbase = xs + static_cast<std::size_t>(g < a.rows ? g : 0) * xstride +
                          static_cast<std::size_t>(kb0) * k_block_rows + t * (CR / 4);
    const float* sbase = xsum + kb0 * 8 + 2 * t;
    const __half* xp = xbase;
    const float* sp = sbase;

    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f}, out[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int blocks_left = nkb, tl = 0;
    // Ring slot i's chunk: its products, the k-block's epilogue at the block's last chunk, and (refill) the slot's next
    // load, D chunks ahead.
    auto consume = [&](int i, bool refill) {
        std::uint32_t xw[4 * XV];
        a_ops::load_x_words<XV>(xp, xw);
        xp += CR;
        std::uint32_t w[a_lane_words(Bits)];
        w[0] = wbuf[i].x, w[1] = wbuf[i].y, w[2] = wbuf[i].z, w[3] = wbuf[i].w;
        if constexpr (Bits == 3) w[4] = hbuf[i].x, w[5] = hbuf[i].y;
        if (i % CPB == 0) {
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[e] = 0.0f;
        }
        a_ops::chunk_mmas<Bits, XV, MMAS>(w, xw, acc);
        if (i % CPB == CPB - 1) {
            a_ops::correct_block<Bits>(out, acc, mbuf[i / CPB], sp);  // sp: sum_k x of batch rows 2t, 2t+1
            if (--blocks_left == 0) {  // this warp's slice of the mtile is done: park its partial sums
                // (tid >> 5: the warp within the CTA, half * 16 + warp)
                float* slot = red + static_cast<std::size_t>(tl * k_a_warps * Pairs + (tid >> 5)) * a.rows * k_a_tile_cols;
                const int r0 = 2 * t;
                if (r0 < a.rows) {
                    slot[r0 * k_a_tile_cols + g] = out[0];
                    slot[r0 * k_a_tile_cols + g + 8] = out[2];
                }
                if (r0 + 1 < a.rows) {
                    slot[(r0 + 1) * k_a_tile_cols + g] = out[1];
                    slot[(r0 + 1) * k_a_tile_cols + g + 8] = out[3];
                }
#pragma unroll
                for (int e = 0; e < 4; ++e) out[e] = 0.0f;
                blocks_left = nkb;
                ++tl;
                xp = xbase;
                sp = sbase;
            }
        }
        if (refill) issue(i);
    };
    int base = 0;
    if constexpr (((QBENCH_GPTQ_STEADY_LOOP_BITS >> Bits) & 1) != 0) {
        // Steady state first: whole ring turns whose chunks all exist and all refill, so no chunk needs a bounds
        // check (the check costs a compare, a branch, its convergence barrier and a WARPSYNC before each chunk's
        // first mma). The last turns then go through the checked loop below.
        for (; base + 2 * D <= units; base += D) {
#pragma unroll
            for (int i = 0; i < D; ++i) consume(i, true);
        }
    }
    // The default: every chunk checked (and its refill issued right after its mmas).
    for (; base < units; base += D) {
#pragma unroll
        for (int i = 0; i < D; ++i)
            if (base + i < units) consume(i, base + i + D < units);
    }

    // The outputs: thread i of the (logical) CTA writes output i, i + 512, ... (tile, row, column of the tile). Paired,
    // the half and its thread are read again from threadIdx rather than kept in registers through the loop.
    const int otid = Pairs == 1 ? tid : static_cast<int>(threadIdx.x) % k_a_threads;
    const int ohalf = Pairs == 1 ? 0 : static_cast<int>(threadIdx.x) / k_a_threads;
    const int per = a.rows * static_cast<int>(k_a_tile_cols);
    __half* y = member_field(a, mi, [](const a_member& m) { return m.y; });
    const int n_out = member_field(a, mi, [](const a_member& m) { return m.n; });
    auto y_index = [&](int i) {  // -1 past N
        const int tile = i / per, rem = i % per;
        const int r = rem / static_cast<int>(k_a_tile_cols), col = rem % static_cast<int>(k_a_tile_cols);
        const int n = (t0 + tile) * static_cast<int>(k_a_tile_cols) + col;
        return n < n_out ? r * n_out + n : -1;
    };
    // residual_add: the stream's value at this thread's first output, requested before the barrier so that its round
    // trip overlaps the slowest warp's last chunks instead of following them (no one else writes it: the previous
    // kernels are done, and every output belongs to one CTA).
    __half prior = __ushort_as_half(0);
    if (!Swiglu && Norm == a_norm_form::none && a.residual_add && otid < ntl * per) {  // (the normed forwards never add)
        const int yi = y_index(otid);
        if (yi >= 0) prior = y[yi];
    }
    if constexpr (Pairs == 1) {
        __syncthreads();
    } else {  // each half waits for its own 16 warps only (named barriers 1 and 2; 0 is __syncthreads'). Immediate ids:
        // with a register id ptxas reserves all 16 of the SM's barriers for the CTA.
        if (ohalf == 0) asm volatile("bar.sync 1, %0;" ::"n"(k_a_threads) : "memory");
        else asm volatile("bar.sync 2, %0;" ::"n"(k_a_threads) : "memory");
    }
    trace_stamp<Pairs>(a, a_trace_loop_done);
    // The 16 warps' partials of an output, added in warp order whatever the launch (bit-identical outputs).
    auto output_sum = [&](int tile, int r, int col) {
        float s = 0.0f;
#pragma unroll
        for (int wq = 0; wq < k_a_warps; ++wq)
            s += red[(((tile * Pairs + ohalf) * k_a_warps + wq) * a.rows + r) * k_a_tile_cols + col];
        return s;
    };
    for (int i = otid; i < ntl * per; i += k_a_threads) {
        const int tile = i / per, rem = i % per;
        const int r = rem / static_cast<int>(k_a_tile_cols), col = rem % static_cast<int>(k_a_tile_cols);
        const int n = (t0 + tile) * static_cast<int>(k_a_tile_cols) + col;
        if (n >= n_out) continue;
        // The sum of an output of tile `tl_`; the scaled form's still lacks the row's inverse RMS (a_args::norm_scaled),
        // applied here, before any rounding. (Formed in sum_of, not once per output: held in a register for the
        // SwiGLU kernels' two sums, it made the 4-bit one spill more, ptxas 16/36 bytes instead of 4/16.)
        auto sum_of = [&](int tl_) {
            float s = output_sum(tl_, r, col);
            if constexpr (Norm == a_norm_form::scaled) s = __fmul_rn(s, scaled_row_inv(r, vecs, a.norm_eps));
            return s;
        };
        if constexpr (Swiglu) {
            // gate tile `tile`, up tile ntl + tile; each rounded to fp16 as the separate linears store it, then the
            // product exactly as launch_swiglu forms it.
            const float gs = __half2float(__float2half_rn(sum_of(tile)));
            const float us = __half2float(__float2half_rn(sum_of(ntl + tile)));
            y[static_cast<std::size_t>(r) * n_out + n] = __float2half_rn(silu_times(gs, us));
        } else {
            // residual_add: y is the residual stream, updated as launch_rms_norm's add would (fp16(y + fp16(sum))).
            __half& out = y[static_cast<std::size_t>(r) * n_out + n];
            const __half sum = __float2half_rn(sum_of(tile));
            out = a.residual_add ? rms_residual_add(i == otid ? prior : out, sum) : sum;
        }
    }
    if constexpr (!Swiglu && Norm == a_norm_form::none && Pairs == 1) {
        // (x's staging is free now: every warp's loop is done, and the outputs above read only the partials)
        if (a.norm_out != nullptr)
            last_block_rms_norm<k_a_norm_per>(y, n_out, a.rows, a.norm_out, a.out_norm_weight, a.out_norm_eps, a.arrivals,
                                              reinterpret_cast<double*>(smem));
    }
    trace_stamp<Pairs>(a, a_trace_end);
}

/// One thread per (mtile, chunk, lane): gathers the lane's codes from AutoGPTQ's stream (a_gather_lane).
template <int Bits>
__global__ void repack_a_kernel(const std::int32_t* src, const std::int32_t* row_of, std::int64_t k, std::int64_t n,
                                int kblocks, int mtiles, std::uint32_t* dst) {
    const std::int64_t chunks = static_cast<std::int64_t>(kblocks) * a_chunks_per_block(Bits);
    const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= static_cast<std::int64_t>(mtiles) * chunks * 32) return;
    const int lane = static_cast<int>(i % 32);
    const std::int64_t c = (i / 32) % chunks, tile = (i / 32) / chunks;
    std::uint32_t w[a_lane_words(Bits)];
    a_gather_lane<Bits>(src, row_of, k, n, tile, c, lane, w);
    uint4* chunk = reinterpret_cast<uint4*>(dst + a_chunk_index(mtiles, kblocks, Bits, tile, c) * a_chunk_words(Bits));
    chunk[lane] = make_uint4(w[0], w[1], w[2], w[3]);
    if constexpr (Bits == 3) reinterpret_cast<uint2*>(chunk + 32)[lane] = make_uint2(w[4], w[5]);
}

/// One thread per (mtile, chunk, lane): decodes the lane's codes with a_fragment and writes each weight, (q - z) * s
/// rounded once to fp16 (the CPU reference's dequantization), at its original row.
template <int Bits>
__global__ void reconstruct_a_kernel(const std::uint32_t* qweight, const std::uint32_t* meta, const std::int32_t* row_of,
                                     std::int64_t k, std::int64_t n, int kblocks, int mtiles, __half* w_t) {
    constexpr int CR = a_chunk_rows(Bits), CPB = a_chunks_per_block(Bits);
    pdl_wait();
    pdl_trigger();
    const std::int64_t chunks = static_cast<std::int64_t>(kblocks) * CPB;
    const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= static_cast<std::int64_t>(mtiles) * chunks * 32) return;
    const int lane = static_cast<int>(i % 32), g = lane / 4, t = lane % 4;
    const std::int64_t c = (i / 32) % chunks, tile = (i / 32) / chunks;
    const std::uint32_t* chunk = qweight + a_chunk_index(mtiles, kblocks, Bits, tile, c) * a_chunk_words(Bits);
    std::uint32_t w[a_lane_words(Bits)];
    for (int i = 0; i < a_lane_words(Bits); ++i) w[i] = chunk[a_lane_word_offset(lane, i)];
    const std::uint32_t* rec = meta + a_record_index(mtiles, kblocks, tile, c / CPB) * k_a_record_words + g * k_a_entry_words;
    const std::uint32_t sw = rec[0], cw = rec[1];
#pragma unroll
    for (int m = 0; m < a_mmas_per_chunk(Bits); ++m) {
        std::uint32_t af[4];
        a_fragment<Bits>(w, m, af);
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const std::int64_t col = tile * k_a_tile_cols + g + 8 * h;
            const int shift = h == 1 ? a_r1_shift(Bits) : 0;  // r1's codes and zeros carry the factor f (layout)
            const int z = static_cast<int>((((cw >> (16 * h)) & 0xffffu) - 0x6400u) >> shift);
            const float s = __half2float(__ushort_as_half(static_cast<unsigned short>(sw >> (16 * h))));
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const std::int64_t r = c * CR + t * (CR / 4) + 4 * m + j;
                if (r >= k || col >= n) continue;
                const std::uint32_t pair = af[h + 2 * (j >> 1)];
                const int q = static_cast<int>((((j & 1) ? pair >> 16 : pair & 0xffffu) - 0x6400u) >> shift);
                w_t[static_cast<std::int64_t>(row_of ? row_of[r] : r) * n + col] = __float2half_rn(static_cast<float>(q - z) * s);
            }
        }
    }
}

unsigned blocks_for(std::int64_t threads, int per_block) {
    return static_cast<unsigned>((threads + per_block - 1) / per_block);
}

using a_kernel_ptr = void (*)(a_args);
template <bool Swiglu>
a_kernel_ptr kernel_of(int bits, bool na, a_norm_form norm, bool paired) {
    // The folded-norm kernels exist for the default load policy and single CTAs only (the caller declines the fold
    // otherwise; launch_a_gemm never pairs a normed launch).
    constexpr a_norm_form none = a_norm_form::none, exact = a_norm_form::exact, scaled = a_norm_form::scaled;
    a_kernel_ptr k = nullptr;
    a_with_bits(bits, [&](auto b) {
        constexpr int B = decltype(b)::value;
        if (norm != none) k = na || paired ? nullptr : norm == exact ? &a_gemm_kernel<B, false, Swiglu, exact, 1> : &a_gemm_kernel<B, false, Swiglu, scaled, 1>;
        else if (paired) k = na ? &a_gemm_kernel<B, true, Swiglu, none, 2> : &a_gemm_kernel<B, false, Swiglu, none, 2>;
        else k = na ? &a_gemm_kernel<B, true, Swiglu, none, 1> : &a_gemm_kernel<B, false, Swiglu, none, 1>;
    });
    return k;
}
a_kernel_ptr kernel_of(int bits, bool na, a_mode mode, a_norm_form norm, bool paired = false) {
    return mode == a_mode::swiglu ? kernel_of<true>(bits, na, norm, paired) : kernel_of<false>(bits, na, norm, paired);
}
}  // namespace

int a_max_tiles_per_cta(a_mode mode, const a_args& args) {
    auto most = [](const a_member& m) { return m.ctas > 0 ? (m.mtiles + m.ctas - 1) / m.ctas : 0; };
    if (mode == a_mode::swiglu) return 2 * most(args.m[0]);
    int tiles = 0;
    for (int i = 0; i < args.members && i < k_a_max_members; ++i) tiles = std::max(tiles, most(args.m[i]));
    return tiles;
}

int a_grid(a_mode mode, const a_args& args) {
    if (mode == a_mode::swiglu) return args.m[0].ctas;
    int ctas = 0;
    for (int i = 0; i < args.members && i < k_a_max_members; ++i) ctas += args.m[i].ctas;
    return ctas;
}

const void* a_kernel_for(int bits, bool bypass_l1, a_mode mode, a_norm_form norm) {
    a_kernel_ptr k = kernel_of(bits, bypass_l1, mode, norm);
    if (k == nullptr) return nullptr;
    // Each kernel may take up to k_a_max_smem of dynamic shared memory (above the default 48 KB): set before use, for
    // every kernel of every width kernel_of knows (a width missing here fails its larger launches: "invalid argument").
    // And the L1 / shared-memory split where QBENCH_GPTQ_CARVEOUT=0..100 asks for one (A/B runs; unset: the driver's).
    static const bool raised = [] {
        const int carveout = preferred_carveout_from_env("QBENCH_GPTQ_CARVEOUT");
        for (int bits_ = 1; bits_ <= 8; ++bits_)
            for (bool na : {false, true})
                for (a_mode m : {a_mode::group, a_mode::swiglu})
                    for (a_norm_form nrm : {a_norm_form::none, a_norm_form::exact, a_norm_form::scaled})
                        for (int pairs : {1, 2})
                            if (const a_kernel_ptr f = kernel_of(bits_, na, m, nrm, pairs == 2)) {
                                QB_CUDA_CHECK(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                                   static_cast<int>(pairs * k_a_max_smem)));
                                if (carveout >= 0)
                                    QB_CUDA_CHECK(cudaFuncSetAttribute(f, cudaFuncAttributePreferredSharedMemoryCarveout, carveout));
                            }
        return true;
    }();
    (void)raised;
    return reinterpret_cast<const void*>(k);
}

void launch_a_gemm(int bits, bool bypass_l1, a_mode mode, const a_args& args, const launch_options& o) {
    const bool norm = args.norm_weight != nullptr;
    const a_norm_form form = a_norm_form_of(args);
    const a_kernel_ptr k = kernel_of(bits, bypass_l1, mode, form);
    if (k == nullptr)
        throw error("gptq v3: no kernel for " + std::to_string(bits) + " bits" + (norm && bypass_l1 ? " with the folded norm past L1" : ""));
    if (norm && (args.kblocks * static_cast<int>(k_block_rows) > k_a_max_norm_k || args.ldx != args.kblocks * static_cast<std::int64_t>(k_block_rows)))
        throw error("gptq v3: the folded RMSNorm needs whole rows of K = kblocks * 128 <= " + std::to_string(k_a_max_norm_k));
    const int members = mode == a_mode::swiglu ? 2 : args.members;
    if (members < 1 || members > k_a_max_members) throw error("gptq v3: " + std::to_string(members) + " members in one launch");
    for (int i = 0; i < members; ++i) {
        const a_member& m = args.m[i];
        const bool owns_ctas = mode == a_mode::group || i == 0;  // swiglu: member 0's CTAs are the grid
        if (m.mtiles <= 0 || (owns_ctas && m.ctas <= 0) || m.qweight == nullptr || m.meta == nullptr)
            throw error("gptq v3: member " + std::to_string(i) + " of a launch has no work or no weights");
        if (mode == a_mode::swiglu && m.mtiles != args.m[0].mtiles)
            throw error("gptq v3: gate and up of different widths in one SwiGLU launch");
    }
    (void)a_kernel_for(bits, bypass_l1, mode, form);  // raises the shared-memory limit before the first launch
    const int max_tiles = a_max_tiles_per_cta(mode, args);
    if (max_tiles > k_a_max_tiles || args.rows < 1 || args.rows > k_a_max_rows)
        throw error("gptq v3: " + std::to_string(max_tiles) + " mtiles per CTA at " + std::to_string(args.rows) +
                    " rows is outside the kernel's limits");
    if (a_smem_bytes(max_tiles, args.rows, args.kblocks) > k_a_max_smem)
        throw error("gptq v3: " + std::to_string(args.rows) + " rows of K = " + std::to_string(args.kblocks * k_block_rows) +
                    " need " + std::to_string(a_smem_bytes(max_tiles, args.rows, args.kblocks)) +
                    " bytes of shared memory (a_rows_per_launch says how many fit)");
    if (args.norm_out != nullptr) {
        const int n = args.m[0].n;
        if (mode != a_mode::group || members != 1 || !args.residual_add || norm || args.paired || args.arrivals == nullptr ||
            args.out_norm_weight == nullptr || !a_norms_rows_of(n))
            throw error("gptq v3: the RMSNorm of the outputs needs one unpaired member adding into the residual, a counter, "
                        "its weights and N % 8 == 0 with N <= 8192, not N = " + std::to_string(n));
    }
    // Paired: two logical CTAs per 1024-thread CTA, one copy of x for both (never with the folded norm).
    const int pairs = args.paired && !norm ? 2 : 1;
    a_args la = args;
    la.red_floats = max_tiles * k_a_warps * args.rows * static_cast<int>(k_a_tile_cols);
    la.pair_spread = pairs == 2 && a_pair_spread_from_env();
    const std::size_t smem = a_smem_bytes(max_tiles, args.rows, args.kblocks, pairs);  // <= pairs * k_a_max_smem
    const int grid = (a_grid(mode, args) + pairs - 1) / pairs;
    int mtiles = 0;
    for (int i = 0; i < (mode == a_mode::swiglu ? 1 : members); ++i) mtiles += args.m[i].mtiles;
    la.trace = a_trace_claim(a_trace_launch{grid, mode, members, args.kblocks, mtiles, 0});
    launch_kernel(pairs == 2 ? kernel_of(bits, bypass_l1, mode, a_norm_form::none, true) : k, dim3(static_cast<unsigned>(grid)),
                  dim3(static_cast<unsigned>(k_a_threads * pairs)), smem, o, la);
}

void launch_repack_a(int bits, const std::int32_t* qweight_autogptq, const std::int32_t* row_of, std::int64_t k,
                     std::int64_t n, int kblocks, std::uint32_t* qweight_device, const launch_options& o) {
    const int mtiles = static_cast<int>((n + k_a_tile_cols - 1) / k_a_tile_cols);
    const std::int64_t threads = static_cast<std::int64_t>(mtiles) * kblocks * a_chunks_per_block(bits) * 32;
    if (threads <= 0) return;
    const dim3 grid(blocks_for(threads, 256));
    if (!a_with_bits(bits, [&](auto b) {
            launch_kernel(repack_a_kernel<decltype(b)::value>, grid, dim3(256), 0, o, qweight_autogptq, row_of, k, n,
                          kblocks, mtiles, qweight_device);
        }))
        throw error("gptq v3 repack: unsupported bits " + std::to_string(bits));
}

void launch_reconstruct_a(int bits, const std::uint32_t* qweight, const std::uint32_t* meta, const std::int32_t* row_of,
                          std::int64_t k, std::int64_t n, int kblocks, __half* w_t, const launch_options& o) {
    const int mtiles = static_cast<int>((n + k_a_tile_cols - 1) / k_a_tile_cols);
    const std::int64_t threads = static_cast<std::int64_t>(mtiles) * kblocks * a_chunks_per_block(bits) * 32;
    if (threads <= 0) return;
    const dim3 grid(blocks_for(threads, 256));
    if (!a_with_bits(bits, [&](auto b) {
            launch_kernel(reconstruct_a_kernel<decltype(b)::value>, grid, dim3(256), 0, o, qweight, meta, row_of, k, n,
                          kblocks, mtiles, w_t);
        }))
        throw error("gptq v3 reconstruct: unsupported bits " + std::to_string(bits));
}

}  // namespace qbench::gptq
