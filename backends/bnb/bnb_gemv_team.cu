// Batch-1 GEMV kernels built for bandwidth ("team" kernels, v3): 4-bit NF4/FP4 (plain or double-quantized absmax)
// and LLM.int8() with the activation quantization folded into the same kernel.
//
// Work split. A team is as many threads as a row has 32-column slices (K / 32, rounded up to whole warps); thread t
// of a team always owns columns [32t, 32t + 32) (4-bit: the 16-byte chunk t of every row; int8: the 16-byte chunks t
// and t + K/32), so its activations stay in registers for the whole kernel and are read once. A team walks rows
// g, g + G, g + 2G, ... (G teams in the grid, so all teams together sweep contiguous rows); per row a thread
// makes one 16-byte coalesced load (two for int8) and the team sums its partials: warp shuffles, then shared memory
// across the team's warps. Loads run U rows ahead in a ring of registers (U * 16 bytes per thread in flight), and
// the first U rows are requested before the programmatic-dependent-launch wait, so the weight stream of a kernel
// starts while its predecessor drains.
//
// 4-bit decode: as v2 (bnb_gemv_4bit.cu), a byte -> half2 (code[hi], code[lo]) table in shared memory with one copy
// per lane (256 entries, 256-byte stride, the lane copies in the first 128 bytes: one PRMT makes the address), half2
// products over 8 weights, fp32 beyond. The spare upper halves of the entries hold the nested code book (double
// quantization) and the partial sums, so the kernel needs exactly 64 KiB of shared memory (the sm_75 limit).
//
// int8: each thread quantizes its 32 activations itself after a team-wide absmax (the row statistic of
// LLM.int8(): over |x| < threshold), keeps them as 8 packed int8 words and uses dp4a; outlier columns (|x| >=
// threshold) are zero in the int8 operand and summed in fp32 against the int8 weight, scaled by SCB / 127 at the end
// (the fp16-dequantized weight column of bitsandbytes' decomposition). No activation buffers, no second kernel.
//
// Launch shapes (team_config): rows in flight per thread, CTA size, CTAs per SM, an 80-register cap (so a CTA of the
// next kernel fits beside two of this one) and an L2 bulk prefetch of later batches. On the H200 the plain shape
// (8 rows, 256-thread CTAs, two per SM, 128 registers, no prefetch) measured fastest; the others stay for benchmarks.
#include "backends/bnb/bnb_device_common.cuh"
#include "cuda/reduce.cuh"

#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

