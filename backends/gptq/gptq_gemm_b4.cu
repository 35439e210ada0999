// Fused GPTQ kernels for 4-bit weights, rows 1..8, and the mma kernels v2 (one translation unit per width keeps compile times apart).
#include "backends/gptq/gptq_gemm_kernel.cuh"
#include "backends/gptq/gptq_gemm_mma.cuh"

namespace qbench::gptq {

const fused_launcher* fused_launchers_b4() { return detail::fused_table<4>::launchers; }
const void* fused_kernel_b4(int rows) { return detail::fused_table<4>::kernel(rows); }
const mma_launcher* mma_launchers_b4() { return detail::mma_table<4>::launchers; }
const void* mma_kernel_b4(int variant) { return detail::mma_table<4>::kernel(variant); }

}  // namespace qbench::gptq
