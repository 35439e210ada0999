#include "backends/fp16/fp16_gemv.cuh"

#include "qbench/common/errors.hpp"

#include <array>
#include <cstdlib>
#include <string>

namespace qbench {

namespace {

constexpr int k_warps_per_block = 4;

// Weights are read exactly once per forward: load them past L1 (no_allocate) so L1 keeps the activations.
__device__ __forceinline__ uint4 load_weight(const uint4* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

__device__ __forceinline__ void to_float8(const uint4& u, float (&f)[8]) {
    const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const float2 t = __half22float2(h[j]);
        f[2 * j] = t.x;
        f[2 * j + 1] = t.y;
    }
}

// R activation rows, RPW output rows per warp, U chunks per row and group. PIPE: two groups alternate (the next
// group's loads are issued before the current group is consumed, so loads stay in flight continuously); otherwise
// one group at a time (a burst of U loads, then their use).
template <int R, int RPW, int U, bool PIPE>
__global__ void __launch_bounds__(k_warps_per_block * 32)
    f16_gemv_kernel(const uint4* __restrict__ w, const uint4* x, __half* y, int n, int chunks) {
    const int lane = threadIdx.x & 31;
    const int warp = blockIdx.x * k_warps_per_block + (threadIdx.x >> 5);
    const int row0 = warp * RPW;
    const uint4* wrow[RPW];
#pragma unroll
    for (int rr = 0; rr < RPW; ++rr) {
        // Rows past n repeat the last row (loaded, never stored), so every lane runs the same loop.
        const int r = row0 + rr < n ? row0 + rr : n - 1;
        wrow[rr] = w + static_cast<std::size_t>(r) * chunks;
    }
    float acc[RPW][R];
#pragma unroll
    for (int rr = 0; rr < RPW; ++rr)
#pragma unroll
        for (int r = 0; r < R; ++r) acc[rr][r] = 0.0f;

    auto load_group = [&](uint4 (&wv)[U][RPW], int c0) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int c = c0 + 32 * u;
#pragma unroll
            for (int rr = 0; rr < RPW; ++rr) wv[u][rr] = c < chunks ? load_weight(wrow[rr] + c) : make_uint4(0, 0, 0, 0);
        }
    };
    auto consume = [&](const uint4 (&wv)[U][RPW], int c0) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int c = c0 + 32 * u;
            if (c < chunks) {
                float wf[RPW][8];
#pragma unroll
                for (int rr = 0; rr < RPW; ++rr) to_float8(wv[u][rr], wf[rr]);
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    float xf[8];
                    to_float8(x[static_cast<std::size_t>(r) * chunks + c], xf);
#pragma unroll
                    for (int rr = 0; rr < RPW; ++rr)
#pragma unroll
                        for (int j = 0; j < 8; ++j) acc[rr][r] = fmaf(wf[rr][j], xf[j], acc[rr][r]);
                }
            }
        }
    };

    uint4 a[U][RPW];
    int c0 = lane;
    load_group(a, c0);  // independent of the previous kernel: overlaps its tail under PDL
    pdl_wait();
    pdl_trigger();
    if constexpr (PIPE) {
        uint4 b[U][RPW];
        while (true) {
            if (c0 + 32 * U < chunks) load_group(b, c0 + 32 * U);
            consume(a, c0);
            c0 += 32 * U;
            if (c0 >= chunks) break;
            if (c0 + 32 * U < chunks) load_group(a, c0 + 32 * U);
            consume(b, c0);
            c0 += 32 * U;
            if (c0 >= chunks) break;
        }
    } else {
        while (true) {
            consume(a, c0);
            c0 += 32 * U;
            if (c0 >= chunks) break;
            load_group(a, c0);
        }
    }
#pragma unroll
    for (int rr = 0; rr < RPW; ++rr)
#pragma unroll
        for (int r = 0; r < R; ++r) {
            float v = acc[rr][r];
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
            if (lane == (rr * R + r) % 32 && row0 + rr < n) y[static_cast<std::size_t>(r) * n + row0 + rr] = __float2half_rn(v);
        }
}