namespace qbench::bnb {

namespace {

constexpr int k_team_max_threads = 512;
constexpr int k_team_max_warps = k_team_max_threads / 32;
constexpr std::size_t k_team_lut_bytes = 256 * 256;  // 64 KiB

__device__ __forceinline__ __half2 bits_half2(std::uint32_t u) {
    __half2 h;
    memcpy(&h, &u, sizeof(u));
    return h;
}

// A hint: bring [p, p + bytes) into L2 through the bulk copy engine (sm_90; p and bytes multiples of 16). One
// instruction per row keeps the memory queues full without registers or shared memory; elsewhere a no-op.
__device__ __forceinline__ void prefetch_l2(const void* p, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
    (void)p;
    (void)bytes;
#endif
}

// Byte offset of spare word i (i < 8192) in the upper, unused half of the 256-byte table entries: word i sits in
// bank i % 32, as in a flat array.
__device__ __forceinline__ std::uint32_t spare_offset(std::uint32_t i) {
    return ((i >> 5) << 8) | 128u | ((i & 31u) << 2);
}
__device__ __forceinline__ float& spare_float(unsigned char* smem, std::uint32_t i) {
    return *reinterpret_cast<float*>(smem + spare_offset(i));
}

// Nested code book words 0..255, partial sums from word 256 on.
constexpr std::uint32_t k_spare_nested = 0;
constexpr std::uint32_t k_spare_partial = 256;

template <int J>
__device__ __forceinline__ std::uint32_t table_address(std::uint32_t word, std::uint32_t lane4) {
    return __byte_perm(word, lane4, 0x5504u | (J << 4));
}
__device__ __forceinline__ __half2 table_load(const unsigned char* lut, std::uint32_t address) {
    return bits_half2(*reinterpret_cast<const std::uint32_t*>(lut + address));
}

// sum over a 16-byte chunk of code(w) * x: two half2 chains of 16 weights (8 products per half), fp32 across.
__device__ __forceinline__ float chunk_dot(const unsigned char* lut, std::uint32_t lane4, const uint4& wv,
                                           const __half2* xs) {
    const std::uint32_t words[4] = {wv.x, wv.y, wv.z, wv.w};
    float s = 0.0f;
#pragma unroll
    for (int p = 0; p < 2; ++p) {
        const std::uint32_t w0 = words[2 * p], w1 = words[2 * p + 1];
        const __half2* xp = xs + 8 * p;
        __half2 h = __hmul2(table_load(lut, table_address<0>(w0, lane4)), xp[0]);
        h = __hfma2(table_load(lut, table_address<1>(w0, lane4)), xp[1], h);
        h = __hfma2(table_load(lut, table_address<2>(w0, lane4)), xp[2], h);
        h = __hfma2(table_load(lut, table_address<3>(w0, lane4)), xp[3], h);
        h = __hfma2(table_load(lut, table_address<0>(w1, lane4)), xp[4], h);
        h = __hfma2(table_load(lut, table_address<1>(w1, lane4)), xp[5], h);
        h = __hfma2(table_load(lut, table_address<2>(w1, lane4)), xp[6], h);
        h = __hfma2(table_load(lut, table_address<3>(w1, lane4)), xp[7], h);
        const float2 f = __half22float2(h);
        s += f.x + f.y;
    }
    return s;
}

// Warp sums of U values (one per row) at once: log2(U) exchange stages halve the values a lane holds (the upper
// lanes of each stage keep the upper half), then plain butterflies finish. Afterwards every lane holds the warp's sum
// of slot transpose_slot<U>(lane); lanes with lane % (32 / U) == 0 hold distinct slots. ~U + 5 - log2(U) shuffles for U rows
// instead of 5 * U.
template <int U>
__device__ __forceinline__ float transpose_sum(float (&v)[U], int lane) {
    static_assert(U >= 1 && U <= 32 && (U & (U - 1)) == 0, "U must be a power of two <= 32");
#pragma unroll
    for (int half = U / 2, off = 16; half >= 1; half /= 2, off /= 2) {
        const bool upper = (lane & off) != 0;
#pragma unroll
        for (int i = 0; i < half; ++i) {
            const float keep = upper ? v[i + half] : v[i];
            const float send = upper ? v[i] : v[i + half];
            v[i] = keep + __shfl_xor_sync(0xffffffffu, send, off);
        }
    }
#pragma unroll
    for (int off = 16 / U; off > 0; off /= 2) v[0] += __shfl_xor_sync(0xffffffffu, v[0], off);
    return v[0];
}

// The row slot whose sum transpose_sum<U> leaves in `lane`.
template <int U>
__device__ __forceinline__ int transpose_slot(int lane) {
    int slot = 0;
#pragma unroll
    for (int half = U / 2, off = 16; half >= 1; half /= 2, off /= 2)
        if (lane & off) slot += half;
    return slot;
}

template <int U, bool Nested>
struct ring_4bit {
    uint4 w[U];
    float a[U];           // plain absmax, or the nested absmax2 of the block
    std::uint32_t c[U];   // nested: the block's absmax code
};

/// Kernel arguments besides the tensors (all sizes fit 32 bits: a team kernel is only launched when they do).
struct team_args {
    int team_threads = 0;  ///< threads per team (the row's 32-column slices rounded up to whole warps)
    int batches = 0;       ///< row batches of U per team, the same for every team (barriers are CTA-wide)
    int nested_log2 = 8;   ///< log2 of the nested block size (double quantization)
    int prefetch = 0;      ///< L2 prefetch distance in batches (0: none)
};

// Capped kernels fit three 256-thread CTAs per SM (80 registers): two of one kernel and one of the next, which
// (with PDL) requests its first rows while its predecessor drains.
#define QB_TEAM_BOUNDS(Capped) __launch_bounds__((Capped) ? 384 : k_team_max_threads, (Capped) ? 2 : 1)

template <int U, bool Nested, bool Capped>
__global__ void QB_TEAM_BOUNDS(Capped)
    gemv_4bit_team_kernel(device_4bit_view w, const __half* __restrict__ x, __half* __restrict__ y, team_args p) {
    extern __shared__ __align__(16) unsigned char smem[];
    const unsigned tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5, warps = blockDim.x >> 5;
    const unsigned team_threads = static_cast<unsigned>(p.team_threads);
    const unsigned team = tid / team_threads, t = tid - team * team_threads;
    const unsigned team_warps = team_threads >> 5;
    const unsigned teams_per_cta = blockDim.x / team_threads;
    const unsigned G = gridDim.x * teams_per_cta;
    const unsigned g = blockIdx.x * teams_per_cta + team;
    const auto rows = static_cast<unsigned>(w.rows), cols = static_cast<unsigned>(w.cols);
    const unsigned row_bytes = cols / 2, slices = cols / 32;
    // Threads past the last slice (a partial last warp) read the last slice again with zero activations.
    const unsigned tc = t < slices ? t : slices - 1;
    const unsigned char* wbase = w.packed + tc * 16u;
    const unsigned col0 = tc * 32u;
    const unsigned log2bs = static_cast<unsigned>(w.blocksize_log2);
    const std::uint32_t lane4 = lane * 4u;

    ring_4bit<U, Nested> ring;
    auto load = [&](int u, unsigned row) {
        uint4 v = make_uint4(0, 0, 0, 0);
        float a = 0.0f;
        std::uint32_t c = 0;
        if (row < rows) {
            v = detail::load_nc16(wbase + static_cast<std::uint64_t>(row) * row_bytes);
            const auto block =
                static_cast<std::uint32_t>((static_cast<std::uint64_t>(row) * cols + col0) >> log2bs);
            if constexpr (Nested) {
                c = __ldg(w.absmax_codes + block);
                a = __ldg(w.nested_absmax + (block >> p.nested_log2));
            } else {
                a = __ldg(w.absmax + block);
            }
        }
        ring.w[u] = v;
        ring.a[u] = a;
        if constexpr (Nested) ring.c[u] = c;
    };

    // Rows of later batches into L2: thread t < U of a team takes slot t's row (weights, then its scales when a row
    // holds whole blocks and they are 16-byte aligned).
    const unsigned scale_row = (cols % (1u << log2bs) == 0) ? (cols >> log2bs) : 0u;
    const unsigned scale_row_bytes = Nested ? scale_row : scale_row * 4u;
    auto prefetch = [&](int b) {
        const unsigned row = static_cast<unsigned>(b) * U * G + g + t * G;
        if (t >= U || row >= rows) return;
        prefetch_l2(w.packed + static_cast<std::uint64_t>(row) * row_bytes, row_bytes);
        if (scale_row_bytes % 16 == 0 && scale_row_bytes > 0) {
            const unsigned char* sp = Nested ? w.absmax_codes : reinterpret_cast<const unsigned char*>(w.absmax);
            prefetch_l2(sp + static_cast<std::uint64_t>(row) * scale_row_bytes, scale_row_bytes);
        }
    };

    // The first rows go out before anything else: weights never change, so they may be read before the wait.
#pragma unroll
    for (int u = 0; u < U; ++u) load(u, g + static_cast<unsigned>(u) * G);
    for (int pb = 1; pb <= p.prefetch && pb < p.batches; ++pb) prefetch(pb);

    // The byte table: staging word of entry e at e * 256 + 128, then 32 lane copies in the entry's first 128 bytes.
    auto* words = reinterpret_cast<std::uint32_t*>(smem);
    for (unsigned byte = tid; byte < 256; byte += blockDim.x) {
        const __half2 h = __halves2half2(__float2half_rn(w.code[byte >> 4]), __float2half_rn(w.code[byte & 15]));
        memcpy(&words[byte * 64 + 32], &h, sizeof(h));
    }
    __syncthreads();
    for (unsigned i = tid; i < 256 * 8; i += blockDim.x) {
        const unsigned e = i >> 3;
        const std::uint32_t u = words[e * 64 + 32];
        reinterpret_cast<uint4*>(smem)[e * 16 + (i & 7)] = make_uint4(u, u, u, u);
    }
    __syncthreads();  // staging words are read; the spare halves are free from here on
    if constexpr (Nested)
        for (unsigned i = tid; i < 256; i += blockDim.x) spare_float(smem, k_spare_nested + i) = __ldg(w.nested_code + i);

    pdl_wait();  // x is written by the previous kernel
    __half2 xs[16];
    {
        const uint4* src = reinterpret_cast<const uint4*>(x + col0);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            uint4 v = __ldg(src + j);
            if (t >= slices) v = make_uint4(0, 0, 0, 0);
            xs[4 * j + 0] = bits_half2(v.x);
            xs[4 * j + 1] = bits_half2(v.y);
            xs[4 * j + 2] = bits_half2(v.z);
            xs[4 * j + 3] = bits_half2(v.w);
        }
    }
    pdl_trigger();
    if constexpr (Nested) __syncthreads();  // the nested code book is complete
    const float offset = w.nested_offset;
    const unsigned writer_mask = 32u / U - 1u;
    const unsigned my_slot = static_cast<unsigned>(transpose_slot<U>(static_cast<int>(lane)));

