// Fused 4-bit dequantize + GEMV for small batches (bitsandbytes' kgemm_4bit_inference_naive, rethought for
// bandwidth): y[m, N] = x[m, K] . W^T with W in NF4/FP4 blocks, K % 32 == 0.
//
// Work split: a CTA of 256 threads is two row slots of 128 threads; a slot owns R consecutive output rows and its
// threads stride over the rows' 16-byte chunks (32 weights, always inside one absmax block), so a 4096-wide row is
// exactly one chunk per thread and every load is a coalesced 16-byte load. CTAs are persistent (grid = resident
// CTAs) and walk the row groups; the first weights are fetched before the programmatic-dependent-launch wait, so
// the weight stream starts while the previous kernel drains.
//
// Decode: a byte holds two codes (even element high). A 256-entry table maps a byte straight to the half2
// (code[hi], code[lo]) that lines up with the activation half2 (x[2j], x[2j+1]); it lives in shared memory with one
// copy per lane (entry e of lane l at word e*32 + l), so the 32 lanes of a warp always hit 32 different banks:
// one conflict-free LDS per two weights. Products are summed in half2 over 8 weights, then in fp32; the block's
// absmax multiplies the chunk's fp32 sum once.
#include "backends/bnb/bnb_device_common.cuh"
#include "cuda/reduce.cuh"

#include <array>
#include <stdexcept>

namespace qbench::bnb {

namespace {

constexpr int k_threads = 256;  // also the number of byte values: one table entry per thread
constexpr int k_slot_threads = 128;
constexpr int k_slots = k_threads / k_slot_threads;
constexpr int k_slot_warps = k_slot_threads / 32;
constexpr std::size_t k_lut_bytes = 256 * 32 * sizeof(std::uint32_t);  // 32 KiB

__device__ __forceinline__ __half2 as_half2(std::uint32_t u) {
    __half2 h;
    static_assert(sizeof(h) == sizeof(u));
    memcpy(&h, &u, sizeof(u));
    return h;
}

// Sum over one 16-byte chunk of one row of code(w) * x in half2 per word, fp32 across words.
__device__ __forceinline__ float chunk_dot(const std::uint32_t* lut_lane, const uint4& wv, const __half2* xs) {
    const std::uint32_t words[4] = {wv.x, wv.y, wv.z, wv.w};
    float s = 0.0f;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        const std::uint32_t wd = words[q];
        __half2 h = __hmul2(as_half2(lut_lane[(wd & 0xffu) << 5]), xs[4 * q]);
        h = __hfma2(as_half2(lut_lane[((wd >> 8) & 0xffu) << 5]), xs[4 * q + 1], h);
        h = __hfma2(as_half2(lut_lane[((wd >> 16) & 0xffu) << 5]), xs[4 * q + 2], h);
        h = __hfma2(as_half2(lut_lane[(wd >> 24) << 5]), xs[4 * q + 3], h);
        const float2 f = __half22float2(h);
        s += f.x + f.y;
    }
    return s;
}

__device__ __forceinline__ void load_x_chunk(const __half* x, __half2* xs) {
    const uint4* src = reinterpret_cast<const uint4*>(x);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const uint4 u = __ldg(src + j);
        xs[4 * j + 0] = as_half2(u.x);
        xs[4 * j + 1] = as_half2(u.y);
        xs[4 * j + 2] = as_half2(u.z);
        xs[4 * j + 3] = as_half2(u.w);
    }
}

template <int R>
struct chunk_regs {
    uint4 w[R];
    float absmax[R];
};

// Loads chunk c of the R rows starting at row0 (rows past N read as zero weights with absmax 0).
template <int R>
__device__ __forceinline__ void load_chunk(const device_4bit_view& w, std::int64_t row0, std::int64_t c,
                                           chunk_regs<R>& regs) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const std::int64_t row = row0 + r;
        if (row < w.rows) {
            regs.w[r] = detail::load_nc16(w.packed + row * (w.cols / 2) + c * 16);
            regs.absmax[r] = detail::block_absmax(w, (row * w.cols + c * 32) >> w.blocksize_log2);
        } else {
            regs.w[r] = make_uint4(0, 0, 0, 0);
            regs.absmax[r] = 0.0f;
        }
    }
}

