// The kernel side of test_bulk_ring.cpp (bulk_ring_check.cuh).
#include "bulk_ring_check.cuh"

#include "cuda/bulk_ring.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/launch.cuh"

#include <stdexcept>

namespace qbench::test {

namespace {

constexpr std::uint32_t k_stage_bytes = 4096, k_stage_vecs = k_stage_bytes / 16;
constexpr int k_consumer_warps = 4;

template <int Ring>
__global__ void __launch_bounds__(32 * (k_consumer_warps + 1)) bulk_ring_copy_kernel(const uint4* src, uint4* dst,
                                                                                      std::uint32_t stages_per_cta) {
    __shared__ __align__(128) uint4 stages[Ring * k_stage_vecs];
    __shared__ std::uint64_t full[Ring], empty[Ring];
    const auto ring = bulk_ring<Ring, k_stage_bytes>::make(stages, full, empty, k_consumer_warps);
    const int tid = static_cast<int>(threadIdx.x), w = tid >> 5, lane = tid & 31;
    const std::size_t region = static_cast<std::size_t>(blockIdx.x) * stages_per_cta * k_stage_vecs;
    if (w == k_consumer_warps) {  // the producer
        if (lane != 0) return;
        for (std::uint32_t i = 0; i < stages_per_cta; ++i) ring.produce(i, src + region + i * k_stage_vecs);
        return;
    }
    for (std::uint32_t i = 0; i < stages_per_cta; ++i) {
        const uint4* stage = ring.acquire(i);
        if ((blockIdx.x * 3u + static_cast<unsigned>(w) * 5u + i) % 7u == 0) {  // dawdle before reading
            const long long until = clock64() + 500 * ((i + static_cast<unsigned>(w)) % 5u);
            while (clock64() < until) {
            }
        }
        for (std::uint32_t v = static_cast<std::uint32_t>(w) * 64 + static_cast<std::uint32_t>(lane); v < (w + 1u) * 64u; v += 32)
            dst[region + i * k_stage_vecs + v] = stage[v];
        ring.release(i, lane);
    }
}

}  // namespace

void launch_bulk_ring_copy(int ctas, int ring, std::uint32_t stages_per_cta, const void* src, void* dst,
                           cudaStream_t stream) {
    const launch_options o{stream, false};
    const auto* s = static_cast<const uint4*>(src);
    auto* d = static_cast<uint4*>(dst);
    const dim3 grid(static_cast<unsigned>(ctas)), block(32 * (k_consumer_warps + 1));
    if (ring == 1) launch_kernel(bulk_ring_copy_kernel<1>, grid, block, 0, o, s, d, stages_per_cta);
    else if (ring == 3) launch_kernel(bulk_ring_copy_kernel<3>, grid, block, 0, o, s, d, stages_per_cta);
    else throw std::invalid_argument("bulk ring check: a ring of 1 or 3 stages");
}

}  // namespace qbench::test
