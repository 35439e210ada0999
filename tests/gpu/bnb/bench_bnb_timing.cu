// The streaming read bandwidth that bench_bnb's frac_stream counter divides by: measured once at start-up on this
// device (main() stores it in g_stream_gbs), so a kernel's fraction is against what this card really streams.
#include "bench_bnb_timing.cuh"

#include <algorithm>
#include <vector>

namespace bnb_bench {

double g_stream_gbs = 0;

namespace {

__global__ void stream_read_kernel(const uint4* p, std::uint64_t n, unsigned* sink) {
    unsigned acc = 0;
    for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
        const uint4 v = __ldg(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) *sink = acc;  // keeps the loads alive
}

}  // namespace

double measure_stream_gbs() {
    const std::uint64_t bytes = 4ull << 30;
    dev<uint4> buf(bytes / 16);
    dev<unsigned> sink(1);
    fill_bytes(buf.get(), bytes, 7);
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    std::vector<float> ms;
    for (int i = 0; i < 12; ++i) {
        cudaEventRecord(a);
        stream_read_kernel<<<sms * 8, 512>>>(buf.get(), bytes / 16, sink.get());
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        float t = 0;
        cudaEventElapsedTime(&t, a, b);
        if (i >= 2) ms.push_back(t);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(ms.begin(), ms.end());
    return static_cast<double>(bytes) / (ms[ms.size() / 2] * 1e-3) / 1e9;
}

}  // namespace bnb_bench