template <int MB, int R>
__global__ void __launch_bounds__(k_threads)
    gemv_4bit_kernel(device_4bit_view w, const __half* __restrict__ x, int m, __half* __restrict__ y) {
    extern __shared__ std::uint32_t lut[];
    __shared__ float partial[k_slots][k_slot_warps][R * MB];

    // Byte -> (code[hi], code[lo]) as half2: one entry per thread (256 threads, 256 byte values), then 32 copies
    // of each written with lane-contiguous 16-byte stores (conflict-free; a warp reads 4 entries, broadcast).
    __shared__ std::uint32_t pairs[256];
    {
        const int byte = threadIdx.x;
        const __half2 h = __halves2half2(__float2half_rn(w.code[byte >> 4]), __float2half_rn(w.code[byte & 15]));
        memcpy(&pairs[byte], &h, sizeof(h));
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 256 * 8; i += k_threads) {
        const std::uint32_t u = pairs[i >> 3];
        reinterpret_cast<uint4*>(lut)[i] = make_uint4(u, u, u, u);
    }

    const int slot = threadIdx.x / k_slot_threads;
    const int t = threadIdx.x % k_slot_threads;
    const int lane = threadIdx.x & 31;
    const int warp_in_slot = t >> 5;
    const std::uint32_t* lut_lane = lut + lane;
    const std::int64_t n_rows = w.rows, k = w.cols;
    const std::int64_t chunks = k / 32;
    const std::int64_t rows_per_unit = static_cast<std::int64_t>(k_slots) * R;
    const std::int64_t units = (n_rows + rows_per_unit - 1) / rows_per_unit;

    // Software pipeline over (unit, chunk): the next chunk's weights are in flight while this one is computed.
    std::int64_t unit = blockIdx.x;
    std::int64_t c = t;
    chunk_regs<R> cur;
    if (unit < units && c < chunks) load_chunk<R>(w, unit * rows_per_unit + slot * R, c, cur);
    __syncthreads();  // the table is complete
    pdl_wait();       // x is written by the previous kernel
    pdl_trigger();

    for (; unit < units; unit += gridDim.x) {
        const std::int64_t row0 = unit * rows_per_unit + slot * R;
        float acc[R][MB];
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int b = 0; b < MB; ++b) acc[r][b] = 0.0f;

        for (c = t; c < chunks; c += k_slot_threads) {
            // Prefetch: the next chunk of this row group, or the first chunk of this thread's next row group.
            chunk_regs<R> next;
            const bool more_here = c + k_slot_threads < chunks;
            const std::int64_t next_unit = unit + gridDim.x;
            if (more_here)
                load_chunk<R>(w, row0, c + k_slot_threads, next);
            else if (next_unit < units && t < chunks)
                load_chunk<R>(w, next_unit * rows_per_unit + slot * R, t, next);

            __half2 xs[16];
            if constexpr (MB == 1) load_x_chunk(x + c * 32, xs);
#pragma unroll
            for (int r = 0; r < R; ++r) {
#pragma unroll
                for (int b = 0; b < MB; ++b) {
                    if (b < m) {
                        if constexpr (MB > 1) load_x_chunk(x + b * k + c * 32, xs);
                        acc[r][b] = fmaf(chunk_dot(lut_lane, cur.w[r], xs), cur.absmax[r], acc[r][b]);
                    }
                }
            }
            cur = next;
        }

        // Reduce over the slot's 128 threads: shuffles within warps, shared memory across the 4 warps.
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int b = 0; b < MB; ++b) {
                const float v = warp_sum(acc[r][b]);
                if (lane == 0) partial[slot][warp_in_slot][r * MB + b] = v;
            }
        __syncthreads();
        if (t < R * MB) {
            const int r = t / MB, b = t % MB;
            const std::int64_t row = row0 + r;
            if (b < m && row < n_rows) {
                float s = 0.0f;
#pragma unroll
                for (int wi = 0; wi < k_slot_warps; ++wi) s += partial[slot][wi][t];
                y[b * n_rows + row] = __float2half_rn(s);
            }
        }
        __syncthreads();  // partial is reused by the next row group
    }
}

