#include "backends/fp16/fp16_gemv.cuh"

#include "cuda/rms_norm.cuh"
#include "cuda/swiglu.cuh"

#include "qbench/common/errors.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

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

// Which weight rows a launch reads and where their sums go. Rows are numbered "virtually" across the launch:
//  - plain: the segments' rows one after the other (q rows, then k rows, then v rows): virtual row v of segment s
//    is its row v - start[s], written to y[s][r * n_s + v - start[s]] for activation row r;
//  - swiglu: gate row i and up row i are read by the same warp (ffma: virtual rows 2i, 2i + 1) or the same mma tile
//    (rows 8T..8T+7 gate, 8T+8..8T+15 up), and only act[r * n + i] = silu(g) * u is written.
// residual (plain, one segment): y0 is the residual stream, updated in place: y = fp16(y + fp16(sum)), the add
// launch_rms_norm would do with delta = fp16(sum). Each output element has exactly one writer, which reads it first.
// norm_w (mma kernel with NORM only): x is the residual stream and the kernel multiplies with h = rms_norm(x) * norm_w,
// formed in its prologue exactly as launch_rms_norm forms it (rms_norm.cuh).
// Segment lookups use selects, not a run-time index into the parameter arrays (which could spill them to local
// memory).
struct gemv_job {
    const uint4* w0;
    const uint4* w1;
    const uint4* w2;
    __half* y0;
    __half* y1;
    __half* y2;
    int start1, start2;  // first virtual row of segments 1 and 2 (plain); unused segments start at `total`
    int total;           // virtual rows (plain: sum of n; swiglu: 2 n)
    int n;               // swiglu: outputs per matrix
    bool swiglu;
    bool residual;
    const uint4* norm_w;  // NORM kernels: the RMSNorm weight (k halves)
    double eps;           // NORM kernels: the RMSNorm epsilon
};

__device__ __forceinline__ int segment_of(const gemv_job& j, int v) { return v >= j.start2 ? 2 : (v >= j.start1 ? 1 : 0); }
__device__ __forceinline__ const uint4* segment_w(const gemv_job& j, int s) { return s == 0 ? j.w0 : (s == 1 ? j.w1 : j.w2); }
__device__ __forceinline__ int segment_start(const gemv_job& j, int s) { return s == 0 ? 0 : (s == 1 ? j.start1 : j.start2); }
__device__ __forceinline__ int segment_end(const gemv_job& j, int s) { return s == 0 ? j.start1 : (s == 1 ? j.start2 : j.total); }

// Weight row of plain virtual row v (clamped into range: rows past the end are loaded, never stored).
__device__ __forceinline__ const uint4* plain_row(const gemv_job& j, int v, int chunks) {
    v = v < j.total ? v : j.total - 1;
    const int s = segment_of(j, v);
    return segment_w(j, s) + static_cast<std::size_t>(v - segment_start(j, s)) * chunks;
}

// Stores the sum of plain virtual row v for activation row r.
__device__ __forceinline__ void plain_store(const gemv_job& j, int v, int r, float sum) {
    if (v >= j.total) return;
    const int s = segment_of(j, v);
    const int first = segment_start(j, s), n = segment_end(j, s) - first;
    __half* y = s == 0 ? j.y0 : (s == 1 ? j.y1 : j.y2);
    __half* at = y + static_cast<std::size_t>(r) * n + (v - first);
    *at = j.residual ? rms_residual_add(*at, __float2half_rn(sum)) : __float2half_rn(sum);
}

