// The CUDA-core kernels of the fp16 GEMV (fp16_gemv.cuh): the fp32-FMA kernel (the sm_75 path; on sm_80+ only below
// QBENCH_GEMV_MMA_FROM rows or with QBENCH_GEMV=ffma) and the scalar kernel (k not a multiple of 8, unaligned
// pointers), with their launch tables by row count, from which the host code (fp16_gemv.cu) picks through pick_ffma
// and pick_scalar. A file of their own: warps own whole output rows here, unlike the mma kernel's 16-row tiles
// (fp16_gemv_mma.cu). The job and the stores both vectorized kernels use are in fp16_gemv_common.cuh.
#include "backends/fp16/fp16_gemv_common.cuh"

#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace qbench {

using namespace f16_gemv_detail;  // the job, the weight load and the stores (fp16_gemv_common.cuh)

namespace {

__device__ __forceinline__ void to_float8(const uint4& u, float (&f)[8]) {
    const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const float2 t = __half22float2(h[j]);
        f[2 * j] = t.x;
        f[2 * j + 1] = t.y;
    }
}

// R activation rows, RPW (virtual) output rows per warp, U chunks per row and group. PIPE: two groups alternate
// (the next group's loads are issued before the current group is consumed, so loads stay in flight continuously);
// otherwise one group at a time (a burst of U loads, then their use). Swiglu jobs need an even RPW.
template <int R, int RPW, int U, bool PIPE>
__global__ void __launch_bounds__(k_warps_per_block * 32)
    f16_gemv_kernel(const gemv_job job, const uint4* x, int chunks) {
    const int lane = threadIdx.x & 31;
    const int warp = blockIdx.x * k_warps_per_block + (threadIdx.x >> 5);
    const int row0 = warp * RPW;
    const uint4* wrow[RPW];
#pragma unroll
    for (int rr = 0; rr < RPW; ++rr) {
        const int v = row0 + rr;
        if (job.swiglu) {
            const int i = min(v >> 1, job.n - 1);
            wrow[rr] = ((v & 1) == 0 ? job.w0 : job.w1) + static_cast<std::size_t>(i) * chunks;
        } else {
            wrow[rr] = plain_row(job, v, chunks);
        }
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
            acc[rr][r] = v;  // every lane holds every sum now
        }
    if (job.swiglu) {
        if constexpr (RPW % 2 == 0) {
#pragma unroll
            for (int p = 0; p < RPW / 2; ++p)
#pragma unroll
                for (int r = 0; r < R; ++r)
                    if (lane == (p * R + r) % 32) swiglu_store(job, (row0 >> 1) + p, r, acc[2 * p][r], acc[2 * p + 1][r]);
        }
    } else {
#pragma unroll
        for (int rr = 0; rr < RPW; ++rr)
#pragma unroll
            for (int r = 0; r < R; ++r)
                if (lane == (rr * R + r) % 32) plain_store(job, row0 + rr, r, acc[rr][r]);
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
// Four rows per warp: each activation chunk serves four weight rows (fewer activation loads and conversions per
// weight byte at 3-8 rows), 4 chunks per group.
constexpr auto k_rpw4_pipe = vec_table<4, 1, true>(rows_seq{});
constexpr auto k_scalar = scalar_table(rows_seq{});

}  // namespace

namespace f16_gemv_detail {

vec_kernel pick_ffma(std::int64_t rows, int rpw, bool pipelined) {
    const auto& table = rpw == 4 ? k_rpw4_pipe
                                 : (pipelined ? (rpw == 2 ? k_rpw2_pipe : k_rpw1_pipe)
                                              : (rpw == 2 ? k_rpw2_burst : k_rpw1_burst));
    return table[rows - 1];
}

scalar_kernel pick_scalar(std::int64_t rows) { return k_scalar[rows - 1]; }

}  // namespace f16_gemv_detail

}  // namespace qbench