// ---- v2: warp-owned row groups, deep loads, one-instruction table addressing ------------------------------------
//
// Each warp owns R consecutive rows at a time; lane l reads chunks l, l+32, ..., U of them per row before the first
// use (R*U*16 bytes in flight per thread), and a warp shuffle ends each row: no block-wide barrier after the table
// is built. The table stride is 256 bytes per byte value, so the shared-memory address of (byte, lane) is
// byte << 8 | lane * 4: a single byte permute (PRMT) of the packed word and the lane offset. Each 256-byte entry
// uses its first 128 bytes for the 32 lane copies; the second half holds the staging copy used to build them.
constexpr int k_v2_threads = 512;
constexpr int k_v2_warps = k_v2_threads / 32;
constexpr std::size_t k_v2_lut_bytes = 256 * 256;  // 64 KiB

// Byte j of `word` as a table address: (byte << 8) | lane4 (lane4 = lane * 4 < 256 in the low byte).
template <int J>
__device__ __forceinline__ std::uint32_t lut_address(std::uint32_t word, std::uint32_t lane4) {
    return __byte_perm(word, lane4, 0x5504u | (J << 4));
}

__device__ __forceinline__ __half2 lut_load(const unsigned char* lut, std::uint32_t address) {
    return as_half2(*reinterpret_cast<const std::uint32_t*>(lut + address));
}

// 16 bytes of one row: the 16 (code[hi], code[lo]) pairs.
__device__ __forceinline__ void decode16(const unsigned char* lut, std::uint32_t lane4, const uint4& wv, __half2* d) {
    const std::uint32_t words[4] = {wv.x, wv.y, wv.z, wv.w};
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        d[4 * q + 0] = lut_load(lut, lut_address<0>(words[q], lane4));
        d[4 * q + 1] = lut_load(lut, lut_address<1>(words[q], lane4));
        d[4 * q + 2] = lut_load(lut, lut_address<2>(words[q], lane4));
        d[4 * q + 3] = lut_load(lut, lut_address<3>(words[q], lane4));
    }
}

// sum of d * x: half2 over 8 weights (4 pairs), fp32 across.
__device__ __forceinline__ float dot16(const __half2* d, const __half2* xs) {
    float s = 0.0f;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        __half2 h = __hmul2(d[4 * q], xs[4 * q]);
        h = __hfma2(d[4 * q + 1], xs[4 * q + 1], h);
        h = __hfma2(d[4 * q + 2], xs[4 * q + 2], h);
        h = __hfma2(d[4 * q + 3], xs[4 * q + 3], h);
        const float2 f = __half22float2(h);
        s += f.x + f.y;
    }
    return s;
}

template <int R, int U>
struct batch_regs {
    uint4 w[R][U];
    float absmax[R][U];
};

template <int R, int U>
__device__ __forceinline__ void load_batch(const device_4bit_view& w, std::int64_t row0, std::int64_t c0,
                                           std::int64_t chunks, batch_regs<R, U>& b) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
        const std::int64_t c = c0 + 32 * u;
#pragma unroll
        for (int r = 0; r < R; ++r) {
            const std::int64_t row = row0 + r;
            if (c < chunks && row < w.rows) {
                b.w[r][u] = detail::load_nc16(w.packed + row * (w.cols / 2) + c * 16);
                b.absmax[r][u] = detail::block_absmax(w, (row * w.cols + c * 32) >> w.blocksize_log2);
            } else {
                b.w[r][u] = make_uint4(0, 0, 0, 0);
                b.absmax[r][u] = 0.0f;
            }
        }
    }
}