// Gate and up sums of one output, rounded to fp16 as the separate linears' outputs are, then the SwiGLU product.
__device__ __forceinline__ void swiglu_store(const gemv_job& j, int i, int r, float gate, float up) {
    if (i >= j.n) return;
    const float g = __half2float(__float2half_rn(gate)), u = __half2float(__float2half_rn(up));
    j.y0[static_cast<std::size_t>(r) * j.n + i] = __float2half_rn(silu_times(g, u));
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
// KS warps of a block split K, their partial tiles summed in shared memory. Strided: warp w takes steps w, w + KS,
// ...; contiguous: warp w takes one range of consecutive steps, so a lane quad reads 64 J contiguous bytes of its
// rows per round. PREX: the activation chunk of a step is loaded with its weights, a round ahead of its use.
// PRE2 (with PREX): the weights of the first two rounds, not one, are requested before waiting for the previous
// kernel (PDL), so a short predecessor (RMSNorm, attention) or a GEMV's tail hides behind twice the bytes.
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

// Row stride (in 16-byte chunks) of the normed activations in shared memory: 64 bytes of padding put the lane
// quads of rows g and g + 1 in different halves of the 128-byte bank window.
__host__ __device__ constexpr int norm_row_stride(int chunks) { return chunks + 4; }

// The folded RMSNorm (NORM kernels), run by the whole block after the PDL wait: h[r] = rms_norm(x[r]) * norm_w for
// every activation row into `h` (shared memory, rows x norm_row_stride(chunks) chunks), with the reduction order and
// roundings of launch_rms_norm's fast path (rms_norm.cuh), so h is bit-identical to that kernel's output. `nbuf`
// (chunks entries) keeps the norm weights between the two passes.
template <int KS>
__device__ __forceinline__ void norm_prologue(const gemv_job& job, const uint4* x, int rows, int chunks, uint4* h,
                                              uint4* nbuf) {
    constexpr int T = KS * 32;
    __shared__ double warp_sums[k_f16_gemv_max_rows][32];
    __shared__ float inv[k_f16_gemv_max_rows];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int stride = norm_row_stride(chunks);
    // Pass 1: thread t takes chunks t, t + T, ...; the warp that holds chunks 32w .. 32w + 31 forms W_w, as warp w of
    // the separate kernel does. Raw x goes to shared memory for pass 2.
    for (int base = 0; base < chunks; base += T) {
        if (base + 32 * warp >= chunks) continue;  // warp-uniform: no chunk of this warp is in the row
        const int c = base + static_cast<int>(threadIdx.x);
        const bool ok = c < chunks;
        const uint4 zero = make_uint4(0, 0, 0, 0);
        const uint4 nv = ok ? job.norm_w[c] : zero;
        uint4 xv[k_f16_gemv_max_rows];
#pragma unroll
        for (int r = 0; r < k_f16_gemv_max_rows; ++r)
            xv[r] = ok && r < rows ? x[static_cast<std::size_t>(r) * chunks + c] : zero;
        if (ok) nbuf[c] = nv;
#pragma unroll
        for (int r = 0; r < k_f16_gemv_max_rows; ++r) {
            if (r >= rows) break;  // block-uniform
            if (ok) h[r * stride + c] = xv[r];
            const double w_sum = rms_butterfly(ok ? rms_chunk_sumsq(xv[r]) : 0.0);
            if (lane == 0) warp_sums[r][(base >> 5) + warp] = w_sum;
        }
    }
    __syncthreads();
    const int row_warps = (chunks + 31) / 32;
    for (int r = warp; r < rows; r += KS) {
        const double sumsq = rms_butterfly(lane < row_warps ? warp_sums[r][lane] : 0.0);
        if (lane == 0) inv[r] = rms_inv(sumsq, static_cast<std::int64_t>(chunks) * 8, job.eps);
    }
    __syncthreads();
    // Pass 2: each thread norms the chunks it stored.
    for (int c = static_cast<int>(threadIdx.x); c < chunks; c += T) {
        const uint4 nv = nbuf[c];
        for (int r = 0; r < rows; ++r) h[r * stride + c] = rms_norm_chunk(h[r * stride + c], inv[r], nv);
    }
    __syncthreads();
}

// KS warps per 16-row tile, J steps (of 32 halves per row) per round, two rounds in flight. NORM (with CONTIG and
// PREX only): x is the residual stream; the prologue forms the normed activations in dynamic shared memory and the
// main loop reads them from there.
template <int KS, int J, bool CONTIG, bool PREX, bool PRE2, bool NORM>
__global__ void __launch_bounds__(KS * 32)
    f16_gemv_mma_kernel(const gemv_job job, const uint4* x, int rows, int chunks) {
    static_assert(!NORM || (CONTIG && PREX), "the folded norm is only built into the default layout");
    __shared__ float partial[KS][32][4];
    extern __shared__ uint4 normed[];  // NORM: rows x norm_row_stride(chunks) chunks, then chunks norm weights
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const uint4 *wlo, *whi;
    if (job.swiglu) {
        const int i = min(blockIdx.x * 8 + g, job.n - 1);
        wlo = job.w0 + static_cast<std::size_t>(i) * chunks;  // gate rows in m rows 0-7
        whi = job.w1 + static_cast<std::size_t>(i) * chunks;  // up rows in m rows 8-15
    } else {
        wlo = plain_row(job, blockIdx.x * 16 + g, chunks);
        whi = plain_row(job, blockIdx.x * 16 + g + 8, chunks);
    }
    const bool has_x = g < rows;
    const uint4* xr = NORM ? normed + static_cast<std::size_t>(has_x ? g : 0) * norm_row_stride(chunks)
                           : x + static_cast<std::size_t>(has_x ? g : 0) * chunks;
    const int steps = (chunks + 3) / 4;
    int first = 0, mine = 0;  // contiguous: this warp's first step and step count
    if constexpr (CONTIG) {
        const int per = (steps + KS - 1) / KS;
        first = warp * per;
        mine = max(0, min(steps, first + per) - first);
    } else {
        mine = warp < steps ? (steps - warp + KS - 1) / KS : 0;
    }
    const int rounds = (mine + J - 1) / J;
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};

    auto chunk_of = [&](int q) -> int {  // chunk of this lane in the warp's step q, or -1 past the warp's range
        if constexpr (CONTIG) {
            const int c = 4 * (first + q) + t;
            return q < mine && c < chunks ? c : -1;
        } else {
            const int c = 4 * (q * KS + warp) + t;
            return c < chunks ? c : -1;
        }
    };
    auto load = [&](uint4 (&lo)[J], uint4 (&hi)[J], uint4 (&xs)[J], int round) {
#pragma unroll
        for (int j = 0; j < J; ++j) {
            const int c = chunk_of(round * J + j);
            lo[j] = c >= 0 ? load_weight(wlo + c) : make_uint4(0, 0, 0, 0);
            hi[j] = c >= 0 ? load_weight(whi + c) : make_uint4(0, 0, 0, 0);
            if constexpr (PREX) xs[j] = has_x && c >= 0 ? xr[c] : make_uint4(0, 0, 0, 0);
        }
    };
    auto consume = [&](const uint4 (&lo)[J], const uint4 (&hi)[J], const uint4 (&xs)[J], int round) {
#pragma unroll
        for (int j = 0; j < J; ++j) {
            uint4 xv;
            if constexpr (PREX) {
                xv = xs[j];
            } else {
                const int c = chunk_of(round * J + j);
                xv = has_x && c >= 0 ? xr[c] : make_uint4(0, 0, 0, 0);
            }
            mma_16816(d, lo[j], hi[j], xv.x, xv.y, false);
            mma_16816(d, lo[j], hi[j], xv.z, xv.w, true);
        }
    };

    uint4 alo[J], ahi[J], ax[J], blo[J], bhi[J], bx[J];
    auto load_w = [&](uint4 (&lo)[J], uint4 (&hi)[J], int round) {
#pragma unroll
        for (int j = 0; j < J; ++j) {
            const int c = chunk_of(round * J + j);
            lo[j] = c >= 0 ? load_weight(wlo + c) : make_uint4(0, 0, 0, 0);
            hi[j] = c >= 0 ? load_weight(whi + c) : make_uint4(0, 0, 0, 0);
        }
    };
    auto load_x = [&](uint4 (&xs)[J], int round) {
#pragma unroll
        for (int j = 0; j < J; ++j) {
            const int c = chunk_of(round * J + j);
            xs[j] = has_x && c >= 0 ? xr[c] : make_uint4(0, 0, 0, 0);
        }
    };
    constexpr bool two_ahead = PREX && PRE2;
    if constexpr (PREX) {
        // Weights never change: fetched while the previous kernel drains (PDL); the activations only after it.
        load_w(alo, ahi, 0);
        if (two_ahead && rounds > 1) load_w(blo, bhi, 1);
        pdl_wait();
        pdl_trigger();
        if constexpr (NORM) norm_prologue<KS>(job, x, rows, chunks, normed, normed + rows * norm_row_stride(chunks));
        load_x(ax, 0);
        if (two_ahead && rounds > 1) load_x(bx, 1);
    } else {
        load(alo, ahi, ax, 0);
        pdl_wait();
        pdl_trigger();
    }
    for (int r = 0; r < rounds; r += 2) {
        if (r + 1 < rounds && !(two_ahead && r == 0)) load(blo, bhi, bx, r + 1);
        consume(alo, ahi, ax, r);
        if (r + 1 >= rounds) break;
        if (r + 2 < rounds) load(alo, ahi, ax, r + 2);
        consume(blo, bhi, bx, r + 1);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) partial[warp][lane][i] = d[i];
    __syncthreads();
    if (job.swiglu) {
        // Thread (l, i): column 2 (l & 3) + i of gate row l >> 2 (d[i]) and of up row l >> 2 (d[i + 2]).
        if (threadIdx.x < 64) {
            const int l = threadIdx.x >> 1, i = threadIdx.x & 1;
            float gate = 0.0f, up = 0.0f;
#pragma unroll
            for (int k = 0; k < KS; ++k) {
                gate += partial[k][l][i];
                up += partial[k][l][i + 2];
            }
            const int col = 2 * (l & 3) + i;
            if (col < rows) swiglu_store(job, blockIdx.x * 8 + (l >> 2), col, gate, up);
        }
    } else if (threadIdx.x < 128) {
        const int l = threadIdx.x >> 2, i = threadIdx.x & 3;
        float sum = 0.0f;
#pragma unroll
        for (int k = 0; k < KS; ++k) sum += partial[k][l][i];
        const int row = blockIdx.x * 16 + (l >> 2) + (i >= 2 ? 8 : 0);
        const int col = 2 * (l & 3) + (i & 1);
        if (col < rows) plain_store(job, row, col, sum);
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

using vec_kernel = void (*)(gemv_job, const uint4*, int);
using scalar_kernel = void (*)(const __half*, const __half*, __half*, int, int);
using mma_kernel = void (*)(gemv_job, const uint4*, int, int);

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

bool vectorizable(const void* w, const void* x, std::int64_t k) {
    return k % 8 == 0 && reinterpret_cast<std::uintptr_t>(w) % 16 == 0 && reinterpret_cast<std::uintptr_t>(x) % 16 == 0;
}

// Default output rows per warp of the fp32-FMA path: two rows give each lane more bytes in flight and amortize each
// activation load and conversion over more weights (PERF_NOTES.md, v2).
constexpr int k_default_rows_per_warp = 2;

struct device_facts {
    int cc = 0;
    int smem_optin = 0;  // dynamic shared memory a block may opt in to
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
        cudaDeviceGetAttribute(&f.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
        f.cc = major * 10 + minor;
    }
    return f;
}

struct resolved {
    f16_gemv_kind kind;
    int k_split, rows_per_warp;
    bool pipelined, contiguous, prefetch_x, two_rounds_ahead;
};

// Measured on the H200 at Llama-7B shapes (PERF_NOTES.md, v5): the mma kernel with contiguous K ranges and
// activations loaded a round ahead reads all of a 7B token's linears at 0.85 of the stream bandwidth at 1, 2 and 4
// rows (the fp32-FMA kernel: 0.81 at 1 row, 0.71 at 2, issue-bound beyond), so it serves every row count on sm_80+.
// QBENCH_GEMV_MMA_FROM sets the row count from which the mma kernel serves (A/B runs; ffma below it).
constexpr int k_default_k_split = 8;
std::int64_t mma_from_rows() {
    static const std::int64_t from = [] {
        const char* env = std::getenv("QBENCH_GEMV_MMA_FROM");
        return env != nullptr ? std::max(1, std::atoi(env)) : 1;
    }();
    return from;
}

resolved resolve(std::int64_t rows, const f16_gemv_variant& v) {
    f16_gemv_kind kind = v.kind;
    if (kind == f16_gemv_kind::automatic)
        kind = facts().cc >= 80 && rows >= mma_from_rows() ? f16_gemv_kind::mma : f16_gemv_kind::ffma;
    if (kind == f16_gemv_kind::mma && facts().cc < 80) kind = f16_gemv_kind::ffma;  // mma.m16n8k16 needs sm_80
    const int ks = v.k_split == 4 || v.k_split == 8 ? v.k_split : k_default_k_split;
    return {kind,
            ks,
            v.rows_per_warp == 1 || v.rows_per_warp == 4 ? v.rows_per_warp : k_default_rows_per_warp,
            v.pipelined,
            v.layout != f16_mma_layout::strided,
            v.prefetch_x != 0,
            v.prefetch_x != 0 && v.ahead_rounds != 1};
}

constexpr int k_mma_steps_per_round = 4;

template <int KS>
mma_kernel pick_mma(const resolved& r) {
    constexpr int J = k_mma_steps_per_round;
    if (r.contiguous && r.prefetch_x)
        return r.two_rounds_ahead ? f16_gemv_mma_kernel<KS, J, true, true, true, false>
                                  : f16_gemv_mma_kernel<KS, J, true, true, false, false>;
    if (r.contiguous) return f16_gemv_mma_kernel<KS, J, true, false, false, false>;
    return r.prefetch_x ? f16_gemv_mma_kernel<KS, J, false, true, false, false>
                        : f16_gemv_mma_kernel<KS, J, false, false, false, false>;
}

// The NORM kernel of a variant that has one (contiguous layout, activations a round ahead), else null.
template <int KS>
mma_kernel pick_mma_norm(const resolved& r) {
    constexpr int J = k_mma_steps_per_round;
    if (!(r.contiguous && r.prefetch_x)) return nullptr;
    return r.two_rounds_ahead ? f16_gemv_mma_kernel<KS, J, true, true, true, true>
                              : f16_gemv_mma_kernel<KS, J, true, true, false, true>;
}

// Dynamic shared memory of a NORM launch: the normed rows and the norm weights.
std::size_t norm_smem_bytes(std::int64_t rows, std::int64_t k) {
    const int chunks = static_cast<int>(k / 8);
    return static_cast<std::size_t>(rows * norm_row_stride(chunks) + chunks) * sizeof(uint4);
}

// Static shared memory of the NORM kernels (partial tiles, the prologue's warp sums and inverse RMS) stays below this.
constexpr std::size_t k_norm_static_smem_bound = 8 * 1024;

// Whether a NORM launch of these sizes can run with this variant on this device.
bool norm_launchable(std::int64_t rows, std::int64_t k, const f16_gemv_variant& variant) {
    if (rows < 1 || rows > k_f16_gemv_max_rows || k <= 0 || k % 8 != 0 || k / 8 > k_rms_norm_max_chunks) return false;
    const resolved r = resolve(rows, variant);
    if (r.kind != f16_gemv_kind::mma) return false;
    const mma_kernel kernel = r.k_split == 8 ? pick_mma_norm<8>(r) : pick_mma_norm<4>(r);
    return kernel != nullptr &&
           norm_smem_bytes(rows, k) + k_norm_static_smem_bound <= static_cast<std::size_t>(facts().smem_optin);
}

// Lets a NORM kernel use all the dynamic shared memory the device allows, once per kernel and device (not on every
// launch: launches may be captured into a CUDA graph, and the attribute does not change occupancy by itself).
void allow_norm_smem(mma_kernel kernel) {
    static std::mutex mutex;
    static std::vector<std::pair<mma_kernel, int>> done;
    int dev = 0;
    QB_CUDA_CHECK(cudaGetDevice(&dev));
    const std::lock_guard<std::mutex> lock(mutex);
    for (const auto& d : done)
        if (d.first == kernel && d.second == dev) return;
    cudaFuncAttributes attr{};
    QB_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
    QB_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       facts().smem_optin - static_cast<int>(attr.sharedSizeBytes)));
    done.emplace_back(kernel, dev);
}

