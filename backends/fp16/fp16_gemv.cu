#include "backends/fp16/fp16_gemv.cuh"

#include "qbench/common/errors.hpp"

#include <array>
#include <cstdlib>

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

// Default output rows per warp: two rows amortize each activation load and conversion over more weights, which
// matters once several activation rows are read per weight chunk.
int default_rows_per_warp(std::int64_t rows) { return rows >= 3 ? 2 : 1; }

}  // namespace

f16_gemv_variant default_f16_gemv_variant() {
    static const f16_gemv_variant v = [] {
        f16_gemv_variant d;
        if (const char* rpw = std::getenv("QBENCH_GEMV_RPW")) d.rows_per_warp = std::atoi(rpw) == 2 ? 2 : 1;
        if (const char* pipe = std::getenv("QBENCH_GEMV_PIPE")) d.pipelined = std::atoi(pipe) != 0;
        return d;
    }();
    return v;
}

std::string f16_gemv_path(const void* w, const void* x, std::int64_t rows, std::int64_t k, f16_gemv_variant variant) {
    if (!vectorizable(w, x, k)) return "gemv-f16-scalar";
    const int rpw = variant.rows_per_warp > 0 ? variant.rows_per_warp : default_rows_per_warp(rows);
    return std::string("gemv-f16-") + (variant.pipelined ? "pipe" : "burst") + (rpw == 2 ? "-rpw2" : "-rpw1");
}

void launch_f16_gemv(const __half* w, const __half* x, __half* y, std::int64_t rows, std::int64_t n, std::int64_t k,
                     const launch_options& o, f16_gemv_variant variant) {
    if (rows < 1 || rows > k_f16_gemv_max_rows)
        throw error("launch_f16_gemv: rows " + std::to_string(rows) + " outside [1, " +
                    std::to_string(k_f16_gemv_max_rows) + "]");
    if (n <= 0 || k <= 0) return;
    if (n > INT32_MAX || k > INT32_MAX) throw error("launch_f16_gemv: shape too large");
    const dim3 block(k_warps_per_block * 32);
    if (!vectorizable(w, x, k)) {
        const dim3 grid(static_cast<unsigned>((n + k_warps_per_block - 1) / k_warps_per_block));
        launch_kernel(k_scalar[rows - 1], grid, block, 0, o, w, x, y, static_cast<int>(n), static_cast<int>(k));
        return;
    }
    const int rpw = variant.rows_per_warp > 0 ? variant.rows_per_warp : default_rows_per_warp(rows);
    const std::int64_t warps = (n + rpw - 1) / rpw;
    const dim3 grid(static_cast<unsigned>((warps + k_warps_per_block - 1) / k_warps_per_block));
    const auto& table =
        variant.pipelined ? (rpw == 2 ? k_rpw2_pipe : k_rpw1_pipe) : (rpw == 2 ? k_rpw2_burst : k_rpw1_burst);
    launch_kernel(table[rows - 1], grid, block, 0, o, reinterpret_cast<const uint4*>(w),
                  reinterpret_cast<const uint4*>(x), y, static_cast<int>(n), static_cast<int>(k / 8));
}

}  // namespace qbench
