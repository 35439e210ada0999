#pragma once
/// Fused dequantize-and-multiply for small batches, version 1 (half2 FMA over the slab layout; selected with
/// QBENCH_GPTQ_KERNEL=v1, kept as the measured baseline): y[rows, N] = x[rows, K] · W^T with W in the device layout
/// of gptq_device_layout.hpp, for 1..8 rows per launch (larger batches reconstruct fp16 and call cuBLAS, as
/// exllama). The default is version 2, gptq_gemm_mma.cuh (tensor-core mma over the mma layout).
///
/// Work split: a CTA of 256 threads owns one tile of 32 output columns and a contiguous range of slabs (32 K rows);
/// thread t handles columns 4*(t%8) .. +3 (one 16-byte load per word) and every 32nd slab of the range starting at
/// t/8, so a warp reads 4 slabs x `bits` words x 128 contiguous bytes. Per slab it decodes 16 row pairs per column
/// with the magic-number trick, subtracts the zero (exact), scales in fp16 (hmul2, one rounding, as exllama's fp16
/// weights), accumulates x·w over the slab in half2, then adds the slab's sum to an fp32 accumulator. When the K
/// range is split over several CTAs (to fill the GPU with whole waves), partial sums go to an fp32 workspace and the
/// last CTA of a tile (atomic counter, reset by that CTA) adds them in a fixed order: deterministic, one launch.
///
/// With programmatic dependent launch the first slab's weights are loaded before pdl_wait(): they never change, so
/// the load overlaps the previous kernel's tail.
#include "cuda/launch.cuh"

#include <cuda_fp16.h>

#include <cstdint>

namespace qbench::gptq {

inline constexpr int k_fused_threads = 256;
inline constexpr int k_fused_max_rows = 8;

struct fused_args {
    const std::uint32_t* qweight = nullptr;    ///< [tiles][slabs][bits][32]
    const __half* scales = nullptr;            ///< [tiles][groups][32]
    const std::uint8_t* zeros = nullptr;       ///< [tiles][groups][32]
    const std::int32_t* slab_group = nullptr;  ///< [slabs]
    const __half* x = nullptr;                 ///< [rows][ldx], 16-byte aligned rows, >= slabs*32 readable per row
    std::int64_t ldx = 0;
    __half* y = nullptr;                       ///< [rows][n]
    float* partials = nullptr;                 ///< [splits][rows][tiles*32] when splits > 1
    unsigned* counters = nullptr;              ///< [tiles], zero between launches, when splits > 1
    int n = 0;
    int slabs = 0;
    int groups = 0;
    int tiles = 0;
    int splits = 1;
};

using fused_launcher = void (*)(const fused_args& args, dim3 grid, const launch_options& o);

/// The launcher for (bits, rows), rows in 1..8; nullptr when there is none.
fused_launcher fused_launcher_for(int bits, int rows);
/// Per-width tables (one translation unit per width): entry rows-1.
const fused_launcher* fused_launchers_b2();
const fused_launcher* fused_launchers_b3();
const fused_launcher* fused_launchers_b4();
const fused_launcher* fused_launchers_b8();
/// Kernel function pointer for occupancy queries (same indexing).
const void* fused_kernel_b2(int rows);
const void* fused_kernel_b3(int rows);
const void* fused_kernel_b4(int rows);
const void* fused_kernel_b8(int rows);
const void* fused_kernel_for(int bits, int rows);

/// How many CTAs split K for a layer: the count in [1, max_splits] whose grid fills whole waves of resident CTAs
/// best (ties: fewer splits), keeping at least 16 slabs per CTA.
int choose_splits(int tiles, int slabs, int resident_ctas, int max_splits);

/// x_stage[r][i] = x[r][row_of[i]] for i < k (row_of null: identity), 0 for k <= i < padded_k.
void launch_stage_x(const __half* x, std::int64_t ldx, std::int64_t rows, const std::int32_t* row_of, std::int64_t k,
                    std::int64_t padded_k, __half* x_stage, const launch_options& o);

/// Reconstructs W^T [k][n] fp16 (original row order) from the device layout: W^T[row_of[r]][c] for sorted row r,
/// with the group of each sorted row from row_group (any g_idx); used above the fused batch threshold.
void launch_reconstruct(int bits, const std::uint32_t* qweight, const __half* scales, const std::uint8_t* zeros,
                        const std::int32_t* row_group, const std::int32_t* row_of, std::int64_t k, std::int64_t n,
                        int slabs, int groups, int tiles, __half* w_t, const launch_options& o);

/// Converts AutoGPTQ's qweight [ceil(k/32)*bits][n] (device) into the device layout (device), through row_of.
void launch_repack(int bits, const std::int32_t* qweight_autogptq, const std::int32_t* row_of, std::int64_t k,
                   std::int64_t n, int slabs, int tiles, std::uint32_t* qweight_device, const launch_options& o);

}  // namespace qbench::gptq
