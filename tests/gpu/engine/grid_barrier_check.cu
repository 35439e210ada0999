// The kernel side of test_grid_barrier.cpp (grid_barrier_check.cuh).
#include "grid_barrier_check.cuh"

#include "cuda/cuda_check.cuh"
#include "cuda/grid_barrier.cuh"
#include "cuda/launch.cuh"

namespace qbench::test {

namespace {

/// Named: the CTA has a 9th warp that leaves at once, and the first 256 threads pass grid_barrier_among (named
/// barrier 1) instead of grid_barrier, which would wait for the missing warp forever.
template <bool Named>
__global__ void __launch_bounds__(288) grid_barrier_check_kernel(int rounds, bool barriers, unsigned* counter,
                                                                  std::uint32_t* slots, std::uint32_t* errors) {
    if (Named && threadIdx.x >= 256) return;  // the bystander warp
    const unsigned b = blockIdx.x, n = gridDim.x;
    auto barrier = [&](unsigned target) {
        if constexpr (Named) grid_barrier_among<1, 256>(counter, target);
        else grid_barrier(counter, target);
    };
    unsigned passed = 0;
    std::uint32_t bad = 0;
    for (int k = 1; k <= rounds; ++k) {
        // Slow some CTAs down by a varying amount, so that an early exit from a barrier would find stale slots.
        if ((b * 7u + static_cast<unsigned>(k)) % 5u == 0) {
            const long long until = clock64() + 2000 * ((b + static_cast<unsigned>(k)) % 7u);
            while (clock64() < until) {
            }
        }
        if (threadIdx.x == 0) *reinterpret_cast<volatile std::uint32_t*>(&slots[b]) = static_cast<std::uint32_t>(k) * 65536u + b;
        if (barriers) barrier(++passed * n);
        if (threadIdx.x == 0) {
            for (const unsigned other : {(b + 1) % n, (b + n / 2) % n}) {
                const std::uint32_t want = static_cast<std::uint32_t>(k) * 65536u + other;
                if (*reinterpret_cast<volatile std::uint32_t*>(&slots[other]) != want) ++bad;
            }
        }
        if (barriers) barrier(++passed * n);
    }
    if (threadIdx.x == 0) errors[b] = bad;
}

}  // namespace

void launch_grid_barrier_check(int ctas, int rounds, bool barriers, unsigned* counter, std::uint32_t* slots,
                               std::uint32_t* errors, cudaStream_t stream, bool named) {
    QB_CUDA_CHECK(cudaMemsetAsync(counter, 0, sizeof(unsigned), stream));
    launch_options o{stream, false};
    o.cooperative = true;
    launch_kernel(named ? grid_barrier_check_kernel<true> : grid_barrier_check_kernel<false>, dim3(static_cast<unsigned>(ctas)),
                  dim3(named ? 288 : 256), 0, o, rounds, barriers, counter, slots, errors);
}

int grid_barrier_check_ctas_per_sm() {
    int per_sm = 0;
    QB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, grid_barrier_check_kernel<true>, 288, 0));
    return per_sm;
}

}  // namespace qbench::test