void check_rows(const char* what, std::int64_t rows) {
    if (rows < 1 || rows > k_f16_gemv_max_rows)
        throw error(std::string(what) + ": rows " + std::to_string(rows) + " outside [1, " +
                    std::to_string(k_f16_gemv_max_rows) + "]");
}

// Launches a vectorizable job: `outputs` = output rows the grid covers (plain: all virtual rows; swiglu: n).
void launch_job(const gemv_job& job, const __half* x, std::int64_t rows, std::int64_t k, const launch_options& o,
                const f16_gemv_variant& variant) {
    const resolved r = resolve(rows, variant);
    const auto* x4 = reinterpret_cast<const uint4*>(x);
    const int chunks = static_cast<int>(k / 8);
    if (job.norm_w != nullptr) {
        // Callers check f16_gemv_norm_foldable first; this is the last line of defence.
        if (!norm_launchable(rows, k, variant))
            throw error("f16 gemv: the folded RMSNorm is not available for rows " + std::to_string(rows) + ", k " +
                        std::to_string(k) + " with this variant");
        const mma_kernel kernel = r.k_split == 8 ? pick_mma_norm<8>(r) : pick_mma_norm<4>(r);
        const std::size_t smem = norm_smem_bytes(rows, k);
        if (smem > 48 * 1024) allow_norm_smem(kernel);
        const std::int64_t tiles = job.swiglu ? (job.n + 7) / 8 : (job.total + 15) / 16;
        launch_kernel(kernel, dim3(static_cast<unsigned>(tiles)), dim3(r.k_split * 32), smem, o, job, x4,
                      static_cast<int>(rows), chunks);
        return;
    }
    if (r.kind == f16_gemv_kind::mma) {
        const mma_kernel kernel = r.k_split == 8 ? pick_mma<8>(r) : pick_mma<4>(r);
        const std::int64_t tiles = job.swiglu ? (job.n + 7) / 8 : (job.total + 15) / 16;
        launch_kernel(kernel, dim3(static_cast<unsigned>(tiles)), dim3(r.k_split * 32), 0, o, job, x4,
                      static_cast<int>(rows), chunks);
        return;
    }
    // A swiglu job pairs gate and up rows in one warp: it needs an even number of rows per warp.
    const int rpw = job.swiglu && r.rows_per_warp == 1 ? 2 : r.rows_per_warp;
    const std::int64_t warps = (job.total + rpw - 1) / rpw;
    const dim3 grid(static_cast<unsigned>((warps + k_warps_per_block - 1) / k_warps_per_block));
    const auto& table = rpw == 4 ? k_rpw4_pipe
                                 : (r.pipelined ? (rpw == 2 ? k_rpw2_pipe : k_rpw1_pipe)
                                                : (rpw == 2 ? k_rpw2_burst : k_rpw1_burst));
    launch_kernel(table[rows - 1], grid, dim3(k_warps_per_block * 32), 0, o, job, x4, chunks);
}

}  // namespace