template <int MB, int R, int U>
__global__ void __launch_bounds__(k_v2_threads, 2)
    gemv_4bit_warp_kernel(device_4bit_view w, const __half* __restrict__ x, int m, __half* __restrict__ y) {
    extern __shared__ __align__(16) unsigned char lut_bytes[];
    auto* lut_words = reinterpret_cast<std::uint32_t*>(lut_bytes);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const std::uint32_t lane4 = static_cast<std::uint32_t>(lane) * 4u;
    const std::int64_t chunks = w.cols / 32;
    const std::int64_t groups = (w.rows + R - 1) / R;
    const std::int64_t warps_total = static_cast<std::int64_t>(gridDim.x) * k_v2_warps;
    std::int64_t g = static_cast<std::int64_t>(blockIdx.x) * k_v2_warps + warp;

    // The first weights are requested before anything else: their latency covers the table build and the wait.
    batch_regs<R, U> cur;
    if (g < groups) load_batch<R, U>(w, g * R, lane, chunks, cur);

    if (threadIdx.x < 256) {
        const int byte = threadIdx.x;
        const __half2 h = __halves2half2(__float2half_rn(w.code[byte >> 4]), __float2half_rn(w.code[byte & 15]));
        memcpy(&lut_words[byte * 64 + 32], &h, sizeof(h));
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 256 * 8; i += k_v2_threads) {
        const int e = i >> 3;
        const std::uint32_t u = lut_words[e * 64 + 32];
        reinterpret_cast<uint4*>(lut_bytes)[e * 16 + (i & 7)] = make_uint4(u, u, u, u);
    }
    __syncthreads();
    pdl_wait();
    pdl_trigger();

    for (; g < groups; g += warps_total) {
        const std::int64_t row0 = g * R;
        float acc[R][MB];
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int b = 0; b < MB; ++b) acc[r][b] = 0.0f;
        for (std::int64_t c0 = lane;;) {
#pragma unroll
            for (int u = 0; u < U; ++u) {
                const std::int64_t c = c0 + 32 * u;
                if (c >= chunks) break;
                __half2 xs[16];
                if constexpr (MB == 1) load_x_chunk(x + c * 32, xs);
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    __half2 d[16];
                    decode16(lut_bytes, lane4, cur.w[r][u], d);
#pragma unroll
                    for (int b = 0; b < MB; ++b) {
                        if (b < m) {
                            if constexpr (MB > 1) load_x_chunk(x + b * w.cols + c * 32, xs);
                            acc[r][b] = fmaf(dot16(d, xs), cur.absmax[r][u], acc[r][b]);
                        }
                    }
                }
            }
            c0 += 32 * U;
            if (c0 >= chunks) break;
            load_batch<R, U>(w, row0, c0, chunks, cur);
        }
        // Next row group's first batch goes out before this one's reduction.
        if (g + warps_total < groups) load_batch<R, U>(w, (g + warps_total) * R, lane, chunks, cur);
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int b = 0; b < MB; ++b) {
                const float v = warp_sum(acc[r][b]);
                if (lane == 0 && b < m && row0 + r < w.rows) y[b * w.rows + row0 + r] = __float2half_rn(v);
            }
    }
}

template <int MB, int R, int U>
int resident_warp_ctas() {
    static const int ctas = [] {
        int device = 0, sms = 0, per_sm = 0;
        QB_CUDA_CHECK(cudaGetDevice(&device));
        QB_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
        QB_CUDA_CHECK(cudaFuncSetAttribute(gemv_4bit_warp_kernel<MB, R, U>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(k_v2_lut_bytes)));
        QB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_4bit_warp_kernel<MB, R, U>,
                                                                    k_v2_threads, k_v2_lut_bytes));
        return std::max(1, sms * std::max(1, per_sm));
    }();
    return ctas;
}

template <int MB, int R, int U>
void launch_warp_variant(const device_4bit_view& w, const __half* x, std::int64_t m, __half* y,
                         const launch_options& o) {
    const std::int64_t groups = (w.rows + R - 1) / R;
    const std::int64_t ctas_needed = (groups + k_v2_warps - 1) / k_v2_warps;
    const auto grid = static_cast<unsigned>(std::min<std::int64_t>(ctas_needed, resident_warp_ctas<MB, R, U>()));
    launch_kernel(gemv_4bit_warp_kernel<MB, R, U>, dim3(grid), dim3(k_v2_threads), k_v2_lut_bytes, o, w, x,
                  static_cast<int>(m), y);
}

using gemv_kernel_t = void (*)(device_4bit_view, const __half*, int, __half*);