    for (int b = 0; b < p.batches; ++b) {
        const std::uint32_t part = k_spare_partial + static_cast<std::uint32_t>((b & 1) * U) * warps;
        const bool more = b + 1 < p.batches;
        const unsigned next = static_cast<unsigned>(b + 1) * U * G + g;
        if (p.prefetch > 0 && b + 1 + p.prefetch < p.batches) prefetch(b + 1 + p.prefetch);
        float sums[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            float scale;
            if constexpr (Nested)
                scale = __fadd_rn(__fmul_rn(spare_float(smem, k_spare_nested + ring.c[u]), ring.a[u]), offset);
            else
                scale = ring.a[u];
            sums[u] = chunk_dot(smem, lane4, ring.w[u], xs) * scale;
            if (more) load(u, next + static_cast<unsigned>(u) * G);
        }
        const float s = transpose_sum<U>(sums, static_cast<int>(lane));
        if ((lane & writer_mask) == 0) spare_float(smem, part + my_slot * warps + warp) = s;
        __syncthreads();
        if (t < U) {
            const unsigned row = static_cast<unsigned>(b) * U * G + g + t * G;
            if (row < rows) {
                float sum = 0.0f;
                for (unsigned i = 0; i < team_warps; ++i) sum += spare_float(smem, part + t * warps + team * team_warps + i);
                y[row] = __float2half_rn(sum);
            }
        }
        // The partial buffer alternates between batches: the next batch writes the other half, and the one after it
        // comes behind the next barrier, which every reader of this batch has passed.
    }
}

// ---- int8 --------------------------------------------------------------------------------------------------------

template <int U>
struct ring_int8 {
    uint4 a[U], b[U];
};

// An outlier column of a thread: j (0..31) indexes the 32 weights the thread holds for a row (j < 16: chunk c0,
// else chunk c1), x is the column's fp16 activation (0 in an unused slot, so its product vanishes).
struct outlier_pick {
    int j = 0;
    float x = 0.0f;
};

__host__ __device__ __forceinline__ std::uint32_t select_word(uint4 v, int j) {
    const std::uint32_t lo = (j & 4) ? v.y : v.x;
    const std::uint32_t hi = (j & 4) ? v.w : v.z;
    return (j & 8) ? hi : lo;
}

__device__ __forceinline__ outlier_pick make_pick(int j, const __half* x, std::int64_t c0, std::int64_t c1) {
    outlier_pick o;
    if (j < 0) return o;
    o.j = j;
    o.x = __half2float(x[j < 16 ? c0 + j : c1 + (j - 16)]);
    return o;
}

// The int8 weight of column j in a row held as chunks a (columns c0..) and b (columns c1..), as a float.
__host__ __device__ __forceinline__ float picked_weight(const uint4& a, const uint4& b, int j) {
    const std::uint32_t wa = select_word(a, j & 15), wb = select_word(b, j & 15);
    const std::uint32_t word = j < 16 ? wa : wb;
    return static_cast<float>(static_cast<int>(static_cast<std::int8_t>((word >> (8 * (j & 3))) & 0xffu)));
}

template <int U, bool Capped>
__global__ void QB_TEAM_BOUNDS(Capped)
    gemv_int8_team_kernel(const std::int8_t* __restrict__ cb, const float* __restrict__ scb, std::int64_t n64,
                          std::int64_t k64, const __half* __restrict__ x, float threshold, __half* __restrict__ y,
                          team_args p) {
    __shared__ float part[2][U][k_team_max_warps];
    __shared__ float amax_s[k_team_max_warps];
    const unsigned tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5;
    const unsigned team_threads = static_cast<unsigned>(p.team_threads);
    const unsigned team = tid / team_threads, t = tid - team * team_threads;
    const unsigned team_warps = team_threads >> 5;
    const unsigned teams_per_cta = blockDim.x / team_threads;
    const unsigned G = gridDim.x * teams_per_cta;
    const unsigned g = blockIdx.x * teams_per_cta + team;
    const auto n = static_cast<unsigned>(n64), k = static_cast<unsigned>(k64);
    const unsigned half_chunks = k / 32;
    const bool active = t < half_chunks;
    const unsigned tc = active ? t : half_chunks - 1;
    const unsigned c0 = tc * 16u, c1 = (tc + half_chunks) * 16u;
    const std::int8_t* base0 = cb + c0;
    const std::int8_t* base1 = cb + c1;

    ring_int8<U> ring;
    auto load = [&](int u, unsigned row) {
        uint4 va = make_uint4(0, 0, 0, 0), vb = make_uint4(0, 0, 0, 0);
        if (row < n) {
            va = detail::load_nc16(base0 + static_cast<std::uint64_t>(row) * k);
            vb = detail::load_nc16(base1 + static_cast<std::uint64_t>(row) * k);
        }
        ring.a[u] = va;
        ring.b[u] = vb;
    };
    auto prefetch = [&](int b) {
        const unsigned row = static_cast<unsigned>(b) * U * G + g + t * G;
        if (t < U && row < n) prefetch_l2(cb + static_cast<std::uint64_t>(row) * k, k);
    };
#pragma unroll
    for (int u = 0; u < U; ++u) load(u, g + static_cast<unsigned>(u) * G);
    for (int pb = 1; pb <= p.prefetch && pb < p.batches; ++pb) prefetch(pb);
    // Reader t < U of each team finishes slot t's row: its SCB comes one batch ahead.
    float sc = 0.0f;
    if (t < U && g + t * G < n) sc = __ldg(scb + g + t * G);

    pdl_wait();
    // The 32 activations of this thread, their outlier bits and the team's row statistic.
    uint4 xv[4] = {make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0)};
    if (active) {
        xv[0] = __ldg(reinterpret_cast<const uint4*>(x + c0));
        xv[1] = __ldg(reinterpret_cast<const uint4*>(x + c0 + 8));
        xv[2] = __ldg(reinterpret_cast<const uint4*>(x + c1));
        xv[3] = __ldg(reinterpret_cast<const uint4*>(x + c1 + 8));
    }
    pdl_trigger();
    const bool decompose = threshold > 0.0f;
    std::uint32_t obits = 0;
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const std::uint32_t ws[4] = {xv[i].x, xv[i].y, xv[i].z, xv[i].w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const float2 f = __half22float2(bits_half2(ws[j]));
            const float a0 = fabsf(f.x), a1 = fabsf(f.y);
            const bool o0 = decompose && a0 >= threshold, o1 = decompose && a1 >= threshold;
            obits |= (o0 ? 1u : 0u) << (8 * i + 2 * j);
            obits |= (o1 ? 1u : 0u) << (8 * i + 2 * j + 1);
            if (!o0) amax = fmaxf(amax, a0);
            if (!o1) amax = fmaxf(amax, a1);
        }
    }
    amax = warp_max(amax);
    if (lane == 0) amax_s[warp] = amax;
    __syncthreads();
    amax = 0.0f;
    for (unsigned i = 0; i < team_warps; ++i) amax = fmaxf(amax, amax_s[team * team_warps + i]);
    const float scale = amax > 0.0f ? __fdiv_rn(127.0f, amax) : 0.0f;
    std::uint32_t q[8];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const std::uint32_t ws[4] = {xv[i].x, xv[i].y, xv[i].z, xv[i].w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const float2 f = __half22float2(bits_half2(ws[j]));
            const int q0 = (obits >> (8 * i + 2 * j)) & 1u ? 0 : __float2int_rn(__fmul_rn(f.x, scale));
            const int q1 = (obits >> (8 * i + 2 * j + 1)) & 1u ? 0 : __float2int_rn(__fmul_rn(f.y, scale));
            const std::uint32_t pair = (static_cast<std::uint32_t>(q0) & 0xffu) | ((static_cast<std::uint32_t>(q1) & 0xffu) << 8);
            if (j % 2 == 0)
                q[2 * i + j / 2] = pair;
            else
                q[2 * i + j / 2] |= pair << 16;
        }
    }
    // Outlier columns: up to two per thread are picked once (the common case: a few columns in thousands); a warp
    // with a thread holding more walks the bits per row.
    const int count = __popc(obits);
    const bool warp_many = __any_sync(0xffffffffu, count > 2);
    const bool warp_one = __any_sync(0xffffffffu, count >= 1);
    const bool warp_two = __any_sync(0xffffffffu, count >= 2);
    const outlier_pick o0 = make_pick(count >= 1 ? __ffs(obits) - 1 : -1, x, c0, c1);
    const outlier_pick o1 = make_pick(count >= 2 ? __ffs(obits & (obits - 1)) - 1 : -1, x, c0, c1);
    // A thread's int32 dot product is below 2^24 in magnitude (32 * 127 * 127), so it converts to fp32 exactly;
    // it is scaled by row_stat / 127^2 and joined with the outlier sum (scaled by 1 / 127) before one reduction.
    // SCB multiplies the row's total.
    const float int_scale = amax * k_int8_dequant;
    const float out_scale = 1.0f / 127.0f;
    const unsigned writer_mask = 32u / U - 1u;
    const unsigned my_slot = static_cast<unsigned>(transpose_slot<U>(static_cast<int>(lane)));

    for (int b = 0; b < p.batches; ++b) {
        const int buf = b & 1;
        const bool more = b + 1 < p.batches;
        const unsigned next = static_cast<unsigned>(b + 1) * U * G + g;
        if (p.prefetch > 0 && b + 1 + p.prefetch < p.batches) prefetch(b + 1 + p.prefetch);
        float sums[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            int ia = __dp4a(static_cast<int>(ring.a[u].x), static_cast<int>(q[0]), 0);
            ia = __dp4a(static_cast<int>(ring.a[u].y), static_cast<int>(q[1]), ia);
            ia = __dp4a(static_cast<int>(ring.a[u].z), static_cast<int>(q[2]), ia);
            ia = __dp4a(static_cast<int>(ring.a[u].w), static_cast<int>(q[3]), ia);
            ia = __dp4a(static_cast<int>(ring.b[u].x), static_cast<int>(q[4]), ia);
            ia = __dp4a(static_cast<int>(ring.b[u].y), static_cast<int>(q[5]), ia);
            ia = __dp4a(static_cast<int>(ring.b[u].z), static_cast<int>(q[6]), ia);
            ia = __dp4a(static_cast<int>(ring.b[u].w), static_cast<int>(q[7]), ia);
            float fa = 0.0f;
            if (warp_many) {
                for (std::uint32_t bits = obits; bits; bits &= bits - 1) {
                    const int j = __ffs(bits) - 1;
                    fa = fmaf(make_pick(j, x, c0, c1).x, picked_weight(ring.a[u], ring.b[u], j), fa);
                }
            } else {
                if (warp_one) fa = fmaf(o0.x, picked_weight(ring.a[u], ring.b[u], o0.j), fa);
                if (warp_two) fa = fmaf(o1.x, picked_weight(ring.a[u], ring.b[u], o1.j), fa);
            }
            if (more) load(u, next + static_cast<unsigned>(u) * G);
            sums[u] = fmaf(static_cast<float>(ia), int_scale, fa * out_scale);
        }
        const float v = transpose_sum<U>(sums, static_cast<int>(lane));
        if ((lane & writer_mask) == 0) part[buf][my_slot][warp] = v;
        __syncthreads();
        if (t < U) {
            const unsigned row = static_cast<unsigned>(b) * U * G + g + t * G;
            if (row < n) {
                float s = 0.0f;
                for (unsigned i = 0; i < team_warps; ++i) s += part[buf][t][team * team_warps + i];
                y[row] = __float2half_rn(s * sc);
            }
            if (more) {
                const unsigned nrow = next + t * G;
                sc = nrow < n ? __ldg(scb + nrow) : 0.0f;
            }
        }
    }
}

