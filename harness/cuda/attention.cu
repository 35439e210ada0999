#include "cuda/attention.cuh"
#include "cuda/reduce.cuh"
#include "cuda/rope.cuh"

#include "qbench/common/errors.hpp"

#include <algorithm>

namespace qbench {

namespace {

constexpr int k_threads = 256;
constexpr std::size_t k_smem_limit = 48 * 1024;

int value_groups(int head_dim) {
    const int pairs = head_dim / 2;
    return k_threads / pairs > 0 ? k_threads / pairs : 1;
}

// Warps of a block: the vectorized value pass leaves one partial output row per warp.
constexpr int k_warps = k_threads / 32;

// Floats of dynamic shared memory: q, new k, new v (d each), scores (max_len), partial outputs (per value group in
// the generic pass, per warp in the vectorized one).
std::size_t smem_floats(int head_dim, std::int64_t max_len) {
    return 3 * static_cast<std::size_t>(head_dim) + static_cast<std::size_t>(max_len) +
           static_cast<std::size_t>(std::max(value_groups(head_dim), k_warps)) * head_dim;
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
        float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int c = 0; c < D / 8; ++c) {
            const __half2* h = reinterpret_cast<const __half2*>(&kr[c]);
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const float2 f = __half22float2(h[j]);
                a[j] = fmaf(f.x, qs[c * 8 + 2 * j], a[j]);
                a[j] = fmaf(f.y, qs[c * 8 + 2 * j + 1], a[j]);
            }
        }
        return (a[0] + a[1]) + (a[2] + a[3]);
    } else {
        float a0 = 0.0f, a1 = 0.0f;
        for (int i = 0; i < d; i += 2) {
            a0 = fmaf(__half2float(krow[i]), qs[i], a0);
            a1 = fmaf(__half2float(krow[i + 1]), qs[i + 1], a1);
        }
        return a0 + a1;
    }
}

// Dot product of a key row already in registers (D / 8 chunks) with the fp32 query in shared memory.
template <int D>
__device__ __forceinline__ float dot_chunks(const uint4 (&kr)[D > 0 ? D / 8 : 1], const float* qs) {
    float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int c = 0; c < D / 8; ++c) {
        const __half2* h = reinterpret_cast<const __half2*>(&kr[c]);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const float2 f = __half22float2(h[j]);
            a[j] = fmaf(f.x, qs[c * 8 + 2 * j], a[j]);
            a[j] = fmaf(f.y, qs[c * 8 + 2 * j + 1], a[j]);
        }
    }
    return (a[0] + a[1]) + (a[2] + a[3]);
}

