// LLM.int8() on the GPU: activation quantization with outlier-column detection, an int8 GEMV for small batches
// (dp4a, outlier columns handled in fp32 inside the same loop), the cuBLASLt int8 x int8 -> int32 GEMM for larger
// batches (with a plain kernel where cuBLASLt refuses) and its dequantization + fp16 outlier epilogue.
//
// Unlike bitsandbytes there is no host synchronization: outlier columns are a device bitmask (and, for the GEMM
// epilogue, an ordered device list), so a decode step stays capturable in a CUDA graph.
#include "backends/bnb/bnb_device_common.cuh"
#include "cuda/reduce.cuh"

#include <array>
#include <stdexcept>
#include <string>

namespace qbench::bnb {

namespace {

// ---- activation quantization -------------------------------------------------------------------------------------

constexpr int k_quant_threads = 512;

// One CTA per activation row; every CTA derives the column outlier mask from all rows (small: m * k values), CTA 0
// also publishes the mask and the ordered outlier list.
// Ordered compaction of the outlier-column bit mask (one bit per input column) into a list of column indices, run
// by one warp: 32 mask words per step, an exclusive scan of their popcounts gives each lane its output position.
__device__ __forceinline__ void compact_outlier_mask(const std::uint32_t* mask_s, std::int64_t words, int lane,
                                                     std::int32_t* outlier_cols, std::int32_t* outlier_count) {
    int base = 0;
    for (std::int64_t w0 = 0; w0 < words; w0 += 32) {
        const std::int64_t wi = w0 + lane;
        std::uint32_t bits = wi < words ? mask_s[wi] : 0u;
        const int cnt = __popc(bits);
        int incl = cnt;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            const int v = __shfl_up_sync(0xffffffffu, incl, off);
            if (lane >= off) incl += v;
        }
        int pos = base + incl - cnt;
        while (bits) {
            const int b = __ffs(bits) - 1;
            outlier_cols[pos++] = static_cast<std::int32_t>(wi * 32 + b);
            bits &= bits - 1;
        }
        base += __shfl_sync(0xffffffffu, incl, 31);
    }
    if (lane == 0) *outlier_count = base;
}

__global__ void __launch_bounds__(k_quant_threads)
    quantize_activations_kernel(const __half* __restrict__ x, int m, std::int64_t k, float threshold,
                                int8_act_buffers out) {
    extern __shared__ std::uint32_t mask_s[];
    __shared__ float scratch[32];
    pdl_wait();
    pdl_trigger();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const std::int64_t words = (k + 31) / 32;
    const int row = blockIdx.x;

    for (std::int64_t wi = warp; wi < words; wi += warps) {
        const std::int64_t col = wi * 32 + lane;
        bool outlier = false;
        if (threshold > 0.0f && col < k)
            for (int r = 0; r < m; ++r) outlier |= fabsf(__half2float(x[r * k + col])) >= threshold;
        const std::uint32_t bits = __ballot_sync(0xffffffffu, outlier);
        if (lane == 0) {
            mask_s[wi] = bits;
            if (row == 0 && out.outlier_mask != nullptr) out.outlier_mask[wi] = bits;
        }
    }

    const __half* xr = x + static_cast<std::int64_t>(row) * k;
    float amax = 0.0f;
    for (std::int64_t c = threadIdx.x; c < k; c += blockDim.x) {
        const float v = fabsf(__half2float(xr[c]));
        if (!(threshold > 0.0f && v >= threshold)) amax = fmaxf(amax, v);
    }
    amax = block_max(amax, scratch);  // its barriers also publish mask_s
    if (threadIdx.x == 0) out.row_stats[row] = amax;
    const float scale = amax > 0.0f ? __fdiv_rn(127.0f, amax) : 0.0f;
    std::int8_t* qr = out.q + static_cast<std::int64_t>(row) * k;
    for (std::int64_t c = threadIdx.x; c < k; c += blockDim.x) {
        const bool outlier = (mask_s[c >> 5] >> (c & 31)) & 1u;
        qr[c] = outlier ? std::int8_t{0}
                        : static_cast<std::int8_t>(__float2int_rn(__fmul_rn(__half2float(xr[c]), scale)));
    }

    if (row != 0 || warp != 0 || out.outlier_cols == nullptr) return;
    compact_outlier_mask(mask_s, words, lane, out.outlier_cols, out.outlier_count);
}

// The common case (k % 8 == 0, k <= 8 * 4 * 512): every element is loaded once, 8 columns per 16-byte load, kept
// in registers from the outlier test to the quantized store; one block reduction, no second pass over x.
constexpr int k_vec_per_thread = 4;

__device__ __forceinline__ unsigned outlier_bits8(const uint4& u, float threshold) {
    const std::uint32_t words[4] = {u.x, u.y, u.z, u.w};
    unsigned bits = 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        __half2 h;
        memcpy(&h, &words[j], sizeof(h));
        const float2 f = __half22float2(h);
        bits |= (fabsf(f.x) >= threshold ? 1u : 0u) << (2 * j);
        bits |= (fabsf(f.y) >= threshold ? 1u : 0u) << (2 * j + 1);
    }
    return bits;
}

