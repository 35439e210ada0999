// Load-time quantization on the GPU (what Params4bit.cuda() / Int8Params.cuda() do as the FP16 weight arrives).
#include "backends/bnb/bnb_device_common.cuh"
#include "cuda/reduce.cuh"

#include <string>

namespace qbench::bnb {

namespace {

constexpr int k_threads = 256;

// One thread per 32-element chunk (64 bytes in, 16 bytes out); a block of bs elements is bs/32 consecutive threads
// (group), which always sit in one CTA because 256 is a multiple of bs/32 <= 128.
template <quant_type Q>
__global__ void __launch_bounds__(k_threads)
    quantize_4bit_kernel(const __half* __restrict__ values, std::int64_t n, int group_log2, std::uint8_t* packed,
                         float* absmax) {
    __shared__ float warp_max_s[k_threads / 32];
    pdl_wait();
    pdl_trigger();
    const std::int64_t chunk = static_cast<std::int64_t>(blockIdx.x) * k_threads + threadIdx.x;
    const std::int64_t first = chunk * 32;
    float v[32];
    if (first + 32 <= n) {
        const uint4* src = reinterpret_cast<const uint4*>(values + first);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const uint4 u = src[j];
            const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
            for (int p = 0; p < 4; ++p) {
                const float2 f = __half22float2(h[p]);
                v[8 * j + 2 * p] = f.x;
                v[8 * j + 2 * p + 1] = f.y;
            }
        }
    } else {
        // The tail (and threads past it) read zeros, the padding bitsandbytes quantizes too.
#pragma unroll
        for (int j = 0; j < 32; ++j) v[j] = first + j < n ? __half2float(values[first + j]) : 0.0f;
    }
    float m = 0.0f;
#pragma unroll
    for (int j = 0; j < 32; ++j) m = fmaxf(m, fabsf(v[j]));

    const int group = 1 << group_log2;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int off = 1; off < group && off < 32; off <<= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    if (group > 32) {  // uniform across the launch
        if (lane == 0) warp_max_s[warp] = m;
        __syncthreads();
        const int warps_per_group = group >> 5;
        const int w0 = warp & ~(warps_per_group - 1);
        for (int w = w0; w < w0 + warps_per_group; ++w) m = fmaxf(m, warp_max_s[w]);
    }
    if (first >= n) return;
    if ((chunk & (group - 1)) == 0) absmax[chunk >> group_log2] = m;

    const float inv = __fdiv_rn(1.0f, m);  // 0 -> inf, and 0 * inf = NaN quantizes like bitsandbytes' tree
    std::uint32_t words[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        std::uint32_t word = 0;
#pragma unroll
        for (int b = 0; b < 4; ++b) {
            const unsigned hi = detail::quantize_4bit<Q>(__fmul_rn(v[8 * j + 2 * b], inv));
            const unsigned lo = detail::quantize_4bit<Q>(__fmul_rn(v[8 * j + 2 * b + 1], inv));
            word |= ((hi << 4) | lo) << (8 * b);
        }
        words[j] = word;
    }
    const std::int64_t bytes_total = (n + 1) / 2;
    const std::int64_t byte0 = first / 2;
    if (byte0 + 16 <= bytes_total) {
        *reinterpret_cast<uint4*>(packed + byte0) = make_uint4(words[0], words[1], words[2], words[3]);
    } else {
#pragma unroll
        for (int j = 0; j < 16; ++j)
            if (byte0 + j < bytes_total) packed[byte0 + j] = static_cast<std::uint8_t>(words[j / 4] >> (8 * (j % 4)));
    }
}

// Deterministic mean: fixed per-thread strides and a fixed tree, in double.
__global__ void __launch_bounds__(1024) absmax_mean_kernel(const float* __restrict__ absmax, std::int64_t n,
                                                           float* offset) {
    __shared__ double partial[1024];
    pdl_wait();
    pdl_trigger();
    double s = 0.0;
    for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) s += static_cast<double>(absmax[i]);
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (static_cast<int>(threadIdx.x) < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) *offset = n > 0 ? static_cast<float>(partial[0] / static_cast<double>(n)) : 0.0f;
}