// ---- launch geometry -------------------------------------------------------------------------------------------

struct team_config {
    int rows_in_flight;  // U (template)
    int cta_target;      // threads per CTA wanted (teams are packed up to it)
    int ctas_per_sm;     // grid = SMs * this (capped by occupancy)
    bool capped;         // 80-register kernel (CTAs up to 384 threads), else 128 registers (up to 512)
    int prefetch;        // L2 prefetch distance in batches
    const char* name;
};

// 0 is the default: the fastest of these over the 7B linear stack on the H200 (PERF_NOTES.md, v3 run 2; capping
// registers for co-residency and the L2 prefetch both measured slower).
constexpr team_config k_configs[] = {
    {8, 256, 2, false, 0, "team-u8-c256x2"},
    {8, 256, 2, true, 0, "team-u8-c256x2-r80"},
    {8, 256, 3, true, 0, "team-u8-c256x3-r80"},
    {8, 256, 2, true, 2, "team-u8-c256x2-r80-p2"},
    {8, 256, 3, true, 2, "team-u8-c256x3-r80-p2"},
    {8, 128, 4, true, 2, "team-u8-c128x4-r80-p2"},
};
constexpr int k_config_count = sizeof(k_configs) / sizeof(k_configs[0]);

// int8 configs: 32 bytes per row and thread, so half the rows in flight for the same registers.
constexpr team_config k_int8_configs[] = {
    {8, 256, 2, false, 0, "team-u8-c256x2"},
    {8, 256, 2, false, 2, "team-u8-c256x2-p2"},
    {4, 256, 3, true, 2, "team-u4-c256x3-r80-p2"},
    {4, 256, 3, true, 0, "team-u4-c256x3-r80"},
    {8, 256, 1, false, 2, "team-u8-c256x1-p2"},
    {4, 128, 4, true, 2, "team-u4-c128x4-r80-p2"},
};
static_assert(sizeof(k_int8_configs) == sizeof(k_configs));