__global__ void __launch_bounds__(k_quant_threads)
    quantize_activations_vec_kernel(const __half* __restrict__ x, int m, std::int64_t k, float threshold,
                                    int8_act_buffers out) {
    extern __shared__ std::uint32_t mask_s[];
    __shared__ float scratch[32];
    pdl_wait();
    pdl_trigger();
    const int row = blockIdx.x;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const std::int64_t vecs = k / 8;
    const bool decompose = threshold > 0.0f;
    uint4 own[k_vec_per_thread];
    unsigned flags[k_vec_per_thread];
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < k_vec_per_thread; ++i) {
        const std::int64_t v = threadIdx.x + static_cast<std::int64_t>(i) * k_quant_threads;
        flags[i] = 0;
        own[i] = make_uint4(0, 0, 0, 0);
        if (v >= vecs) continue;
        own[i] = *reinterpret_cast<const uint4*>(x + static_cast<std::int64_t>(row) * k + 8 * v);
        if (decompose)
            for (int r = 0; r < m; ++r) {
                const uint4 u = r == row ? own[i] : *reinterpret_cast<const uint4*>(x + static_cast<std::int64_t>(r) * k + 8 * v);
                flags[i] |= outlier_bits8(u, threshold);
            }
        const std::uint32_t words[4] = {own[i].x, own[i].y, own[i].z, own[i].w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            __half2 h;
            memcpy(&h, &words[j], sizeof(h));
            const float2 f = __half22float2(h);
            if (!(decompose && fabsf(f.x) >= threshold)) amax = fmaxf(amax, fabsf(f.x));
            if (!(decompose && fabsf(f.y) >= threshold)) amax = fmaxf(amax, fabsf(f.y));
        }
    }
    // Mask words: 4 consecutive vectors (32 columns) per word, combined across 4 adjacent lanes.
#pragma unroll
    for (int i = 0; i < k_vec_per_thread; ++i) {
        const std::int64_t v = threadIdx.x + static_cast<std::int64_t>(i) * k_quant_threads;
        std::uint32_t word = flags[i] << (8 * (lane & 3));
        word |= __shfl_xor_sync(0xffffffffu, word, 1);
        word |= __shfl_xor_sync(0xffffffffu, word, 2);
        if ((lane & 3) == 0 && v < vecs) {
            mask_s[v / 4] = word;
            if (row == 0 && out.outlier_mask != nullptr) out.outlier_mask[v / 4] = word;
        }
    }
    amax = block_max(amax, scratch);  // its barriers also publish mask_s
    if (threadIdx.x == 0) out.row_stats[row] = amax;
    const float scale = amax > 0.0f ? __fdiv_rn(127.0f, amax) : 0.0f;
