#include "gpu_bnb_producer.hpp"

#include "cuda/launch.cuh"
#include "gpu_bnb_util.hpp"

namespace qbench::bnb::test {

namespace {

__global__ void slow_producer_kernel(const __half* src, __half* dst, std::int64_t n, long long spin_cycles) {
    pdl_trigger();  // dependents may launch now; they must still wait for this grid before reading dst
    const long long t0 = clock64();
    while (clock64() - t0 < spin_cycles) {
    }
    for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

}  // namespace

void launch_slow_producer(const __half* src, __half* dst, std::int64_t n, long long spin_cycles, cudaStream_t stream) {
    slow_producer_kernel<<<1, 256, 0, stream>>>(src, dst, n, spin_cycles);
    cuda_ok(cudaGetLastError(), "slow producer launch");
}

}  // namespace qbench::bnb::test