int sm_count() {
    static const int sms = [] {
        int device = 0, n = 0;
        QB_CUDA_CHECK(cudaGetDevice(&device));
        QB_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
        return std::max(1, n);
    }();
    return sms;
}

// Resident CTAs per SM of `kernel` at `threads` threads (cached: the query is not free and launches are many).
template <class Kernel>
int occupancy(Kernel kernel, int threads, std::size_t smem) {
    static std::mutex mutex;
    static std::map<std::pair<const void*, int>, int> cache;
    const std::lock_guard<std::mutex> lock(mutex);
    const auto key = std::make_pair(reinterpret_cast<const void*>(kernel), threads);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
    if (smem > 48 * 1024)
        QB_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    int per_sm = 0;
    QB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
    per_sm = std::max(1, per_sm);
    cache.emplace(key, per_sm);
    return per_sm;
}

struct team_geometry {
    int team_threads = 0, teams_per_cta = 0, cta_threads = 0;
};

// slices: the 32-column slices of a row (K / 32).
team_geometry shape_of(std::int64_t slices, int cta_target, int max_threads) {
    team_geometry gm;
    gm.team_threads = static_cast<int>((slices + 31) / 32 * 32);
    gm.teams_per_cta = std::max(1, cta_target / gm.team_threads);
    while (gm.teams_per_cta > 1 && gm.teams_per_cta * gm.team_threads > max_threads) --gm.teams_per_cta;
    gm.cta_threads = gm.teams_per_cta * gm.team_threads;
    return gm;
}