#pragma unroll
    for (int i = 0; i < k_vec_per_thread; ++i) {
        const std::int64_t v = threadIdx.x + static_cast<std::int64_t>(i) * k_quant_threads;
        if (v >= vecs) continue;
        const std::uint32_t words[4] = {own[i].x, own[i].y, own[i].z, own[i].w};
        std::uint32_t packed[2] = {0, 0};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            __half2 h;
            memcpy(&h, &words[j], sizeof(h));
            const float2 f = __half22float2(h);
            const int q0 = (flags[i] >> (2 * j)) & 1u ? 0 : __float2int_rn(__fmul_rn(f.x, scale));
            const int q1 = (flags[i] >> (2 * j + 1)) & 1u ? 0 : __float2int_rn(__fmul_rn(f.y, scale));
            packed[j / 2] |= ((static_cast<std::uint32_t>(q0) & 0xffu) | ((static_cast<std::uint32_t>(q1) & 0xffu) << 8))
                             << (16 * (j % 2));
        }
        *reinterpret_cast<uint2*>(out.q + static_cast<std::int64_t>(row) * k + 8 * v) = make_uint2(packed[0], packed[1]);
    }

    if (row != 0 || warp != 0 || out.outlier_cols == nullptr) return;
    compact_outlier_mask(mask_s, (k + 31) / 32, lane, out.outlier_cols, out.outlier_count);
}

// ---- int8 GEMV ---------------------------------------------------------------------------------------------------

constexpr int k_gemv_threads = 256;

template <int R>
struct int8_chunk {
    uint4 w[R];
};

template <int R>
__device__ __forceinline__ void load_int8_chunk(const std::int8_t* cb, std::int64_t n, std::int64_t k, std::int64_t row0,
                                                std::int64_t c, int8_chunk<R>& regs) {
#pragma unroll
    for (int r = 0; r < R; ++r)
        regs.w[r] = row0 + r < n ? detail::load_nc16(cb + (row0 + r) * k + c * 16) : make_uint4(0, 0, 0, 0);
}

__device__ __forceinline__ int dot16(const uint4& a, const uint4& b, int acc) {
    acc = __dp4a(static_cast<int>(a.x), static_cast<int>(b.x), acc);
    acc = __dp4a(static_cast<int>(a.y), static_cast<int>(b.y), acc);
    acc = __dp4a(static_cast<int>(a.z), static_cast<int>(b.z), acc);
    return __dp4a(static_cast<int>(a.w), static_cast<int>(b.w), acc);
}

__device__ __forceinline__ int signed_byte(const uint4& v, int j) {
    const std::uint32_t words[4] = {v.x, v.y, v.z, v.w};
    return static_cast<int>(static_cast<std::int8_t>((words[j >> 2] >> (8 * (j & 3))) & 0xffu));
}