f16_gemv_variant default_f16_gemv_variant() {
    static const f16_gemv_variant v = [] {
        f16_gemv_variant d;
        if (const char* kind = std::getenv("QBENCH_GEMV")) {
            const std::string k = kind;
            d.kind = k == "mma" ? f16_gemv_kind::mma : (k == "ffma" ? f16_gemv_kind::ffma : f16_gemv_kind::automatic);
        }
        if (const char* ks = std::getenv("QBENCH_GEMV_KSPLIT")) d.k_split = std::atoi(ks);
        if (const char* rpw = std::getenv("QBENCH_GEMV_RPW")) {
            const int v = std::atoi(rpw);
            d.rows_per_warp = v == 1 || v == 4 ? v : 2;
        }
        if (const char* pipe = std::getenv("QBENCH_GEMV_PIPE")) d.pipelined = std::atoi(pipe) != 0;
        if (const char* layout = std::getenv("QBENCH_GEMV_LAYOUT"))
            d.layout = std::string(layout) == "strided" ? f16_mma_layout::strided : f16_mma_layout::contiguous;
        if (const char* pre = std::getenv("QBENCH_GEMV_XPRE")) d.prefetch_x = std::atoi(pre) != 0 ? 1 : 0;
        if (const char* ahead = std::getenv("QBENCH_GEMV_AHEAD")) d.ahead_rounds = std::atoi(ahead) == 1 ? 1 : 2;
        return d;
    }();
    return v;
}