// Grid and batches for `rows` rows.
void finish(std::int64_t rows, const team_config& c, int resident_per_sm, const team_geometry& gm, int& grid,
            team_args& a) {
    const std::int64_t ctas_needed = (rows + gm.teams_per_cta - 1) / gm.teams_per_cta;
    const std::int64_t ctas = static_cast<std::int64_t>(sm_count()) * std::min(c.ctas_per_sm, resident_per_sm);
    grid = static_cast<int>(std::max<std::int64_t>(1, std::min(ctas, ctas_needed)));
    const std::int64_t teams = static_cast<std::int64_t>(grid) * gm.teams_per_cta;
    const std::int64_t rows_per_team = (rows + teams - 1) / teams;
    a.team_threads = gm.team_threads;
    a.prefetch = c.prefetch;
    a.batches = static_cast<int>((rows_per_team + c.rows_in_flight - 1) / c.rows_in_flight);
}

using kernel_4bit_t = void (*)(device_4bit_view, const __half*, __half*, team_args);

template <int U, bool Capped>
void launch_4bit_config(const device_4bit_view& w, const __half* x, __half* y, const launch_options& o,
                        const team_config& c, const team_geometry& gm) {
    const kernel_4bit_t kernel =
        w.nested() ? gemv_4bit_team_kernel<U, true, Capped> : gemv_4bit_team_kernel<U, false, Capped>;
    team_args a;
    a.nested_log2 = log2_exact(w.nested_blocksize);
    int grid = 0;
    finish(w.rows, c, occupancy(kernel, gm.cta_threads, k_team_lut_bytes), gm, grid, a);
    launch_kernel(kernel, dim3(static_cast<unsigned>(grid)), dim3(static_cast<unsigned>(gm.cta_threads)),
                  k_team_lut_bytes, o, w, x, y, a);
}

