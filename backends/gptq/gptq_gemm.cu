// Dispatch of the fused GPTQ kernels, the split-K heuristic, and the x staging kernel (act-order gather and padding).
#include "backends/gptq/gptq_gemm.cuh"
#include "backends/gptq/gptq_gemm_mma.cuh"

#include <array>

namespace qbench::gptq {

namespace {
/// Index of a width in the per-width tables: 2, 3, 4, 8 -> 0..3; -1 otherwise.
constexpr int width_index(int bits) { return bits == 2 ? 0 : bits == 3 ? 1 : bits == 4 ? 2 : bits == 8 ? 3 : -1; }

using launcher_table_fn = const fused_launcher* (*)();
using kernel_fn = const void* (*)(int);
constexpr std::array<launcher_table_fn, 4> k_launcher_tables = {&fused_launchers_b2, &fused_launchers_b3,
                                                                 &fused_launchers_b4, &fused_launchers_b8};
constexpr std::array<kernel_fn, 4> k_kernel_tables = {&fused_kernel_b2, &fused_kernel_b3, &fused_kernel_b4,
                                                      &fused_kernel_b8};
using mma_table_fn = const mma_launcher* (*)();
using mma_kernel_fn = const void* (*)(int);
constexpr std::array<mma_table_fn, 4> k_mma_tables = {&mma_launchers_b2, &mma_launchers_b3, &mma_launchers_b4,
                                                      &mma_launchers_b8};
constexpr std::array<mma_kernel_fn, 4> k_mma_kernels = {&mma_kernel_b2, &mma_kernel_b3, &mma_kernel_b4, &mma_kernel_b8};
using mma_fused_table_fn = const mma_fused_launcher* (*)();
constexpr std::array<mma_fused_table_fn, 4> k_mma_fused_tables = {&mma_fused_launchers_b2, &mma_fused_launchers_b3,
                                                                  &mma_fused_launchers_b4, &mma_fused_launchers_b8};
constexpr std::array<mma_kernel_fn, 4> k_mma_fused_kernels = {&mma_fused_kernel_b2, &mma_fused_kernel_b3,
                                                              &mma_fused_kernel_b4, &mma_fused_kernel_b8};

__global__ void stage_x_kernel(const __half* x, std::int64_t ldx, std::int64_t rows, const std::int32_t* row_of,
                               std::int64_t k, std::int64_t padded_k, __half* out) {
    pdl_wait();
    pdl_trigger();
    const std::int64_t total = rows * padded_k;
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < total;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const std::int64_t r = i / padded_k, c = i % padded_k;
        __half v = __float2half_rn(0.0f);
        if (c < k) v = x[r * ldx + (row_of ? row_of[c] : c)];
        out[i] = v;
    }
}
}  // namespace

fused_launcher fused_launcher_for(int bits, int rows) {
    const int w = width_index(bits);
    if (w < 0 || rows < 1 || rows > k_fused_max_rows) return nullptr;
    return k_launcher_tables[static_cast<std::size_t>(w)]()[rows - 1];
}

const void* fused_kernel_for(int bits, int rows) {
    const int w = width_index(bits);
    if (w < 0) return nullptr;
    return k_kernel_tables[static_cast<std::size_t>(w)](rows);
}

mma_launcher mma_launcher_for(int bits, bool block_groups, mma_variant v) {
    const int w = width_index(bits);
    if (w < 0) return nullptr;
    return k_mma_tables[static_cast<std::size_t>(w)]()[2 * static_cast<int>(v) + (block_groups ? 1 : 0)];
}

const void* mma_kernel_for(int bits, bool block_groups, mma_variant v) {
    const int w = width_index(bits);
    if (w < 0) return nullptr;
    return k_mma_kernels[static_cast<std::size_t>(w)](2 * static_cast<int>(v) + (block_groups ? 1 : 0));
}

mma_fused_launcher mma_fused_launcher_for(int bits, bool block_groups, mma_fusion mode) {
    const int w = width_index(bits);
    if (w < 0) return nullptr;
    return k_mma_fused_tables[static_cast<std::size_t>(w)]()[2 * static_cast<int>(mode) + (block_groups ? 1 : 0)];
}

const void* mma_fused_kernel_for(int bits, bool block_groups, mma_fusion mode) {
    const int w = width_index(bits);
    if (w < 0) return nullptr;
    return k_mma_fused_kernels[static_cast<std::size_t>(w)](2 * static_cast<int>(mode) + (block_groups ? 1 : 0));
}

int choose_splits(int tiles, int slabs, int resident_ctas, int max_splits) {
    if (resident_ctas < 1) resident_ctas = 1;
    int best = 1;
    double best_score = -1.0;
    for (int sp = 1; sp <= max_splits; ++sp) {
        if (sp > 1 && slabs / sp < 16) break;
        const long long ctas = static_cast<long long>(tiles) * sp;
        const long long waves = (ctas + resident_ctas - 1) / resident_ctas;
        const double fill = static_cast<double>(ctas) / static_cast<double>(waves * resident_ctas);
        const double score = fill - 0.01 * (sp - 1);  // each split costs a partial-sum round trip
        if (score > best_score + 1e-9) {
            best = sp;
            best_score = score;
        }
    }
    return best;
}

void launch_stage_x(const __half* x, std::int64_t ldx, std::int64_t rows, const std::int32_t* row_of, std::int64_t k,
                    std::int64_t padded_k, __half* x_stage, const launch_options& o) {
    const std::int64_t total = rows * padded_k;
    const int threads = 256;
    const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((total + threads - 1) / threads, 1024));
    launch_kernel(stage_x_kernel, dim3(blocks), dim3(threads), 0, o, x, ldx, rows, row_of, k, padded_k, x_stage);
}

}  // namespace qbench::gptq