// ---- tensor-core path (sm_80+) --------------------------------------------------------------------------------
//
// The activation rows become the n = 8 columns of mma.m16n8k16 (f16 inputs, f32 accumulation), 16 weight rows its m
// rows, so one 16-byte activation load serves 16 output rows and no conversion instructions are needed: the kernel
// stays memory-bound at 8 rows as at 1. Fragment layout (PTX ISA, mma.m16n8k16, .f16): lane = 4 * g + t holds
//   A: rows g and g + 8, logical k {2t, 2t+1, 2t+8, 2t+9}      B: column (activation row) g, the same k
//   D: rows g and g + 8, columns 2t and 2t + 1
// A dot product does not care how k is numbered, so each lane loads 8 contiguous halves of its rows (one 16-byte
// load per row) and of its activation row, and feeds .x/.y to one mma and .z/.w to the next:
//
//   memory halves of a 32-wide step   | t=0: 0-7 | t=1: 8-15 | t=2: 16-23 | t=3: 24-31 |
//   first mma  (.x, .y)                  0-3        8-11        16-19        24-27
//   second mma (.z, .w)                  4-7        12-15       20-23        28-31
//
// KS warps of a block split K (warp w takes steps w, w + KS, ...); their partial tiles are summed in shared memory.
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint4& lo, const uint4& hi, unsigned b0, unsigned b1,
                                          bool second) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned a0 = second ? lo.z : lo.x, a1 = second ? hi.z : hi.x, a2 = second ? lo.w : lo.y,
                   a3 = second ? hi.w : hi.y;
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}

// KS warps per 16-row tile, J steps (of 32 halves per row) per round, two rounds in flight.
template <int KS, int J>
__global__ void __launch_bounds__(KS * 32)
    f16_gemv_mma_kernel(const uint4* __restrict__ w, const uint4* x, __half* y, int n, int rows, int chunks) {
    __shared__ float partial[KS][32][4];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int tile = blockIdx.x * 16;
    // Rows past n repeat the last row (loaded, never stored).
    const uint4* wlo = w + static_cast<std::size_t>(min(tile + g, n - 1)) * chunks;
    const uint4* whi = w + static_cast<std::size_t>(min(tile + g + 8, n - 1)) * chunks;
    const bool has_x = g < rows;
    const uint4* xr = x + static_cast<std::size_t>(has_x ? g : 0) * chunks;
    const int steps = (chunks + 3) / 4;
    const int mine = warp < steps ? (steps - warp + KS - 1) / KS : 0;  // this warp's steps
    const int rounds = (mine + J - 1) / J;
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};

    auto load = [&](uint4 (&lo)[J], uint4 (&hi)[J], int round) {
#pragma unroll
        for (int j = 0; j < J; ++j) {
            const int c = 4 * ((round * J + j) * KS + warp) + t;
            const bool in = c < chunks;
            lo[j] = in ? load_weight(wlo + c) : make_uint4(0, 0, 0, 0);
            hi[j] = in ? load_weight(whi + c) : make_uint4(0, 0, 0, 0);
        }
    };
    auto consume = [&](const uint4 (&lo)[J], const uint4 (&hi)[J], int round) {
#pragma unroll
        for (int j = 0; j < J; ++j) {
            const int c = 4 * ((round * J + j) * KS + warp) + t;
            const uint4 xv = has_x && c < chunks ? xr[c] : make_uint4(0, 0, 0, 0);
            mma_16816(d, lo[j], hi[j], xv.x, xv.y, false);
            mma_16816(d, lo[j], hi[j], xv.z, xv.w, true);
        }
    };

    uint4 alo[J], ahi[J], blo[J], bhi[J];
    load(alo, ahi, 0);  // weights never change: fetched while the previous kernel drains (PDL)
    pdl_wait();
    pdl_trigger();
    for (int r = 0; r < rounds; r += 2) {
        if (r + 1 < rounds) load(blo, bhi, r + 1);
        consume(alo, ahi, r);
        if (r + 1 >= rounds) break;
        if (r + 2 < rounds) load(alo, ahi, r + 2);
        consume(blo, bhi, r + 1);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) partial[warp][lane][i] = d[i];
    __syncthreads();
    if (threadIdx.x < 128) {
        const int l = threadIdx.x >> 2, i = threadIdx.x & 3;
        float sum = 0.0f;
#pragma unroll
        for (int k = 0; k < KS; ++k) sum += partial[k][l][i];
        const int row = tile + (l >> 2) + (i >= 2 ? 8 : 0);
        const int col = 2 * (l & 3) + (i & 1);
        if (col < rows && row < n) y[static_cast<std::size_t>(col) * n + row] = __float2half_rn(sum);
    }
}

