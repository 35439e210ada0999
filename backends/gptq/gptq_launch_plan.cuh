#pragma once
// How GPTQ layers are launched, decided on the host (gptq_device_linear.cu asks): which fused kernel a layer loads
// for, whether it fuses, and how many CTAs each kernel gets (one wave of resident CTAs, occupancy queried once per
// device, kernel and size). Internal to the GPTQ backend.
#include "backends/gptq/gptq_device_layout.hpp"
#include "backends/gptq/gptq_gemm_a.cuh"
#include "backends/gptq/gptq_gemm_mma.cuh"

#include "cuda/device_context.cuh"

#include <cstddef>
#include <cstdint>

namespace qbench::gptq {

/// CTAs of the fused kernel resident on the whole GPU for (bits, rows), queried once per device.
int resident_ctas(const device_context& context, int bits, int rows);

/// Which fused kernel a layer is loaded for (QBENCH_GPTQ_KERNEL). Unset: v3 (weights as the mma A operand,
/// gptq_gemm_a.cuh) for every layer whose k-blocks each lie in one group (2, 3, 4 and 8 bits), v2 (mma layout,
/// gptq_gemm_mma.cuh) for the rest. Measured (PERF_NOTES.md): v3 is faster than v2 at 4 bits (H100, 7B step linears
/// -13% at beam 1, sixth session), at 2 bits (eighth) and at 3 bits (ninth: 430 -> 553 tok/s end to end, paired);
/// at 8 bits it was slower in the sixth session (H100, an early v3), and is 19% faster now on the H200 (twelfth:
/// 7B step with the norm kernels 2.47 -> 2.00 ms at beam 1). "v2": v2 everywhere; "v1": the half2 kernels of
/// gptq_gemm_kernel.cuh over the slab layout.
enum class kernel_version { v1, v2, v3 };
kernel_version chosen_kernel(const layout_plan& plan);

/// Resident CTAs per SM of a kernel at a block size and dynamic shared-memory size, queried once per (device,
/// kernel, size).
int resident_per_sm(const device_context& context, const void* kernel, int threads, std::size_t smem);

/// mtiles per CTA the v3 kernel is planned for (one wave at two CTAs per SM), an upper bound for shared memory.
int a_tiles_guess(const device_context& context, int mtiles);

/// CTAs of a v3 kernel resident on the whole GPU at a dynamic shared-memory size (QBENCH_GPTQ_CTAS_PER_SM
/// overrides the occupancy).
int a_resident(const device_context& context, const void* kernel, std::size_t smem);

/// CTAs of the v3 kernel at a row count: one wave of resident CTAs (2 per SM), each owning at most k_a_max_tiles
/// mtiles and no more than its shared memory (activations + partial sums) allows.
int a_ctas(const device_context& context, int bits, bool bypass_l1, int mtiles, int rows, int kblocks);

/// Fused q/k/v and gate/up launches (fused_linear), QBENCH_GPTQ_FUSE: "0" never, "1" always, unset: where measured
/// faster than separate launches, i.e. v3 layers and v2 layers of 8 bits. v2's fused kernel (pieces that switch
/// pointers inside the loop) was 2-5% slower at 2/3/4 bits on the H200 (BM_decode_7b_fused, 2026-11-22) and faster at
/// 8 bits (H200 1.4%; H100 3.5%, seventh session); v3's group launch gives each CTA one member and runs the single
/// kernel's loop unchanged (7B step linears -10.5% at beam 1 on the H100; PERF_NOTES.md, seventh session).
bool gptq_fusion_enabled(bool v3, std::int64_t bits);

/// CTAs of a v3 group launch shared out to its members: one wave of `resident` CTAs, each member's share chosen so
/// that the busiest CTA owns as few mtiles as possible (a member with more mtiles per CTA gets the next CTA), at least
/// one per member and enough to keep every CTA within k_a_max_tiles and the shared memory.
void a_share_ctas(int resident, int rows, int kblocks, a_args& a);

/// The v2 variant: QBENCH_GPTQ_OCC=3 three CTAs per SM; else the default shape (two), its weights read past L1
/// with QBENCH_GPTQ_LOAD=na.
mma_variant chosen_mma_variant();

/// CTAs of the v2 kernel for a layer at a row count: one wave of resident CTAs (QBENCH_GPTQ_CTAS_PER_SM overrides
/// the occupancy), at most k_mma_max_tiles tiles per CTA.
int mma_ctas(const device_context& context, int bits, bool block_groups, mma_variant variant, int ntiles, int rows);

/// CTAs of a fused launch over `work` items (q/k/v: tiles; swiglu: tile pairs): one wave of resident CTAs as
/// mma_ctas, at most mma_fused_max_work(mode) items per CTA.
int mma_fused_ctas(const device_context& context, const void* kernel, mma_fusion mode, int work, int rows);

}  // namespace qbench::gptq