// A CTA owns R consecutive rows; its 256 threads stride over the rows' 16-byte chunks (4096 int8 = one chunk per
// thread). Persistent grid, weights prefetched before the dependent-launch wait, as in the 4-bit GEMV.
template <int MB, int R>
__global__ void __launch_bounds__(k_gemv_threads)
    gemv_int8_kernel(const std::int8_t* __restrict__ cb, const float* __restrict__ scb, std::int64_t n, std::int64_t k,
                     const __half* __restrict__ x, int8_act_buffers act, int m, bool outliers, __half* __restrict__ y) {
    __shared__ int ipart[k_gemv_threads / 32][R * MB];
    __shared__ float fpart[k_gemv_threads / 32][R * MB];
    const int t = threadIdx.x, lane = t & 31, warp = t >> 5;
    const std::int64_t chunks = k / 16;
    const std::int64_t units = (n + R - 1) / R;

    std::int64_t unit = blockIdx.x;
    int8_chunk<R> cur;
    if (unit < units && t < chunks) load_int8_chunk<R>(cb, n, k, unit * R, t, cur);
    pdl_wait();
    pdl_trigger();

    for (; unit < units; unit += gridDim.x) {
        const std::int64_t row0 = unit * R;
        int iacc[R][MB];
        float facc[R][MB];
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int b = 0; b < MB; ++b) {
                iacc[r][b] = 0;
                facc[r][b] = 0.0f;
            }

        for (std::int64_t c = t; c < chunks; c += k_gemv_threads) {
            int8_chunk<R> next;
            if (c + k_gemv_threads < chunks)
                load_int8_chunk<R>(cb, n, k, row0, c + k_gemv_threads, next);
            else if (unit + gridDim.x < units && t < chunks)
                load_int8_chunk<R>(cb, n, k, (unit + gridDim.x) * R, t, next);

            std::uint32_t obits = 0;
            if (outliers) obits = (__ldg(act.outlier_mask + (c >> 1)) >> ((c & 1) * 16)) & 0xffffu;
#pragma unroll
            for (int b = 0; b < MB; ++b) {
                if (b < m) {
                    const uint4 a = __ldg(reinterpret_cast<const uint4*>(act.q + b * k + c * 16));
#pragma unroll
                    for (int r = 0; r < R; ++r) iacc[r][b] = dot16(cur.w[r], a, iacc[r][b]);
                    // Outlier columns (rare): fp16 activation times the int8 weight, scaled by SCB/127 at the end.
                    for (std::uint32_t bits = obits; bits; bits &= bits - 1) {
                        const int j = __ffs(bits) - 1;
                        const float xv = __half2float(x[b * k + c * 16 + j]);
#pragma unroll
                        for (int r = 0; r < R; ++r) facc[r][b] = fmaf(xv, static_cast<float>(signed_byte(cur.w[r], j)), facc[r][b]);
                    }
                }
            }
            cur = next;
        }

#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int b = 0; b < MB; ++b) {
                int iv = iacc[r][b];
#pragma unroll
                for (int off = 16; off > 0; off >>= 1) iv += __shfl_xor_sync(0xffffffffu, iv, off);
                const float fv = warp_sum(facc[r][b]);
                if (lane == 0) {
                    ipart[warp][r * MB + b] = iv;
                    fpart[warp][r * MB + b] = fv;
                }
            }
        __syncthreads();
        if (t < R * MB) {
            const int r = t / MB, b = t % MB;
            const std::int64_t row = row0 + r;
            if (b < m && row < n) {
                int is = 0;
                float fs = 0.0f;
#pragma unroll
                for (int wi = 0; wi < k_gemv_threads / 32; ++wi) {
                    is += ipart[wi][t];
                    fs += fpart[wi][t];
                }
                const float s = scb[row];
                const float out = static_cast<float>(is) * (act.row_stats[b] * s * k_int8_dequant) + fs * (s / 127.0f);
                y[b * n + row] = __float2half_rn(out);
            }
        }
        __syncthreads();
    }
}

template <int MB, int R>
int resident_gemv_ctas() {
    static const int ctas = [] {
        int device = 0, sms = 0, per_sm = 0;
        QB_CUDA_CHECK(cudaGetDevice(&device));
        QB_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
        QB_CUDA_CHECK(
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_int8_kernel<MB, R>, k_gemv_threads, 0));
        return std::max(1, sms * std::max(1, per_sm));
    }();
    return ctas;
}

template <int MB, int R>
void launch_gemv_variant(const std::int8_t* cb, const float* scb, std::int64_t n, std::int64_t k, const __half* x,
                         const int8_act_buffers& act, std::int64_t m, bool outliers, __half* y,
                         const launch_options& o) {
    const std::int64_t units = (n + R - 1) / R;
    const auto grid = static_cast<unsigned>(std::min<std::int64_t>(units, resident_gemv_ctas<MB, R>()));
    launch_kernel(gemv_int8_kernel<MB, R>, dim3(grid), dim3(k_gemv_threads), 0, o, cb, scb, n, k, x, act,
                  static_cast<int>(m), outliers, y);
}

using gemv_launcher_t = void (*)(const std::int8_t*, const float*, std::int64_t, std::int64_t, const __half*,
                                 const int8_act_buffers&, std::int64_t, bool, __half*, const launch_options&);
// Four rows per CTA at batch 1 (64 bytes of weights in flight per thread), fewer as the batch grows.
constexpr std::array<gemv_launcher_t, k_gemv_int8_max_rows + 1> k_int8_gemv = {
    nullptr,
    launch_gemv_variant<1, 4>,
    launch_gemv_variant<2, 4>,
    launch_gemv_variant<3, 2>,
    launch_gemv_variant<4, 2>,
    launch_gemv_variant<5, 2>,
    launch_gemv_variant<6, 2>,
    launch_gemv_variant<7, 1>,
    launch_gemv_variant<8, 1>,
};