std::string f16_gemv_path(const void* w, const void* x, std::int64_t rows, std::int64_t n, std::int64_t k,
                          f16_gemv_variant variant) {
    (void)n;
    if (!vectorizable(w, x, k)) return "gemv-f16-scalar";
    const resolved r = resolve(rows, variant);
    if (r.kind == f16_gemv_kind::mma)
        return "gemv-f16-mma-ks" + std::to_string(r.k_split) + (r.contiguous ? "-contig" : "-strided") +
               (r.prefetch_x ? (r.two_rounds_ahead ? "-xpre-ahead2" : "-xpre") : "");
    return std::string("gemv-f16-ffma-") + (r.pipelined || r.rows_per_warp == 4 ? "pipe" : "burst") + "-rpw" +
           std::to_string(r.rows_per_warp);
}

bool f16_gemv_fusable(const void* w, const void* x, std::int64_t rows, std::int64_t k) {
    return rows >= 1 && rows <= k_f16_gemv_max_rows && k <= INT32_MAX && vectorizable(w, x, k);
}

bool f16_gemv_norm_foldable(const void* w, const void* x, const void* norm_weight, std::int64_t rows, std::int64_t k,
                            f16_gemv_variant variant) {
    return f16_gemv_fusable(w, x, rows, k) && reinterpret_cast<std::uintptr_t>(norm_weight) % 16 == 0 &&
           norm_weight != nullptr && norm_launchable(rows, k, variant);
}

