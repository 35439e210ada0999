#pragma once
/// The body of one attention block: one query (head h of query row `row`) against the KV cache, for the attention
/// kernels (attention.cu: a CTA of 256 threads per (head, query)) and for a persistent kernel that runs attention as one
/// of its phases on part of a CTA (backends/gptq/gptq_chain.cu). Both run this code, so both give the same bits.
///
/// The caller provides: its thread index among `Threads` threads, their barrier (`sync`: __syncthreads for a whole
/// CTA, a named barrier for part of one), `wait` (called once, where the inputs q / k_new / v_new are first needed:
/// pdl_enter for a kernel, staging write-once inputs for a persistent one; DECODE: after the first cached keys and
/// values are requested), the query's rows (qrow, and at decode the new key and value rows of its kv head), where its
/// output row goes, and shared memory: `smem` of attention_smem_floats(head_dim, max_len) floats and `scratch` of 32.
#include "cuda/reduce.cuh"
#include "cuda/rope.cuh"
#include "qbench/common/counter_rng.hpp"  // QB_HOST_DEVICE

#include <cuda_fp16.h>

#include <cstdint>

namespace qbench {

/// Floats of an attention block's shared memory: q, new k, new v (d each), scores (max_len), partial outputs (per value
/// group in the generic pass, per warp in the vectorized one).
QB_HOST_DEVICE constexpr std::size_t attention_smem_floats(int threads, int head_dim, std::int64_t max_len) {
    const int pairs = head_dim / 2;
    const int value_groups = threads / pairs > 0 ? threads / pairs : 1;
    const int warps = threads / 32;
    return 3 * static_cast<std::size_t>(head_dim) + static_cast<std::size_t>(max_len) +
           static_cast<std::size_t>(value_groups > warps ? value_groups : warps) * static_cast<std::size_t>(head_dim);
}

#if defined(__CUDACC__)
namespace attention_detail {

// One 16-byte chunk of a key row (8 halves) into the four partial sums of a dot product with the fp32 query q8.
__device__ __forceinline__ void dot_chunk(float (&a)[4], const uint4& chunk, const float* q8) {
    const __half2* h = reinterpret_cast<const __half2*>(&chunk);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const float2 f = __half22float2(h[j]);
        a[j] = fmaf(f.x, q8[2 * j], a[j]);
        a[j] = fmaf(f.y, q8[2 * j + 1], a[j]);
    }
}

// Dot product of a key row already in registers (D / 8 chunks) with the fp32 query in shared memory.
template <int D>
__device__ __forceinline__ float dot_chunks(const uint4 (&kr)[D > 0 ? D / 8 : 1], const float* qs) {
    float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int c = 0; c < D / 8; ++c) dot_chunk(a, kr[c], qs + c * 8);
    return (a[0] + a[1]) + (a[2] + a[3]);
}

// Dot product of a cached fp16 key row with the fp32 query in shared memory. D > 0: every 16-byte load of the row
// is issued before the first use (one memory round trip per key); D == 0: any even head size, strided.
template <int D>
__device__ __forceinline__ float dot_row(const __half* __restrict__ krow, const float* qs, int d) {
    if constexpr (D > 0) {
        const uint4* k4 = reinterpret_cast<const uint4*>(krow);
        uint4 kr[D / 8];
#pragma unroll
        for (int c = 0; c < D / 8; ++c) kr[c] = k4[c];
        return dot_chunks<D>(kr, qs);
    } else {
        float a0 = 0.0f, a1 = 0.0f;
        for (int i = 0; i < d; i += 2) {
            a0 = fmaf(__half2float(krow[i]), qs[i], a0);
            a1 = fmaf(__half2float(krow[i + 1]), qs[i + 1], a1);
        }
        return a0 + a1;
    }
}

