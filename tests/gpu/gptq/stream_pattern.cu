// The memory-only probe of stream_pattern.cuh.
#include "stream_pattern.cuh"

#include "cuda/cuda_check.cuh"
#include "cuda/launch.cuh"

namespace qbench::gptq::test {

namespace {

template <int Streams, int k_stages, int Occ>
__global__ void __launch_bounds__(256, Occ) stream_pattern_kernel(const uint4* src, std::size_t vecs_per_warp, std::uint32_t* sink) {
    const int lane = static_cast<int>(threadIdx.x & 31);
    const std::size_t warp = (static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
    const std::size_t requests = vecs_per_warp / 32;          // 512-byte requests of this warp
    const std::size_t per_stream = requests / Streams;
    const uint4* base = src + warp * vecs_per_warp + lane;
    // Request r reads stream r % Streams at position r / Streams.
    auto address = [&](std::size_t r) { return base + ((r % Streams) * per_stream + r / Streams) * 32; };
    uint4 ring[k_stages];
#pragma unroll
    for (int i = 0; i < k_stages; ++i)
        if (static_cast<std::size_t>(i) < requests) ring[i] = __ldcs(address(i));
    pdl_wait();
    pdl_trigger();
    std::uint32_t acc = 0;
    for (std::size_t b = 0; b < requests; b += k_stages) {
#pragma unroll
        for (int i = 0; i < k_stages; ++i) {
            if (b + i < requests) {
                acc ^= ring[i].x ^ ring[i].y ^ ring[i].z ^ ring[i].w;
                if (b + i + k_stages < requests) ring[i] = __ldcs(address(b + i + k_stages));
            }
        }
    }
    for (int o = 16; o >= 1; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) sink[warp] = acc;
}


template <int Stages, int Occ>
void launch_with(const uint4* s, std::size_t vecs_per_warp, int streams, int ctas, std::uint32_t* sink, const launch_options& o) {
    const dim3 grid(static_cast<unsigned>(ctas)), block(256);
    switch (streams) {
    case 1: launch_kernel(stream_pattern_kernel<1, Stages, Occ>, grid, block, 0, o, s, vecs_per_warp, sink); break;
    case 2: launch_kernel(stream_pattern_kernel<2, Stages, Occ>, grid, block, 0, o, s, vecs_per_warp, sink); break;
    case 4: launch_kernel(stream_pattern_kernel<4, Stages, Occ>, grid, block, 0, o, s, vecs_per_warp, sink); break;
    default: launch_kernel(stream_pattern_kernel<16, Stages, Occ>, grid, block, 0, o, s, vecs_per_warp, sink); break;
    }
}
}  // namespace

void launch_stream_pattern(const void* src, std::size_t bytes, int streams, int stages, int ctas_per_sm, int sms,
                           std::uint32_t* sink, cudaStream_t stream, bool pdl) {
    const int ctas = ctas_per_sm * sms;
    const std::size_t warps = static_cast<std::size_t>(ctas) * 8;
    const std::size_t vecs_per_warp = bytes / 16 / warps / (32 * 16) * (32 * 16);  // whole requests, divisible by 16 streams
    const launch_options o{stream, pdl};
    const auto* s = static_cast<const uint4*>(src);
    if (ctas_per_sm >= 4) {
        if (stages >= 16) launch_with<16, 4>(s, vecs_per_warp, streams, ctas, sink, o);
        else launch_with<8, 4>(s, vecs_per_warp, streams, ctas, sink, o);
    } else {
        if (stages >= 32) launch_with<32, 2>(s, vecs_per_warp, streams, ctas, sink, o);
        else if (stages >= 16) launch_with<16, 2>(s, vecs_per_warp, streams, ctas, sink, o);
        else launch_with<8, 2>(s, vecs_per_warp, streams, ctas, sink, o);
    }
}

}  // namespace qbench::gptq::test