void launch_f16_gemv(const __half* w, const __half* x, __half* y, std::int64_t rows, std::int64_t n, std::int64_t k,
                     const launch_options& o, f16_gemv_variant variant) {
    check_rows("launch_f16_gemv", rows);
    if (n <= 0 || k <= 0) return;
    if (n > INT32_MAX || k > INT32_MAX) throw error("launch_f16_gemv: shape too large");
    if (!vectorizable(w, x, k)) {
        const dim3 grid(static_cast<unsigned>((n + k_warps_per_block - 1) / k_warps_per_block));
        launch_kernel(k_scalar[rows - 1], grid, dim3(k_warps_per_block * 32), 0, o, w, x, y, static_cast<int>(n),
                      static_cast<int>(k));
        return;
    }
    const f16_gemv_segment one{w, y, n};
    launch_f16_gemv_group(&one, 1, x, rows, k, o, variant);
}

namespace {

void set_norm(gemv_job& job, const f16_gemv_norm* norm) {
    job.norm_w = norm != nullptr ? reinterpret_cast<const uint4*>(norm->weight) : nullptr;
    job.eps = norm != nullptr ? norm->eps : 0.0;
    if (norm != nullptr && reinterpret_cast<std::uintptr_t>(norm->weight) % 16 != 0)
        throw error("f16 gemv: the RMSNorm weight is not 16-byte aligned");
}

}  // namespace