// dot_chunks of a key row loaded four chunks at a time (fewer registers; the same products and sums in the same order).
template <int D>
__device__ __forceinline__ float dot_row_lean(const __half* __restrict__ krow, const float* qs) {
    static_assert(D > 0 && D % 32 == 0, "whole groups of four chunks");
    const uint4* k4 = reinterpret_cast<const uint4*>(krow);
    float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int c0 = 0; c0 < D / 8; c0 += 4) {
        uint4 kr[4];
#pragma unroll
        for (int c = 0; c < 4; ++c) kr[c] = k4[c0 + c];
#pragma unroll
        for (int c = 0; c < 4; ++c) dot_chunk(a, kr[c], qs + (c0 + c) * 8);
    }
    return (a[0] + a[1]) + (a[2] + a[3]);
}

}  // namespace attention_detail

// One query (head h, row `row`). DECODE: the query is beam `row` at position *pos_ptr; the block applies RoPE to q and
// to the new key, appends the new key and value to slot `row` (the block of the kv head's first query head does), and
// attends over positions [0, *pos] through slot_table. Otherwise the query is prefill row `row` at position pos0 + row,
// q is already rotated and the cache already holds every key (slot 0).
// D: the head size when it is one of the compiled ones (loads fully unrolled), 0 for any other even size.
// Lean: fewer loads in flight (no early first key, value batches of 4, keys read 4 chunks at a time), for a caller
// with few registers to spare (a persistent kernel sized for its GEMV); the same arithmetic in the same order, so the
// same bits.
template <bool DECODE, int D, int Threads, bool Lean = false, class Sync, class Wait>
__device__ __forceinline__ void attention_block(int tid, std::int64_t row, int h, const __half* __restrict__ qrow,
                                                const __half* __restrict__ krow, const __half* __restrict__ vrow,
                                                __half* orow, const float* __restrict__ inv_freq,
                                                const std::int32_t* pos_ptr, std::int64_t pos0,
                                                const std::int32_t* slot_table, int heads, int kv_heads, int head_dim,
                                                std::int64_t max_len, float scale, __half* k_cache, __half* v_cache,
                                                float* smem, float* scratch, Sync sync, Wait wait) {
    const int d = D > 0 ? D : head_dim;
    const int half_d = d / 2;
    float* qs = smem;
    float* kn = smem + d;
    float* vn = smem + 2 * d;
    float* scores = smem + 3 * d;
    float* partial = scores + max_len;
    const int group = heads / kv_heads;
    const int g = h / group;

    // Decode: the position, the slot table and every cached key and value before the position were written by earlier
    // steps (or the prefill), never by the kernel this one follows (the q/k/v GEMV), and every kernel before that one
    // has completed once this kernel runs (the GEMV launched it after its own pdl_wait): so the first keys and values
    // are requested before pdl_wait and arrive while the GEMV drains. Only q, k_new and v_new wait for it. The
    // prefill appends its keys in the kernel just before: it waits first.
    if constexpr (!DECODE) wait();
    // The slot of this thread's first key is requested together with the position, not after it (one memory round
    // trip fewer before the keys arrive); entries past the position are read but not used.
    std::int64_t first_slot = 0;
    if constexpr (DECODE)
        if (tid < max_len) first_slot = slot_table[row * max_len + tid];
    const std::int64_t pos = DECODE ? static_cast<std::int64_t>(*pos_ptr) : pos0 + row;
    // Where position p of this query's sequence lives.
    auto slot_of = [&](std::int64_t p) -> std::int64_t {
        if constexpr (DECODE) return slot_table[row * max_len + p];
        return 0;
    };
    auto key_row = [&](std::int64_t p) { return k_cache + ((slot_of(p) * max_len + p) * kv_heads + g) * d; };
    // Keys before `pos` do not depend on this launch: the first one of each thread is fetched now, so its latency
    // overlaps the RoPE work below (decode: the new key at `pos` is computed here, not read).
    // (Head size 256 would need 128 registers for it and spill: it reads its first key in the loop like the rest.)
    constexpr int kc = D > 0 ? D / 8 : 1;
    constexpr bool prefetch_key = !Lean && D > 0 && D <= 128;
    uint4 kfirst[kc];
    const std::int64_t key_limit = DECODE ? pos : pos + 1;  // cached keys this query reads
    if constexpr (prefetch_key) {
        if (tid < key_limit) {
            const uint4* k4 = reinterpret_cast<const uint4*>(
                k_cache + ((first_slot * max_len + tid) * kv_heads + g) * d);
#pragma unroll
            for (int c = 0; c < kc; ++c) kfirst[c] = k4[c];
        }
    }
    // Values (vectorized path): thread = (16-byte chunk vc of the head, group vgi); a group takes positions vgi,
    // vgi + G, ... in batches of 8 loads in flight. The first batch is requested here, with the keys, so both arrive
    // in one memory round trip; decode: the new position's value (vn) is added by group 0 at the end.
    constexpr int G = D > 0 ? Threads / kc : 1;
    constexpr int B = Lean ? 4 : 8;  // loads in flight; the sums run in position order whatever B
    const int vc = tid % kc, vgi = tid / kc;
    uint4 vb[B];
    auto load_batch = [&](std::int64_t p0) {
#pragma unroll
        for (int u = 0; u < B; ++u) {
            const std::int64_t p = p0 + static_cast<std::int64_t>(u) * G;
            vb[u] = p < key_limit
                        ? reinterpret_cast<const uint4*>(v_cache + ((slot_of(p) * max_len + p) * kv_heads + g) * d)[vc]
                        : make_uint4(0, 0, 0, 0);
        }
    };
    if constexpr (D > 0) load_batch(vgi);
    if constexpr (DECODE) wait();
    if constexpr (DECODE) {
        for (int i = tid; i < half_d; i += Threads) {
            float c, s;
            rope_angle_dev(pos, inv_freq[i], c, s);
            __half q1, q2, k1, k2;
            rope_rotate(__half2float(qrow[i]), __half2float(qrow[i + half_d]), c, s, q1, q2);
            qs[i] = __half2float(q1);
            qs[i + half_d] = __half2float(q2);
            rope_rotate(__half2float(krow[i]), __half2float(krow[i + half_d]), c, s, k1, k2);
            kn[i] = __half2float(k1);
            kn[i + half_d] = __half2float(k2);
            vn[i] = __half2float(vrow[i]);
            vn[i + half_d] = __half2float(vrow[i + half_d]);
            if (h % group == 0) {  // one block per kv head appends; the others use kn/vn for this position
                const std::int64_t at = ((row * max_len + pos) * kv_heads + g) * d;
                k_cache[at + i] = k1;
                k_cache[at + i + half_d] = k2;
                v_cache[at + i] = vrow[i];
                v_cache[at + i + half_d] = vrow[i + half_d];
            }
        }
    } else {
        for (int i = tid; i < d; i += Threads) qs[i] = __half2float(qrow[i]);
    }
    sync();

    // Scores: one key per thread.
    float local_max = -INFINITY;
    for (std::int64_t p = tid; p <= pos; p += Threads) {
        float s;
        if (DECODE && p == pos) {
            float a = 0.0f;
            for (int i = 0; i < d; ++i) a = fmaf(kn[i], qs[i], a);
            s = a;
        } else if constexpr (D > 0) {
            if (prefetch_key && p == tid) {
                s = attention_detail::dot_chunks<D>(kfirst, qs);
            } else if constexpr (Lean) {
                s = attention_detail::dot_row_lean<D>(key_row(p), qs);
            } else {
                const uint4* k4 = reinterpret_cast<const uint4*>(key_row(p));
                uint4 kr[kc];
#pragma unroll
                for (int c = 0; c < kc; ++c) kr[c] = k4[c];
                s = attention_detail::dot_chunks<D>(kr, qs);
            }
        } else {
            s = attention_detail::dot_row<D>(key_row(p), qs, d);
        }
        s *= scale;
        scores[p] = s;
        local_max = fmaxf(local_max, s);
    }

    // Softmax numerators and their sum (both value passes below).
    const float mx = group_max(local_max, scratch, tid, Threads / 32, sync);
    float local_sum = 0.0f;
    for (std::int64_t p = tid; p <= pos; p += Threads) {
        const float e = expf(scores[p] - mx);
        scores[p] = e;
        local_sum += e;
    }
    const float sum = group_sum(local_sum, scratch, tid, Threads / 32, sync);  // its barriers also publish scores[]

    if constexpr (D > 0) {
        const int c = vc, gi = vgi;
        float acc[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[j] = 0.0f;
        for (std::int64_t p0 = gi; p0 < key_limit; p0 += static_cast<std::int64_t>(B) * G) {
            if (p0 != gi) load_batch(p0);
#pragma unroll
            for (int u = 0; u < B; ++u) {
                const std::int64_t p = p0 + static_cast<std::int64_t>(u) * G;
                const float e = p < key_limit ? scores[p] : 0.0f;
                const __half2* hv = reinterpret_cast<const __half2*>(&vb[u]);
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const float2 f = __half22float2(hv[j]);
                    acc[2 * j] = fmaf(e, f.x, acc[2 * j]);
                    acc[2 * j + 1] = fmaf(e, f.y, acc[2 * j + 1]);
                }
            }
        }
        if (DECODE && gi == 0) {
            const float e = scores[pos];
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[j] = fmaf(e, vn[c * 8 + j], acc[j]);
        }
        // Groups of one warp first (shuffles), then one partial row per warp through shared memory.
#pragma unroll
        for (int off = kc; off < 32; off <<= 1)
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[j] += __shfl_xor_sync(0xffffffffu, acc[j], off);
        const int lane = tid & 31, warp = tid >> 5;
        // Lanes [0, kc) of a warp hold the warp's sums for chunk `lane` (kc <= 32 as D <= 256).
        static_assert(kc <= 32 && Threads % kc == 0, "a warp holds whole groups");
        if (lane < kc) {
#pragma unroll
            for (int j = 0; j < 8; ++j) partial[warp * d + c * 8 + j] = acc[j];
        }
        sync();
        for (int i = tid; i < d; i += Threads) {
            float a = 0.0f;
            for (int w = 0; w < Threads / 32; ++w) a += partial[w * d + i];
            orow[i] = __float2half_rn(a / sum);
        }
    } else {

        // Weighted sum of values: thread = (pair j, group gi); the groups split the positions, four positions per
        // iteration so four independent loads are in flight.
        const int groups = Threads / half_d > 0 ? Threads / half_d : 1;
        auto value_at = [&](std::int64_t p, int j) -> float2 {
            if (DECODE && p == pos) return make_float2(vn[2 * j], vn[2 * j + 1]);
            return __half22float2(
                reinterpret_cast<const __half2*>(v_cache + ((slot_of(p) * max_len + p) * kv_heads + g) * d)[j]);
        };
        for (int t = tid; t < groups * half_d; t += Threads) {
            const int j = t % half_d, gi = t / half_d;
            float ax = 0.0f, ay = 0.0f;
            std::int64_t p = gi;
            for (; p + 3 * groups <= pos; p += 4 * groups) {
                const float2 v0 = value_at(p, j), v1 = value_at(p + groups, j), v2 = value_at(p + 2 * groups, j),
                             v3 = value_at(p + 3 * groups, j);
                const float e0 = scores[p], e1 = scores[p + groups], e2 = scores[p + 2 * groups],
                            e3 = scores[p + 3 * groups];
                ax = fmaf(e0, v0.x, ax);
                ay = fmaf(e0, v0.y, ay);
                ax = fmaf(e1, v1.x, ax);
                ay = fmaf(e1, v1.y, ay);
                ax = fmaf(e2, v2.x, ax);
                ay = fmaf(e2, v2.y, ay);
                ax = fmaf(e3, v3.x, ax);
                ay = fmaf(e3, v3.y, ay);
            }
            for (; p <= pos; p += groups) {
                const float2 v = value_at(p, j);
                ax = fmaf(scores[p], v.x, ax);
                ay = fmaf(scores[p], v.y, ay);
            }
            partial[gi * d + 2 * j] = ax;
            partial[gi * d + 2 * j + 1] = ay;
        }
        sync();
        for (int i = tid; i < d; i += Threads) {
            float a = 0.0f;
            for (int gi = 0; gi < groups; ++gi) a += partial[gi * d + i];
            orow[i] = __float2half_rn(a / sum);
        }
    }
}
#endif  // __CUDACC__

}  // namespace qbench