// Any width: one warp per output row, one element per lane per step (any k, any alignment).
template <int R>
__global__ void __launch_bounds__(k_warps_per_block * 32)
    f16_gemv_scalar_kernel(const __half* __restrict__ w, const __half* x, __half* y, int n, int k) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * k_warps_per_block + (threadIdx.x >> 5);
    pdl_wait();
    pdl_trigger();
    if (row >= n) return;
    const __half* wr = w + static_cast<std::size_t>(row) * k;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.0f;
    for (int c = lane; c < k; c += 32) {
        const float wf = __half2float(wr[c]);
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r] = fmaf(wf, __half2float(x[static_cast<std::size_t>(r) * k + c]), acc[r]);
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
        float v = acc[r];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
        if (lane == r) y[static_cast<std::size_t>(r) * n + row] = __float2half_rn(v);
    }
}

using vec_kernel = void (*)(const uint4*, const uint4*, __half*, int, int);
using scalar_kernel = void (*)(const __half*, const __half*, __half*, int, int);

template <int RPW, int U, bool PIPE, std::size_t... I>
constexpr std::array<vec_kernel, sizeof...(I)> vec_table(std::index_sequence<I...>) {
    return {&f16_gemv_kernel<static_cast<int>(I) + 1, RPW, U, PIPE>...};
}
template <std::size_t... I>
constexpr std::array<scalar_kernel, sizeof...(I)> scalar_table(std::index_sequence<I...>) {
    return {&f16_gemv_scalar_kernel<static_cast<int>(I) + 1>...};
}

// Launchers by rows (index rows - 1) for each variant {rows per warp, chunks per group, pipelined}: 8 chunks per
// row in flight at a time in all four.
using rows_seq = std::make_index_sequence<k_f16_gemv_max_rows>;
constexpr auto k_rpw1_pipe = vec_table<1, 4, true>(rows_seq{});
constexpr auto k_rpw2_pipe = vec_table<2, 2, true>(rows_seq{});
constexpr auto k_rpw1_burst = vec_table<1, 8, false>(rows_seq{});
constexpr auto k_rpw2_burst = vec_table<2, 4, false>(rows_seq{});
constexpr auto k_scalar = scalar_table(rows_seq{});

bool vectorizable(const void* w, const void* x, std::int64_t k) {
    return k % 8 == 0 && reinterpret_cast<std::uintptr_t>(w) % 16 == 0 && reinterpret_cast<std::uintptr_t>(x) % 16 == 0;
}

// Default output rows per warp of the fp32-FMA path: two rows give each lane more bytes in flight and amortize each
// activation load and conversion over more weights (PERF_NOTES.md, v2).
constexpr int k_default_rows_per_warp = 2;

struct device_facts {
    int cc = 0;
};
// Compute capability of the current device, looked up once per device.
device_facts facts() {
    static device_facts cache[64];
    int dev = 0;
    cudaGetDevice(&dev);
    device_facts& f = cache[dev & 63];
    if (f.cc == 0) {
        int major = 0, minor = 0;
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
        f.cc = major * 10 + minor;
    }
    return f;
}

struct resolved {
    f16_gemv_kind kind;
    int k_split, rows_per_warp;
    bool pipelined;
};

// Measured on the H200 at Llama-7B shapes (PERF_NOTES.md, v3): the fp32-FMA kernel reads weights faster at 1 and 2
// activation rows (0.67-0.92 of the stream bandwidth against 0.55-0.76), the mma kernel from 4 rows on, where the
// FMA kernel's conversions make it issue-bound (0.26-0.69 against 0.52-0.72); k_split 8 beat 4 at every shape.
constexpr std::int64_t k_mma_from_rows = 3;
constexpr int k_default_k_split = 8;

resolved resolve(const void* w, const void* x, std::int64_t rows, const f16_gemv_variant& v, std::int64_t k) {
    if (!vectorizable(w, x, k)) return {f16_gemv_kind::ffma, 0, 1, false};
    f16_gemv_kind kind = v.kind;
    if (kind == f16_gemv_kind::automatic)
        kind = facts().cc >= 80 && rows >= k_mma_from_rows ? f16_gemv_kind::mma : f16_gemv_kind::ffma;
    if (kind == f16_gemv_kind::mma && facts().cc < 80) kind = f16_gemv_kind::ffma;  // mma.m16n8k16 needs sm_80
    const int ks = v.k_split == 4 || v.k_split == 8 ? v.k_split : k_default_k_split;
    return {kind, ks, v.rows_per_warp == 1 ? 1 : k_default_rows_per_warp, v.pipelined};
}