// v2: warp-owned row groups (R rows), U 16-byte chunks per lane per row in flight, warp shuffles only; the first
// weights are requested before the dependent-launch wait. Preferred over the block-owned v1 above.
constexpr int k_gemv2_threads = 256;
constexpr int k_gemv2_warps = k_gemv2_threads / 32;

template <int R, int U>
struct int8_batch {
    uint4 w[R][U];
};

template <int R, int U>
__device__ __forceinline__ void load_int8_batch(const std::int8_t* cb, std::int64_t n, std::int64_t k, std::int64_t row0,
                                                std::int64_t c0, std::int64_t chunks, int8_batch<R, U>& b) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const std::int64_t c = c0 + 32 * u;
#pragma unroll
        for (int r = 0; r < R; ++r)
            b.w[r][u] = (c < chunks && row0 + r < n) ? detail::load_nc16(cb + (row0 + r) * k + c * 16)
                                                     : make_uint4(0, 0, 0, 0);
    }
}

template <int MB, int R, int U>
__global__ void __launch_bounds__(k_gemv2_threads)
    gemv_int8_warp_kernel(const std::int8_t* __restrict__ cb, const float* __restrict__ scb, std::int64_t n,
                          std::int64_t k, const __half* __restrict__ x, int8_act_buffers act, int m, bool outliers,
                          __half* __restrict__ y) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const std::int64_t chunks = k / 16;
    const std::int64_t groups = (n + R - 1) / R;
    const std::int64_t warps_total = static_cast<std::int64_t>(gridDim.x) * k_gemv2_warps;
    std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * k_gemv2_warps + warp;
    int8_batch<R, U> cur;
    if (g < groups) load_int8_batch<R, U>(cb, n, k, g * R, lane, chunks, cur);
    pdl_wait();
    pdl_trigger();

    for (; g < groups; g += warps_total) {
        const std::int64_t row0 = g * R;
        int iacc[R][MB];
        float facc[R][MB];
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int b = 0; b < MB; ++b) {
                iacc[r][b] = 0;
                facc[r][b] = 0.0f;
            }
        for (std::int64_t c0 = lane;;) {
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const std::int64_t c = c0 + 32 * u;
                if (c >= chunks) break;
                std::uint32_t obits = 0;
                if (outliers) obits = (__ldg(act.outlier_mask + (c >> 1)) >> ((c & 1) * 16)) & 0xffffu;
#pragma unroll
                for (int b = 0; b < MB; ++b) {
                    if (b < m) {
                        const uint4 a = __ldg(reinterpret_cast<const uint4*>(act.q + b * k + c * 16));
#pragma unroll
                        for (int r = 0; r < R; ++r) iacc[r][b] = dot16(cur.w[r][u], a, iacc[r][b]);
                        for (std::uint32_t bits = obits; bits; bits &= bits - 1) {
                            const int j = __ffs(bits) - 1;
                            const float xv = __half2float(x[b * k + c * 16 + j]);
#pragma unroll
                            for (int r = 0; r < R; ++r)
                                facc[r][b] = fmaf(xv, static_cast<float>(signed_byte(cur.w[r][u], j)), facc[r][b]);
                        }
                    }
                }
            }
            c0 += 32 * U;
            if (c0 >= chunks) break;
            load_int8_batch<R, U>(cb, n, k, row0, c0, chunks, cur);
        }
        if (g + warps_total < groups) load_int8_batch<R, U>(cb, n, k, (g + warps_total) * R, lane, chunks, cur);
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int b = 0; b < MB; ++b) {
                int iv = iacc[r][b];
#pragma unroll
                for (int off = 16; off > 0; off >>= 1) iv += __shfl_xor_sync(0xffffffffu, iv, off);
                const float fv = warp_sum(facc[r][b]);
                const std::int64_t row = row0 + r;
                if (lane == 0 && b < m && row < n) {
                    const float s = scb[row];
                    const float out = static_cast<float>(iv) * (act.row_stats[b] * s * k_int8_dequant) + fv * (s / 127.0f);
                    y[b * n + row] = __float2half_rn(out);
                }
            }
    }
}