using kernel_int8_t = void (*)(const std::int8_t*, const float*, std::int64_t, std::int64_t, const __half*, float,
                               __half*, team_args);

template <int U, bool Capped>
void launch_int8_config(const std::int8_t* cb, const float* scb, std::int64_t n, std::int64_t k, const __half* x,
                        float threshold, __half* y, const launch_options& o, const team_config& c,
                        const team_geometry& gm) {
    const kernel_int8_t kernel = gemv_int8_team_kernel<U, Capped>;
    team_args a;
    int grid = 0;
    finish(n, c, occupancy(kernel, gm.cta_threads, 0), gm, grid, a);
    launch_kernel(kernel, dim3(static_cast<unsigned>(grid)), dim3(static_cast<unsigned>(gm.cta_threads)), 0, o, cb,
                  scb, n, k, x, threshold, y, a);
}

// Sizes the 32-bit index arithmetic of the team kernels covers (with room: rows + one batch of every team).
bool fits_32bit(std::int64_t rows, std::int64_t cols, std::int64_t bytes_per_row) {
    return rows < (std::int64_t{1} << 30) && rows * bytes_per_row < (std::int64_t{1} << 62) &&
           rows * cols / 32 < (std::int64_t{1} << 31);
}

}  // namespace

bool gemv_4bit_team_supported(const device_4bit_view& w) {
    return w.cols > 0 && w.cols % 32 == 0 && w.cols / 32 <= k_team_max_threads && fits_32bit(w.rows, w.cols, w.cols / 2) &&
           (!w.nested() || (w.nested_blocksize > 0 && (w.nested_blocksize & (w.nested_blocksize - 1)) == 0));
}

