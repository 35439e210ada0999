// 4-bit -> fp16 dequantization: the first half of bitsandbytes' batch > 1 strategy (dequantize, then cuBLAS).
#include "backends/bnb/bnb_device_common.cuh"

namespace qbench::bnb {

namespace {

constexpr int k_threads = 256;

// One thread per 32-element chunk: 16 packed bytes in, 64 bytes of fp16 out. A chunk never straddles a block
// (blocks are multiples of 32 elements and start at multiples of 32), so one absmax serves the whole chunk.
__global__ void __launch_bounds__(k_threads) dequantize_4bit_kernel(device_4bit_view w, __half* __restrict__ out) {
    __shared__ float code_s[16];
    if (threadIdx.x < 16) code_s[threadIdx.x] = w.code[threadIdx.x];
    __syncthreads();
    pdl_wait();
    pdl_trigger();
    const std::int64_t n = w.rows * w.cols;
    const std::int64_t chunk = static_cast<std::int64_t>(blockIdx.x) * k_threads + threadIdx.x;
    const std::int64_t first = chunk * 32;
    if (first >= n) return;
    const float a = detail::block_absmax(w, first >> w.blocksize_log2);
    const std::int64_t bytes_total = (n + 1) / 2;
    std::uint32_t words[4];
    if (first / 2 + 16 <= bytes_total) {
        const uint4 u = detail::load_nc16(w.packed + first / 2);
        words[0] = u.x;
        words[1] = u.y;
        words[2] = u.z;
        words[3] = u.w;
    } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) words[j] = 0;
#pragma unroll
        for (int j = 0; j < 16; ++j)
            if (first / 2 + j < bytes_total)
                words[j / 4] |= static_cast<std::uint32_t>(w.packed[first / 2 + j]) << (8 * (j % 4));
    }
    // Element 2j (high nibble) goes to the low half of output word j: memory order.
    std::uint32_t o[16];
#pragma unroll
    for (int j = 0; j < 16; ++j) {
        const unsigned byte = (words[j / 4] >> (8 * (j % 4))) & 0xffu;
        const unsigned even = __half_as_ushort(__float2half_rn(__fmul_rn(code_s[byte >> 4], a)));
        const unsigned odd = __half_as_ushort(__float2half_rn(__fmul_rn(code_s[byte & 15u], a)));
        o[j] = even | (odd << 16);
    }
    if (first + 32 <= n) {
        uint4* dst = reinterpret_cast<uint4*>(out + first);
#pragma unroll
        for (int q = 0; q < 4; ++q) dst[q] = make_uint4(o[4 * q], o[4 * q + 1], o[4 * q + 2], o[4 * q + 3]);
    } else {
#pragma unroll
        for (int j = 0; j < 32; ++j)
            if (first + j < n) out[first + j] = __ushort_as_half(static_cast<unsigned short>(o[j / 2] >> (16 * (j & 1))));
    }
}

}  // namespace

void launch_dequantize_4bit(const device_4bit_view& w, __half* out, const launch_options& o) {
    const std::int64_t n = w.rows * w.cols;
    if (n <= 0) return;
    const std::int64_t chunks = (n + 31) / 32;
    launch_kernel(dequantize_4bit_kernel, dim3(static_cast<unsigned>((chunks + k_threads - 1) / k_threads)),
                  dim3(k_threads), 0, o, w, out);
}

}  // namespace qbench::bnb