void launch_f16_gemv_group(const f16_gemv_segment* segments, int count, const __half* x, std::int64_t rows,
                           std::int64_t k, const launch_options& o, f16_gemv_variant variant,
                           const f16_gemv_norm* norm) {
    check_rows("launch_f16_gemv_group", rows);
    if (count < 1 || count > k_f16_gemv_max_segments)
        throw error("launch_f16_gemv_group: " + std::to_string(count) + " segments outside [1, " +
                    std::to_string(k_f16_gemv_max_segments) + "]");
    std::int64_t total = 0;
    for (int s = 0; s < count; ++s) {
        if (!f16_gemv_fusable(segments[s].w, x, rows, k) || segments[s].n < 0)
            throw error("launch_f16_gemv_group: unaligned pointers or k " + std::to_string(k) + " not a multiple of 8");
        total += segments[s].n;
    }
    if (total == 0 || k <= 0) return;
    if (total > INT32_MAX / 2) throw error("launch_f16_gemv_group: shape too large");
    // Segment s covers virtual rows [start_s, start_s + n_s): empty and unused segments cover none.
    gemv_job job{};
    const uint4* w[3];
    __half* y[3];
    int start[3];
    std::int64_t at = 0;
    const uint4* any = nullptr;
    for (int s = 0; s < count; ++s)
        if (segments[s].n > 0 && any == nullptr) any = reinterpret_cast<const uint4*>(segments[s].w);
    for (int s = 0; s < 3; ++s) {
        const bool used = s < count && segments[s].n > 0;
        w[s] = used ? reinterpret_cast<const uint4*>(segments[s].w) : any;  // never read when unused
        y[s] = used ? segments[s].y : nullptr;
        start[s] = static_cast<int>(at);
        if (s < count) at += segments[s].n;
    }
    job.w0 = w[0];
    job.w1 = w[1];
    job.w2 = w[2];
    job.y0 = y[0];
    job.y1 = y[1];
    job.y2 = y[2];
    job.start1 = start[1];
    job.start2 = start[2];
    job.total = static_cast<int>(total);
    job.n = 0;
    job.swiglu = false;
    set_norm(job, norm);
    launch_job(job, x, rows, k, o, variant);
}

