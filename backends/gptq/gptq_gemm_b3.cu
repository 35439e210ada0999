// Fused GPTQ kernels for 3-bit weights, rows 1..8 (one translation unit per width keeps compile times apart).
#include "backends/gptq/gptq_gemm_kernel.cuh"

namespace qbench::gptq {

const fused_launcher* fused_launchers_b3() { return detail::fused_table<3>::launchers; }
const void* fused_kernel_b3(int rows) { return detail::fused_table<3>::kernel(rows); }

}  // namespace qbench::gptq