template <int MB, int R, int U>
int resident_gemv2_ctas() {
    static const int ctas = [] {
        int device = 0, sms = 0, per_sm = 0;
        QB_CUDA_CHECK(cudaGetDevice(&device));
        QB_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
        QB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_int8_warp_kernel<MB, R, U>,
                                                                    k_gemv2_threads, 0));
        return std::max(1, sms * std::max(1, per_sm));
    }();
    return ctas;
}

template <int MB, int R, int U>
void launch_gemv2_variant(const std::int8_t* cb, const float* scb, std::int64_t n, std::int64_t k, const __half* x,
                          const int8_act_buffers& act, std::int64_t m, bool outliers, __half* y,
                          const launch_options& o) {
    const std::int64_t groups = (n + R - 1) / R;
    const std::int64_t ctas_needed = (groups + k_gemv2_warps - 1) / k_gemv2_warps;
    const auto grid = static_cast<unsigned>(std::min<std::int64_t>(ctas_needed, resident_gemv2_ctas<MB, R, U>()));
    launch_kernel(gemv_int8_warp_kernel<MB, R, U>, dim3(grid), dim3(k_gemv2_threads), 0, o, cb, scb, n, k, x, act,
                  static_cast<int>(m), outliers, y);
}

// Batch 1: 2 rows x 4 chunks per lane (128 bytes of weights in flight per thread); larger batches fewer rows.
constexpr std::array<gemv_launcher_t, k_gemv_int8_max_rows + 1> k_int8_gemv2 = {
    nullptr,
    launch_gemv2_variant<1, 2, 4>,
    launch_gemv2_variant<2, 2, 2>,
    launch_gemv2_variant<3, 2, 2>,
    launch_gemv2_variant<4, 1, 2>,
    launch_gemv2_variant<5, 1, 2>,
    launch_gemv2_variant<6, 1, 2>,
    launch_gemv2_variant<7, 1, 2>,
    launch_gemv2_variant<8, 1, 2>,
};

// ---- GEMM epilogue -----------------------------------------------------------------------------------------------

constexpr int k_epi_n = 64;
constexpr int k_epi_m = 16;
constexpr int k_epi_j = 32;

// Tile of 64 outputs x 16 rows; the outlier columns are staged 32 at a time in shared memory (weights dequantized
// once per tile, activations once per tile), then y = acc * rs * SCB / 127^2 + outlier part.
__global__ void __launch_bounds__(256)
    int8_epilogue_kernel(const std::int32_t* __restrict__ acc, const std::int8_t* __restrict__ cb,
                         const float* __restrict__ scb, std::int64_t n, std::int64_t k, const __half* __restrict__ x,
                         int8_act_buffers act, int m, __half* __restrict__ y) {
    __shared__ float wo[k_epi_n][k_epi_j + 1];
    __shared__ float xo[k_epi_m][k_epi_j + 1];
    pdl_wait();
    pdl_trigger();
    const int t = threadIdx.x;
    const int nl = t % k_epi_n, ml0 = (t / k_epi_n) * 4;
    const std::int64_t n0 = static_cast<std::int64_t>(blockIdx.x) * k_epi_n;
    const std::int64_t m0 = static_cast<std::int64_t>(blockIdx.y) * k_epi_m;
    const int count = *act.outlier_count;
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int j0 = 0; j0 < count; j0 += k_epi_j) {
        for (int i = t; i < k_epi_n * k_epi_j; i += 256) {
            const int r = i / k_epi_j, j = i % k_epi_j;
            const std::int64_t row = n0 + r;
            wo[r][j] = (row < n && j0 + j < count) ? static_cast<float>(cb[row * k + act.outlier_cols[j0 + j]]) : 0.0f;
        }
        for (int i = t; i < k_epi_m * k_epi_j; i += 256) {
            const int r = i / k_epi_j, j = i % k_epi_j;
            const std::int64_t mr = m0 + r;
            xo[r][j] = (mr < m && j0 + j < count) ? __half2float(x[mr * k + act.outlier_cols[j0 + j]]) : 0.0f;
        }
        __syncthreads();
#pragma unroll 4
        for (int j = 0; j < k_epi_j; ++j) {
            const float wv = wo[nl][j];
#pragma unroll
            for (int i = 0; i < 4; ++i) s[i] = fmaf(xo[ml0 + i][j], wv, s[i]);
        }
        __syncthreads();
    }
    const std::int64_t col = n0 + nl;
    if (col >= n) return;
    const float sc = scb[col];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const std::int64_t mr = m0 + ml0 + i;
        if (mr >= m) continue;
        const float out = static_cast<float>(acc[mr * n + col]) * (act.row_stats[mr] * sc * k_int8_dequant) +
                          s[i] * (sc / 127.0f);
        y[mr * n + col] = __float2half_rn(out);
    }
}