// One CTA per nested block: absmax2 = max |a - offset|, codes = dQuantize(code, (a - offset) * (1/absmax2)).
__global__ void __launch_bounds__(k_threads)
    double_quantize_kernel(const float* __restrict__ absmax, std::int64_t n, const float* offset_p,
                           const float* __restrict__ code, std::int64_t nested_bs, std::uint8_t* codes,
                           float* nested_absmax) {
    __shared__ float code_s[256];
    __shared__ float scratch[32];
    pdl_wait();
    pdl_trigger();
    code_s[threadIdx.x] = code[threadIdx.x];
    const float offset = *offset_p;
    const std::int64_t begin = static_cast<std::int64_t>(blockIdx.x) * nested_bs;
    const std::int64_t end = min(n, begin + nested_bs);
    float m = 0.0f;
    for (std::int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) m = fmaxf(m, fabsf(__fsub_rn(absmax[i], offset)));
    m = block_max(m, scratch);  // also orders the code_s stores before the reads below
    if (threadIdx.x == 0) nested_absmax[blockIdx.x] = m;
    const float inv = __fdiv_rn(1.0f, m);
    for (std::int64_t i = begin + threadIdx.x; i < end; i += blockDim.x)
        codes[i] = static_cast<std::uint8_t>(detail::quantize_dynamic(code_s, __fmul_rn(__fsub_rn(absmax[i], offset), inv)));
}

// One CTA per row: SCB = max |row|, CB = round_half_even(w * (127 / SCB)).
__global__ void __launch_bounds__(k_threads)
    quantize_int8_rows_kernel(const __half* __restrict__ values, std::int64_t cols, std::int8_t* cb, float* scb) {
    __shared__ float scratch[32];
    pdl_wait();
    pdl_trigger();
    const __half* row = values + static_cast<std::int64_t>(blockIdx.x) * cols;
    std::int8_t* out = cb + static_cast<std::int64_t>(blockIdx.x) * cols;
    float m = 0.0f;
    for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, fabsf(__half2float(row[c])));
    m = block_max(m, scratch);
    if (threadIdx.x == 0) scb[blockIdx.x] = m;
    const float scale = m > 0.0f ? __fdiv_rn(127.0f, m) : 0.0f;
    for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x)
        out[c] = static_cast<std::int8_t>(__float2int_rn(__fmul_rn(__half2float(row[c]), scale)));
}

}  // namespace

void launch_quantize_4bit(const __half* values, std::int64_t n, quant_type type, std::int64_t blocksize,
                          std::uint8_t* packed, float* absmax, const launch_options& o) {
    if (!valid_blocksize(blocksize))
        throw std::invalid_argument("launch_quantize_4bit: blocksize " + std::to_string(blocksize) +
                                    " is not a power of two in [32, 4096]");
    if (n <= 0) return;
    const std::int64_t chunks = (n + 31) / 32;
    const dim3 grid(static_cast<unsigned>((chunks + k_threads - 1) / k_threads));
    const int group_log2 = log2_exact(blocksize / 32);
    if (type == quant_type::nf4)
        launch_kernel(quantize_4bit_kernel<quant_type::nf4>, grid, dim3(k_threads), 0, o, values, n, group_log2, packed,
                      absmax);
    else
        launch_kernel(quantize_4bit_kernel<quant_type::fp4>, grid, dim3(k_threads), 0, o, values, n, group_log2, packed,
                      absmax);
}

void launch_absmax_mean(const float* absmax, std::int64_t n, float* offset, const launch_options& o) {
    launch_kernel(absmax_mean_kernel, dim3(1), dim3(1024), 0, o, absmax, n, offset);
}

void launch_double_quantize(const float* absmax, std::int64_t n, const float* offset, const float* code,
                            std::int64_t nested_blocksize, std::uint8_t* codes, float* nested_absmax,
                            const launch_options& o) {
    if (nested_blocksize <= 0) throw std::invalid_argument("launch_double_quantize: nested blocksize must be > 0");
    if (n <= 0) return;
    const dim3 grid(static_cast<unsigned>((n + nested_blocksize - 1) / nested_blocksize));
    launch_kernel(double_quantize_kernel, grid, dim3(k_threads), 0, o, absmax, n, offset, code, nested_blocksize,
                  codes, nested_absmax);
}

void launch_quantize_int8_rows(const __half* values, std::int64_t rows, std::int64_t cols, std::int8_t* cb,
                               float* scb, const launch_options& o) {
    if (rows <= 0) return;
    launch_kernel(quantize_int8_rows_kernel, dim3(static_cast<unsigned>(rows)), dim3(k_threads), 0, o, values, cols,
                  cb, scb);
}

}  // namespace qbench::bnb