void launch_f16_gemv_residual(const __half* w, const __half* a, __half* x, std::int64_t rows, std::int64_t n,
                              std::int64_t k, const launch_options& o, f16_gemv_variant variant) {
    check_rows("launch_f16_gemv_residual", rows);
    if (!f16_gemv_fusable(w, a, rows, k))
        throw error("launch_f16_gemv_residual: unaligned pointers or k " + std::to_string(k) + " not a multiple of 8");
    if (n <= 0 || k <= 0) return;
    if (n > INT32_MAX / 2) throw error("launch_f16_gemv_residual: shape too large");
    gemv_job job{};
    job.w0 = job.w1 = job.w2 = reinterpret_cast<const uint4*>(w);
    job.y0 = x;
    job.y1 = job.y2 = nullptr;
    job.total = static_cast<int>(n);
    job.start1 = job.start2 = job.total;
    job.residual = true;
    launch_job(job, a, rows, k, o, variant);
}

void launch_f16_gemv_swiglu(const __half* w_gate, const __half* w_up, const __half* x, __half* act,
                            std::int64_t rows, std::int64_t n, std::int64_t k, const launch_options& o,
                            f16_gemv_variant variant, const f16_gemv_norm* norm) {
    check_rows("launch_f16_gemv_swiglu", rows);
    if (!f16_gemv_fusable(w_gate, x, rows, k) || !f16_gemv_fusable(w_up, x, rows, k))
        throw error("launch_f16_gemv_swiglu: unaligned pointers or k " + std::to_string(k) + " not a multiple of 8");
    if (n <= 0 || k <= 0) return;
    if (n > INT32_MAX / 4) throw error("launch_f16_gemv_swiglu: shape too large");
    gemv_job job{};
    job.w0 = reinterpret_cast<const uint4*>(w_gate);
    job.w1 = reinterpret_cast<const uint4*>(w_up);
    job.w2 = job.w0;
    job.y0 = act;
    job.y1 = job.y2 = nullptr;
    job.total = static_cast<int>(2 * n);
    job.start1 = job.start2 = job.total;
    job.n = static_cast<int>(n);
    job.swiglu = true;
    set_norm(job, norm);
    launch_job(job, x, rows, k, o, variant);
}

}  // namespace qbench