// Plain int32 product where cuBLASLt refuses (k % 4 != 0 and the like): one thread per output.
__global__ void __launch_bounds__(256)
    int8_matmul_plain_kernel(const std::int8_t* __restrict__ q, const std::int8_t* __restrict__ cb, std::int64_t m,
                             std::int64_t n, std::int64_t k, std::int32_t* __restrict__ acc) {
    pdl_wait();
    pdl_trigger();
    const std::int64_t col = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const std::int64_t row = blockIdx.y;
    if (col >= n) return;
    const std::int8_t* a = q + row * k;
    const std::int8_t* b = cb + col * k;
    int s = 0;
    for (std::int64_t i = 0; i < k; ++i) s += static_cast<int>(a[i]) * static_cast<int>(b[i]);
    acc[row * n + col] = s;
}

}  // namespace

void launch_quantize_int8_activations(const __half* x, std::int64_t m, std::int64_t k, float threshold,
                                      const int8_act_buffers& buffers, const launch_options& o) {
    if (m <= 0) return;
    const std::size_t smem = static_cast<std::size_t>((k + 31) / 32) * sizeof(std::uint32_t);
    if (smem > 48 * 1024) throw std::invalid_argument("launch_quantize_int8_activations: k too large");
    const bool aligned = reinterpret_cast<std::uintptr_t>(x) % 16 == 0 && reinterpret_cast<std::uintptr_t>(buffers.q) % 8 == 0;
    if (k % 8 == 0 && k <= 8 * k_vec_per_thread * k_quant_threads && aligned)
        launch_kernel(quantize_activations_vec_kernel, dim3(static_cast<unsigned>(m)), dim3(k_quant_threads), smem, o,
                      x, static_cast<int>(m), k, threshold, buffers);
    else
        launch_kernel(quantize_activations_kernel, dim3(static_cast<unsigned>(m)), dim3(k_quant_threads), smem, o, x,
                      static_cast<int>(m), k, threshold, buffers);
}

bool gemv_int8_supported(std::int64_t k) { return k > 0 && k % 16 == 0; }

void launch_gemv_int8(const std::int8_t* cb, const float* scb, std::int64_t n, std::int64_t k, const __half* x,
                      const int8_act_buffers& act, std::int64_t m, __half* y, const launch_options& o, int variant) {
    if (!gemv_int8_supported(k) || m < 1 || m > k_gemv_int8_max_rows)
        throw std::invalid_argument("launch_gemv_int8: needs k % 16 == 0 and 1 <= m <= 8 (k " + std::to_string(k) +
                                    ", m " + std::to_string(m) + ")");
    if (n <= 0) return;
    const bool outliers = act.outlier_mask != nullptr;
    if (variant < 0 || variant > 2) throw std::invalid_argument("launch_gemv_int8: variant must be 0, 1 or 2");
    // Default: the block-owned kernel at batch 1 (measured faster with outlier columns: 14.4/22.9/23.7 us against
    // 16.2/26.1/38.2 us at the three 7B shapes, PERF_NOTES.md), the warp-owned one for batches.
    const bool block_owned = variant == 1 || (variant == 0 && m == 1);
    (block_owned ? k_int8_gemv : k_int8_gemv2)[static_cast<std::size_t>(m)](cb, scb, n, k, x, act, m, outliers, y, o);
}

