// Fused-launch mma kernels (q/k/v in one launch; gate/up with the SwiGLU product) for 4-bit weights: one translation
// unit per width, apart from the single-linear kernels, keeps compile times apart.
#include "backends/gptq/gptq_gemm_mma.cuh"

namespace qbench::gptq {

const mma_fused_launcher* mma_fused_launchers_b4() { return detail::mma_fused_table<4>::launchers; }
const void* mma_fused_kernel_b4(int entry) { return detail::mma_fused_table<4>::kernel(entry); }

}  // namespace qbench::gptq
