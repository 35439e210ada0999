// The kernel side of test_write_once.cpp (write_once_check.cuh).
#include "write_once_check.cuh"

#include "cuda/cuda_check.cuh"
#include "cuda/launch.cuh"
#include "cuda/write_once.cuh"

namespace qbench::test {

namespace {

QB_HOST_DEVICE constexpr std::uint32_t value_of(int phase, int cta, int word) {
    std::uint32_t h = static_cast<std::uint32_t>(phase) * 0x9e3779b1u ^ static_cast<std::uint32_t>(cta) * 0x85ebca6bu ^
                      static_cast<std::uint32_t>(word) * 0xc2b2ae35u;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return written_word(h);
}

__global__ void __launch_bounds__(k_write_once_threads) write_once_check_kernel(int phases, bool hint, bool wait,
                                                                                 unsigned* counter, std::uint32_t* words,
                                                                                 std::uint32_t* errors) {
    const int b = static_cast<int>(blockIdx.x), n = static_cast<int>(gridDim.x), t = static_cast<int>(threadIdx.x);
    std::uint32_t bad = 0;
    unsigned hints = 0;
    for (int p = 0; p < phases; ++p) {
        if (p > 0) {
            if (hint) grid_hint_among<1, k_write_once_threads>(counter, ++hints * static_cast<unsigned>(n));
            if (t < k_write_once_words) {
                for (const int other : {(b + 1) % n, (b + n / 2) % n, (b * 5 + 3) % n, (b + 7) % n}) {
                    // word t of `other` in phase p - 1, read as part of its 16-byte vector (the words are 16-aligned)
                    const std::size_t at = (static_cast<std::size_t>(p - 1) * n + other) * k_write_once_words + t;
                    const auto* vec = reinterpret_cast<const uint4*>(words + (at & ~std::size_t{3}));
                    const uint4 v = wait ? load_written(vec) : load_relaxed(vec);
                    const std::uint32_t got = (&v.x)[at & 3];
                    if (got != value_of(p - 1, other, t)) ++bad;
                }
            }
        }
        // Some CTAs store late, so that readers of this phase often find the words still unwritten.
        if ((b * 7 + p) % 5 == 0) {
            const long long until = clock64() + 3000 * ((b + p) % 7);
            while (clock64() < until) {
            }
        }
        if (t < k_write_once_words)
            store_once(words + (static_cast<std::size_t>(p) * n + b) * k_write_once_words + t, value_of(p, b, t));
    }
    if (t == 0) errors[b] = 0;
    __syncthreads();
    if (bad != 0) atomicAdd(&errors[b], bad);
}

}  // namespace

std::uint32_t write_once_value(int phase, int cta, int word) { return value_of(phase, cta, word); }

void launch_write_once_check(int ctas, int phases, bool hint, bool wait, unsigned* counter, std::uint32_t* words,
                             std::uint32_t* errors, cudaStream_t stream) {
    QB_CUDA_CHECK(cudaMemsetAsync(counter, 0, sizeof(unsigned), stream));
    QB_CUDA_CHECK(cudaMemsetAsync(words, 0xff, static_cast<std::size_t>(phases) * ctas * k_write_once_words * 4, stream));
    launch_options o{stream, false};
    o.cooperative = true;  // readers spin on other CTAs' words: every CTA must be resident
    launch_kernel(write_once_check_kernel, dim3(static_cast<unsigned>(ctas)), dim3(k_write_once_threads), 0, o, phases, hint,
                  wait, counter, words, errors);
}

int write_once_check_ctas_per_sm() {
    int per_sm = 0;
    QB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, write_once_check_kernel, k_write_once_threads, 0));
    return per_sm;
}

}  // namespace qbench::test