using mma_kernel = void (*)(const uint4*, const uint4*, __half*, int, int, int);
constexpr int k_mma_steps_per_round = 4;

}  // namespace

f16_gemv_variant default_f16_gemv_variant() {
    static const f16_gemv_variant v = [] {
        f16_gemv_variant d;
        if (const char* kind = std::getenv("QBENCH_GEMV")) {
            const std::string k = kind;
            d.kind = k == "mma" ? f16_gemv_kind::mma : (k == "ffma" ? f16_gemv_kind::ffma : f16_gemv_kind::automatic);
        }
        if (const char* ks = std::getenv("QBENCH_GEMV_KSPLIT")) d.k_split = std::atoi(ks);
        if (const char* rpw = std::getenv("QBENCH_GEMV_RPW")) d.rows_per_warp = std::atoi(rpw) == 1 ? 1 : 2;
        if (const char* pipe = std::getenv("QBENCH_GEMV_PIPE")) d.pipelined = std::atoi(pipe) != 0;
        return d;
    }();
    return v;
}

std::string f16_gemv_path(const void* w, const void* x, std::int64_t rows, std::int64_t n, std::int64_t k,
                          f16_gemv_variant variant) {
    (void)n;
    if (!vectorizable(w, x, k)) return "gemv-f16-scalar";
    const resolved r = resolve(w, x, rows, variant, k);
    if (r.kind == f16_gemv_kind::mma) return "gemv-f16-mma-ks" + std::to_string(r.k_split);
    return std::string("gemv-f16-ffma-") + (r.pipelined ? "pipe" : "burst") + "-rpw" + std::to_string(r.rows_per_warp);
}

void launch_f16_gemv(const __half* w, const __half* x, __half* y, std::int64_t rows, std::int64_t n, std::int64_t k,
                     const launch_options& o, f16_gemv_variant variant) {
    if (rows < 1 || rows > k_f16_gemv_max_rows)
        throw error("launch_f16_gemv: rows " + std::to_string(rows) + " outside [1, " +
                    std::to_string(k_f16_gemv_max_rows) + "]");
    if (n <= 0 || k <= 0) return;
    if (n > INT32_MAX || k > INT32_MAX) throw error("launch_f16_gemv: shape too large");
    if (!vectorizable(w, x, k)) {
        const dim3 grid(static_cast<unsigned>((n + k_warps_per_block - 1) / k_warps_per_block));
        launch_kernel(k_scalar[rows - 1], grid, dim3(k_warps_per_block * 32), 0, o, w, x, y, static_cast<int>(n),
                      static_cast<int>(k));
        return;
    }
    const resolved r = resolve(w, x, rows, variant, k);
    const auto* w4 = reinterpret_cast<const uint4*>(w);
    const auto* x4 = reinterpret_cast<const uint4*>(x);
    if (r.kind == f16_gemv_kind::mma) {
        const mma_kernel kernel = r.k_split == 8 ? f16_gemv_mma_kernel<8, k_mma_steps_per_round>
                                                 : f16_gemv_mma_kernel<4, k_mma_steps_per_round>;
        launch_kernel(kernel, dim3(static_cast<unsigned>((n + 15) / 16)), dim3(r.k_split * 32), 0, o, w4, x4, y,
                      static_cast<int>(n), static_cast<int>(rows), static_cast<int>(k / 8));
        return;
    }
    const std::int64_t warps = (n + r.rows_per_warp - 1) / r.rows_per_warp;
    const dim3 grid(static_cast<unsigned>((warps + k_warps_per_block - 1) / k_warps_per_block));
    const auto& table = r.pipelined ? (r.rows_per_warp == 2 ? k_rpw2_pipe : k_rpw1_pipe)
                                    : (r.rows_per_warp == 2 ? k_rpw2_burst : k_rpw1_burst);
    launch_kernel(table[rows - 1], grid, dim3(k_warps_per_block * 32), 0, o, w4, x4, y, static_cast<int>(n),
                  static_cast<int>(k / 8));
}

}  // namespace qbench