void launch_int8_gemm_epilogue(const std::int32_t* acc, const std::int8_t* cb, const float* scb, std::int64_t n,
                               std::int64_t k, const __half* x, const int8_act_buffers& act, std::int64_t m, __half* y,
                               const launch_options& o) {
    if (m <= 0 || n <= 0) return;
    const dim3 grid(static_cast<unsigned>((n + k_epi_n - 1) / k_epi_n), static_cast<unsigned>((m + k_epi_m - 1) / k_epi_m));
    launch_kernel(int8_epilogue_kernel, grid, dim3(256), 0, o, acc, cb, scb, n, k, x, act, static_cast<int>(m), y);
}

void launch_int8_matmul_plain(const std::int8_t* q, const std::int8_t* cb, std::int64_t m, std::int64_t n,
                              std::int64_t k, std::int32_t* acc, const launch_options& o) {
    if (m <= 0 || n <= 0) return;
    launch_kernel(int8_matmul_plain_kernel, dim3(static_cast<unsigned>((n + 255) / 256), static_cast<unsigned>(m)),
                  dim3(256), 0, o, q, cb, m, n, k, acc);
}

bool cublaslt_int8_gemm(cublasLtHandle_t handle, const std::int8_t* q, const std::int8_t* cb, std::int32_t* acc,
                        std::int64_t m, std::int64_t n, std::int64_t k, void* workspace, std::uint64_t workspace_bytes,
                        cudaStream_t stream) {
    // IMMA needs the inner dimension (the leading dimension of both int8 operands) to be a multiple of 4.
    if (handle == nullptr || k % 4 != 0 || m <= 0 || n <= 0) return false;
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a_desc = nullptr, b_desc = nullptr, c_desc = nullptr;
    cublasLtMatmulPreference_t pref = nullptr;
    bool ok = false;
    auto cleanup = [&] {
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
        if (c_desc) cublasLtMatrixLayoutDestroy(c_desc);
        if (b_desc) cublasLtMatrixLayoutDestroy(b_desc);
        if (a_desc) cublasLtMatrixLayoutDestroy(a_desc);
        if (op) cublasLtMatmulDescDestroy(op);
    };
    try {
        // Column-major view: C[n, m] = op(A)[n, k] . B[k, m] with A = CB (k x n, ld k) transposed and B = q (k x m).
        QB_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32I, CUDA_R_32I));
        const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
        QB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
        QB_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
        QB_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a_desc, CUDA_R_8I, static_cast<std::uint64_t>(k),
                                                   static_cast<std::uint64_t>(n), k));
        QB_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b_desc, CUDA_R_8I, static_cast<std::uint64_t>(k),
                                                   static_cast<std::uint64_t>(m), k));
        QB_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&c_desc, CUDA_R_32I, static_cast<std::uint64_t>(n),
                                                   static_cast<std::uint64_t>(m), n));
        QB_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
        std::uint64_t ws = workspace ? workspace_bytes : 0;
        QB_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                             sizeof(ws)));
        cublasLtMatmulHeuristicResult_t result{};
        int found = 0;
        const cublasStatus_t hs =
            cublasLtMatmulAlgoGetHeuristic(handle, op, a_desc, b_desc, c_desc, c_desc, pref, 1, &result, &found);
        if (hs == CUBLAS_STATUS_SUCCESS && found > 0) {
            const std::int32_t alpha = 1, beta = 0;
            QB_CUBLAS_CHECK(cublasLtMatmul(handle, op, &alpha, cb, a_desc, q, b_desc, &beta, acc, c_desc, acc, c_desc,
                                           &result.algo, workspace, ws, stream));
            ok = true;
        }
    } catch (...) {
        cleanup();
        throw;
    }
    cleanup();
    return ok;
}

}  // namespace qbench::bnb