// One block per (head, query). DECODE: the query is beam blockIdx.y at position *pos_ptr, and the kernel applies
// RoPE and appends the new key/value itself (fused: one launch instead of three per layer). Otherwise the query is
// prefill row blockIdx.y at position pos0 + row, q is already rotated and the cache already holds every key.
// D: the head size when it is one of the compiled ones (loads fully unrolled), 0 for any other even size.
template <bool DECODE, int D>
__global__ void __launch_bounds__(k_threads)
    attention_kernel(const __half* __restrict__ q, const __half* __restrict__ k_new, const __half* __restrict__ v_new,
                     const float* __restrict__ inv_freq, const std::int32_t* pos_ptr, std::int64_t pos0,
                     const std::int32_t* slot_table, int heads, int kv_heads, int head_dim, std::int64_t max_len,
                     float scale, __half* k_cache, __half* v_cache, __half* out, bool early_trigger) {
    extern __shared__ float smem[];
    __shared__ float scratch[32];
    const int d = D > 0 ? D : head_dim;
    const int half_d = d / 2;
    float* qs = smem;
    float* kn = smem + d;
    float* vn = smem + 2 * d;
    float* scores = smem + 3 * d;
    float* partial = scores + max_len;
    const int h = blockIdx.x;
    const std::int64_t row = blockIdx.y;
    const int group = heads / kv_heads;
    const int g = h / group;
    const std::int64_t kw = static_cast<std::int64_t>(kv_heads) * d;
    const std::int64_t qw = static_cast<std::int64_t>(heads) * d;

    // Decode: the position, the slot table and every cached key and value before the position were written by earlier
    // steps (or the prefill), never by the kernel this one follows (the q/k/v GEMV), and every kernel before that one
    // has completed once this kernel runs (the GEMV launched it after its own pdl_wait): so the first keys and values
    // are requested before pdl_wait and arrive while the GEMV drains. Only q, k_new and v_new wait for it. The
    // prefill appends its keys in the kernel just before: it waits first.
    if constexpr (!DECODE) pdl_enter(early_trigger);
    // The slot of this thread's first key is requested together with the position, not after it (one memory round
    // trip fewer before the keys arrive); entries past the position are read but not used.
    std::int64_t first_slot = 0;
    if constexpr (DECODE)
        if (threadIdx.x < max_len) first_slot = slot_table[row * max_len + threadIdx.x];
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
    constexpr bool prefetch_key = D > 0 && D <= 128;
    uint4 kfirst[kc];
    const std::int64_t key_limit = DECODE ? pos : pos + 1;  // cached keys this query reads
    if constexpr (prefetch_key) {
        if (threadIdx.x < key_limit) {
            const uint4* k4 = reinterpret_cast<const uint4*>(
                k_cache + ((first_slot * max_len + threadIdx.x) * kv_heads + g) * d);
#pragma unroll
            for (int c = 0; c < kc; ++c) kfirst[c] = k4[c];
        }
    }
    // Values (vectorized path): thread = (16-byte chunk vc of the head, group vgi); a group takes positions vgi,
    // vgi + G, ... in batches of 8 loads in flight. The first batch is requested here, with the keys, so both arrive
    // in one memory round trip; decode: the new position's value (vn) is added by group 0 at the end.
    constexpr int G = D > 0 ? k_threads / kc : 1;
    constexpr int B = 8;
    const int vc = threadIdx.x % kc, vgi = threadIdx.x / kc;
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
    if constexpr (DECODE) pdl_enter(early_trigger);
    const __half* qrow = q + row * qw + static_cast<std::int64_t>(h) * d;
    if constexpr (DECODE) {
        const __half* krow = k_new + row * kw + static_cast<std::int64_t>(g) * d;
        const __half* vrow = v_new + row * kw + static_cast<std::int64_t>(g) * d;
        for (int i = threadIdx.x; i < half_d; i += blockDim.x) {
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
        for (int i = threadIdx.x; i < d; i += blockDim.x) qs[i] = __half2float(qrow[i]);
    }
    __syncthreads();

    // Scores: one key per thread.
    float local_max = -INFINITY;
    for (std::int64_t p = threadIdx.x; p <= pos; p += blockDim.x) {
        float s;
        if (DECODE && p == pos) {
            float a = 0.0f;
            for (int i = 0; i < d; ++i) a = fmaf(kn[i], qs[i], a);
            s = a;
        } else if constexpr (D > 0) {
            if (prefetch_key && p == threadIdx.x) {
                s = dot_chunks<D>(kfirst, qs);
            } else {
                const uint4* k4 = reinterpret_cast<const uint4*>(key_row(p));
                uint4 kr[kc];
#pragma unroll
                for (int c = 0; c < kc; ++c) kr[c] = k4[c];
                s = dot_chunks<D>(kr, qs);
            }
        } else {
            s = dot_row<D>(key_row(p), qs, d);
        }
        s *= scale;
        scores[p] = s;
        local_max = fmaxf(local_max, s);
    }

    if constexpr (D > 0) {
        const int c = vc, gi = vgi;
        const float mx = block_max(local_max, scratch);
        float local_sum = 0.0f;
        for (std::int64_t p = threadIdx.x; p <= pos; p += blockDim.x) {
            const float e = expf(scores[p] - mx);
            scores[p] = e;
            local_sum += e;
        }
        const float sum = block_sum(local_sum, scratch);  // its barriers also publish scores[]
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
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        // Lanes [0, kc) of a warp hold the warp's sums for chunk `lane` (kc <= 32 as D <= 256).
        static_assert(kc <= 32 && k_threads % kc == 0, "a warp holds whole groups");
        if (lane < kc) {
#pragma unroll
            for (int j = 0; j < 8; ++j) partial[warp * d + c * 8 + j] = acc[j];
        }
        __syncthreads();
        __half* orow = out + row * qw + static_cast<std::int64_t>(h) * d;
        for (int i = threadIdx.x; i < d; i += blockDim.x) {
            float a = 0.0f;
            for (int w = 0; w < k_warps; ++w) a += partial[w * d + i];
            orow[i] = __float2half_rn(a / sum);
        }
    } else {
        const float mx = block_max(local_max, scratch);
        float local_sum = 0.0f;
        for (std::int64_t p = threadIdx.x; p <= pos; p += blockDim.x) {
            const float e = expf(scores[p] - mx);
            scores[p] = e;
            local_sum += e;
        }
        const float sum = block_sum(local_sum, scratch);  // its barriers also publish scores[]

        // Weighted sum of values: thread = (pair j, group gi); the groups split the positions, four positions per
        // iteration so four independent loads are in flight.
        const int groups = blockDim.x / half_d > 0 ? blockDim.x / half_d : 1;
        auto value_at = [&](std::int64_t p, int j) -> float2 {
            if (DECODE && p == pos) return make_float2(vn[2 * j], vn[2 * j + 1]);
            return __half22float2(
                reinterpret_cast<const __half2*>(v_cache + ((slot_of(p) * max_len + p) * kv_heads + g) * d)[j]);
        };
        for (int t = threadIdx.x; t < groups * half_d; t += blockDim.x) {
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
        __syncthreads();
        __half* orow = out + row * qw + static_cast<std::int64_t>(h) * d;
        for (int i = threadIdx.x; i < d; i += blockDim.x) {
            float a = 0.0f;
            for (int gi = 0; gi < groups; ++gi) a += partial[gi * d + i];
            orow[i] = __float2half_rn(a / sum);
        }
    }
}

template <bool DECODE>
using attention_fn = void (*)(const __half*, const __half*, const __half*, const float*, const std::int32_t*,
                              std::int64_t, const std::int32_t*, int, int, int, std::int64_t, float, __half*, __half*,
                              __half*, bool);

// The instance for a head size: fully unrolled for the common sizes, generic otherwise.
template <bool DECODE>
attention_fn<DECODE> pick(int head_dim) {
    switch (head_dim) {
    case 32: return attention_kernel<DECODE, 32>;
    case 64: return attention_kernel<DECODE, 64>;
    case 128: return attention_kernel<DECODE, 128>;
    case 256: return attention_kernel<DECODE, 256>;
    default: return attention_kernel<DECODE, 0>;
    }
}

void check_shape(const attention_shape& s) {
    if (s.head_dim <= 0 || s.head_dim % 2 != 0 || s.head_dim > 256 || s.kv_heads <= 0 || s.heads % s.kv_heads != 0)
        throw unsupported_error("attention: head_dim " + std::to_string(s.head_dim) + " with " +
                                std::to_string(s.heads) + "/" + std::to_string(s.kv_heads) +
                                " heads is not supported (head_dim must be even and <= 256)");
    if (s.max_len > attention_max_len(s.head_dim))
        throw unsupported_error("attention: context of " + std::to_string(s.max_len) + " positions exceeds the " +
                                std::to_string(attention_max_len(s.head_dim)) + " this kernel supports");
}

}  // namespace

std::int64_t attention_max_len(int head_dim) {
    const std::size_t fixed = smem_floats(head_dim, 0);
    return static_cast<std::int64_t>(k_smem_limit / sizeof(float) - fixed);
}

void launch_attention_prefill(const __half* q, const __half* k_cache, const __half* v_cache, std::int64_t rows,
                              std::int64_t pos0, const attention_shape& shape, __half* out, const launch_options& o) {
    if (rows <= 0) return;
    check_shape(shape);
    const std::size_t smem = smem_floats(shape.head_dim, shape.max_len) * sizeof(float);
    launch_kernel(pick<false>(shape.head_dim), dim3(shape.heads, static_cast<unsigned>(rows)), dim3(k_threads), smem, o,
                  q, static_cast<const __half*>(nullptr), static_cast<const __half*>(nullptr),
                  static_cast<const float*>(nullptr), static_cast<const std::int32_t*>(nullptr), pos0,
                  static_cast<const std::int32_t*>(nullptr), shape.heads, shape.kv_heads, shape.head_dim,
                  shape.max_len, shape.scale, const_cast<__half*>(k_cache), const_cast<__half*>(v_cache), out,
                  o.early_trigger);
}

void launch_attention_decode(const __half* q, const __half* k_new, const __half* v_new, const float* inv_freq,
                             const std::int32_t* pos, const std::int32_t* slot_table, std::int64_t beams,
                             const attention_shape& shape, __half* k_cache, __half* v_cache, __half* out,
                             const launch_options& o) {
    if (beams <= 0) return;
    check_shape(shape);
    const std::size_t smem = smem_floats(shape.head_dim, shape.max_len) * sizeof(float);
    launch_kernel(pick<true>(shape.head_dim), dim3(shape.heads, static_cast<unsigned>(beams)), dim3(k_threads), smem, o,
                  q, k_new, v_new, inv_freq, pos, std::int64_t{0}, slot_table, shape.heads, shape.kv_heads,
                  shape.head_dim, shape.max_len, shape.scale, k_cache, v_cache, out, o.early_trigger);
}

}  // namespace qbench