template <int MB, int R>
int resident_ctas() {
    // Persistent grid: as many CTAs as fit at once (the 32 KiB table and registers decide), computed once.
    static const int ctas = [] {
        int device = 0, sms = 0, per_sm = 0;
        QB_CUDA_CHECK(cudaGetDevice(&device));
        QB_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
        QB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemv_4bit_kernel<MB, R>, k_threads,
                                                                    k_lut_bytes));
        return std::max(1, sms * std::max(1, per_sm));
    }();
    return ctas;
}

template <int MB, int R>
void launch_variant(const device_4bit_view& w, const __half* x, std::int64_t m, __half* y, const launch_options& o) {
    const std::int64_t rows_per_unit = static_cast<std::int64_t>(k_slots) * R;
    const std::int64_t units = (w.rows + rows_per_unit - 1) / rows_per_unit;
    const auto grid = static_cast<unsigned>(std::min<std::int64_t>(units, resident_ctas<MB, R>()));
    launch_kernel(gemv_4bit_kernel<MB, R>, dim3(grid), dim3(k_threads), k_lut_bytes, o, w, x, static_cast<int>(m), y);
}

using launcher_t = void (*)(const device_4bit_view&, const __half*, std::int64_t, __half*, const launch_options&);

// Batch-1 variants by id (gemv_4bit_variant_name): ids below gemv_team_configs() are the team kernels
// (bnb_gemv_team_4bit.cu), then v2 and v1 for comparison.
constexpr launcher_t k_v2_batch1 = launch_warp_variant<1, 2, 2>;
constexpr launcher_t k_v1_batch1 = launch_variant<1, 2>;
constexpr int k_v2_id = k_gemv_4bit_v2_id, k_v1_id = k_gemv_4bit_v1_id;

constexpr std::array<launcher_t, k_gemv_4bit_max_rows + 1> k_batched = {
    nullptr,
    launch_warp_variant<1, 2, 2>,
    launch_warp_variant<2, 1, 2>,
    launch_warp_variant<3, 1, 2>,
    launch_warp_variant<4, 1, 2>,
    launch_warp_variant<5, 1, 2>,
    launch_warp_variant<6, 1, 2>,
    launch_warp_variant<7, 1, 2>,
    launch_warp_variant<8, 1, 2>,
};
constexpr std::array<launcher_t, k_gemv_4bit_max_rows + 1> k_batched_v1 = {
    nullptr,
    launch_variant<1, 2>,
    launch_variant<2, 1>,
    launch_variant<3, 1>,
    launch_variant<4, 1>,
    launch_variant<5, 1>,
    launch_variant<6, 1>,
    launch_variant<7, 1>,
    launch_variant<8, 1>,
};

}  // namespace

bool gemv_4bit_supported(const device_4bit_view& w, std::int64_t m) {
    return w.cols % 32 == 0 && w.cols > 0 && m >= 1 && m <= k_gemv_4bit_max_rows;
}

void launch_gemv_4bit(const device_4bit_view& w, const __half* x, std::int64_t m, __half* y, const launch_options& o,
                      int variant) {
    if (!gemv_4bit_supported(w, m))
        throw std::invalid_argument("launch_gemv_4bit: needs K % 32 == 0 and 1 <= m <= 8 (K " +
                                    std::to_string(w.cols) + ", m " + std::to_string(m) + ")");
    if (variant < 0 || variant >= k_gemv_4bit_variants)
        throw std::invalid_argument("launch_gemv_4bit: variant " + std::to_string(variant) + " does not exist");
    if (w.rows <= 0) return;
    if (m == 1) {
        if (variant < gemv_team_configs() && gemv_4bit_team_supported(w))
            launch_gemv_4bit_team(w, x, y, o, variant);
        else
            (variant == k_v1_id ? k_v1_batch1 : k_v2_batch1)(w, x, m, y, o);
        return;
    }
    // Batches: the warp kernel (v2) by default; the v1 id selects the v1 kernel here too.
    (variant == k_v1_id ? k_batched_v1 : k_batched)[static_cast<std::size_t>(m)](w, x, m, y, o);
}

const char* gemv_4bit_variant_name(int variant) {
    if (variant >= 0 && variant < gemv_team_configs()) return gemv_team_config_name(variant);
    if (variant == k_v2_id) return "warp-r2-u2";
    if (variant == k_v1_id) return "block-r2";
    return "?";
}

}  // namespace qbench::bnb