int gemv_team_configs() { return k_config_count; }

const char* gemv_team_config_name(int config) {
    return config >= 0 && config < k_config_count ? k_configs[config].name : "?";
}

const char* gemv_int8_fused_config_name(int config) {
    return config >= 0 && config < k_config_count ? k_int8_configs[config].name : "?";
}

void launch_gemv_4bit_team(const device_4bit_view& w, const __half* x, __half* y, const launch_options& o,
                           int config) {
    if (!gemv_4bit_team_supported(w))
        throw std::invalid_argument("launch_gemv_4bit_team: needs K % 32 == 0 and K <= 16384 (K " +
                                    std::to_string(w.cols) + ")");
    if (config < 0 || config >= k_config_count)
        throw std::invalid_argument("launch_gemv_4bit_team: config " + std::to_string(config) + " does not exist");
    if (w.rows <= 0) return;
    team_config c = k_configs[config];
    team_geometry gm = shape_of(w.cols / 32, c.cta_target, c.capped ? 384 : k_team_max_threads);
    if (gm.cta_threads > 384) c.capped = false;  // a wide row needs the 512-thread kernel
    switch (c.rows_in_flight * 2 + (c.capped ? 1 : 0)) {
        case 9: launch_4bit_config<4, true>(w, x, y, o, c, gm); break;
        case 16: launch_4bit_config<8, false>(w, x, y, o, c, gm); break;
        case 17: launch_4bit_config<8, true>(w, x, y, o, c, gm); break;
        default: launch_4bit_config<4, false>(w, x, y, o, c, gm); break;
    }
}

bool gemv_int8_fused_supported(std::int64_t k) {
    return k > 0 && k % 32 == 0 && k / 32 <= k_team_max_threads;
}

void launch_gemv_int8_fused(const std::int8_t* cb, const float* scb, std::int64_t n, std::int64_t k, const __half* x,
                            float threshold, __half* y, const launch_options& o, int config) {
    if (!gemv_int8_fused_supported(k) || !fits_32bit(n, k, k))
        throw std::invalid_argument("launch_gemv_int8_fused: needs k % 32 == 0 and k <= 16384 (k " +
                                    std::to_string(k) + ")");
    if (config < 0 || config >= k_config_count)
        throw std::invalid_argument("launch_gemv_int8_fused: config " + std::to_string(config) + " does not exist");
    if (n <= 0) return;
    team_config c = k_int8_configs[config];
    team_geometry gm = shape_of(k / 32, c.cta_target, c.capped ? 384 : k_team_max_threads);
    if (gm.cta_threads > 384) c.capped = false;
    switch (c.rows_in_flight * 2 + (c.capped ? 1 : 0)) {
        case 9: launch_int8_config<4, true>(cb, scb, n, k, x, threshold, y, o, c, gm); break;
        case 16: launch_int8_config<8, false>(cb, scb, n, k, x, threshold, y, o, c, gm); break;
        case 17: launch_int8_config<8, false>(cb, scb, n, k, x, threshold, y, o, c, gm); break;  // U8 spills at 80
        default: launch_int8_config<4, false>(cb, scb, n, k, x, threshold, y, o, c, gm); break;
    }
}

}  // namespace qbench::bnb
