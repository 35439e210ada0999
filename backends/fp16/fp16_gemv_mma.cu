// The tensor-core kernel of the fp16 GEMV (fp16_gemv.cuh, sm_80+): mma.m16n8k16 over 16-row weight tiles, its
// variants (K layout, activations a round ahead, two rounds before the PDL wait) and the folded-RMSNorm prologue of
// its NORM instantiations, with pick_mma and pick_mma_norm, through which the host code (fp16_gemv.cu) gets an
// instantiation. The job and the stores it shares with the fp32-FMA kernel are in fp16_gemv_common.cuh.
#include "backends/fp16/fp16_gemv_common.cuh"

#include "cuda/rms_norm.cuh"

#include <cstddef>
#include <cstdint>

namespace qbench {

using namespace f16_gemv_detail;  // the job, the weight load and the stores (fp16_gemv_common.cuh)

namespace {

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

}  // namespace

namespace f16_gemv_detail {

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

template mma_kernel pick_mma<4>(const resolved& r);
template mma_kernel pick_mma<8>(const resolved& r);
template mma_kernel pick_mma_norm<4>(const resolved& r);
template mma_kernel pick_mma_norm<8>(const resolved& r);

}  // namespace f16_gemv_detail

}  // namespace qbench
