// Reconstruct-to-FP16 (above the fused batch threshold, as exllama's q4_matmul_recons) and the load-time repack of
// AutoGPTQ's qweight into the device layout. Both decode with the same functions as the fused kernels.
#include "backends/gptq/gptq_device_layout.hpp"
#include "backends/gptq/gptq_gemm.cuh"
#include "backends/gptq/gptq_gemm_mma.cuh"

#include <array>
#include <cstring>

namespace qbench::gptq {

namespace {
constexpr int width_index(int bits) { return bits == 2 ? 0 : bits == 3 ? 1 : bits == 4 ? 2 : bits == 8 ? 3 : -1; }

constexpr int k_slabs_per_block = 8;

/// One thread per (column, slab): decodes the slab's 32 codes and writes each to its original row. Groups are looked
/// up per row (row_group), so any g_idx works, including groups that do not align with slabs; the arithmetic equals
/// the fused kernels' hsub2/hmul2 exactly ((q - z) * s is exact in float, then one rounding to fp16).
template <int Bits>
__global__ void reconstruct_kernel(const std::uint32_t* qweight, const __half* scales, const std::uint8_t* zeros,
                                   const std::int32_t* row_group, const std::int32_t* row_of, std::int64_t k,
                                   std::int64_t n, int slabs, int groups, __half* w_t) {
    using g = pair_geometry<Bits>;
    pdl_wait();
    pdl_trigger();
    const int tile = static_cast<int>(blockIdx.x);
    const int c = static_cast<int>(threadIdx.x);
    const int s = static_cast<int>(blockIdx.y) * k_slabs_per_block + static_cast<int>(threadIdx.y);
    const std::int64_t col = static_cast<std::int64_t>(tile) * 32 + c;
    if (s >= slabs || col >= n) return;
    std::uint32_t u[Bits];
#pragma unroll
    for (int w = 0; w < Bits; ++w) u[w] = qweight[((static_cast<std::size_t>(tile) * slabs + s) * Bits + w) * 32 + c];
    auto store = [&](int p, std::uint32_t pair, int fshift) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const std::int64_t r = static_cast<std::int64_t>(s) * 32 + 2 * p + h;
            if (r >= k) return;
            const std::uint32_t q = ((pair >> (16 * h)) & 0x3ffu) >> fshift;
            const std::size_t meta = (static_cast<std::size_t>(tile) * groups + row_group[r]) * 32 + c;
            const float v = static_cast<float>(static_cast<int>(q) - static_cast<int>(zeros[meta])) * __half2float(scales[meta]);
            w_t[static_cast<std::int64_t>(row_of ? row_of[r] : r) * n + col] = __float2half_rn(v);
        }
    };
#pragma unroll
    for (int w = 0; w < Bits; ++w)
#pragma unroll
        for (int j = 0; j < g::pairs_per_word; ++j) store(w * g::pairs_per_word + j, decode_pair<Bits>(u[w], j), g::field_shift(j));
    if constexpr (g::special_pair) store(15, decode_special_pair3(u[0], u[1], u[2]), 0);
}

/// One thread per (column, slab): gathers the slab's 32 codes from AutoGPTQ's stream and places them.
template <int Bits>
__global__ void repack_kernel(const std::int32_t* src, const std::int32_t* row_of, std::int64_t k, std::int64_t n,
                              int slabs, std::uint32_t* dst) {
    const int tile = static_cast<int>(blockIdx.x);
    const int c = static_cast<int>(threadIdx.x);
    const int s = static_cast<int>(blockIdx.y) * k_slabs_per_block + static_cast<int>(threadIdx.y);
    if (s >= slabs) return;
    const std::int64_t col = static_cast<std::int64_t>(tile) * 32 + c;
    std::uint32_t words[Bits];
#pragma unroll
    for (int w = 0; w < Bits; ++w) words[w] = 0;
    if (col < n)
        for (int t = 0; t < 32; ++t) {
            const std::int64_t r = static_cast<std::int64_t>(s) * 32 + t;
            if (r >= k) break;
            place_code<Bits>(words, t, autogptq_code(src, n, Bits, row_of ? row_of[r] : r, col));
        }
#pragma unroll
    for (int w = 0; w < Bits; ++w) dst[((static_cast<std::size_t>(tile) * slabs + s) * Bits + w) * 32 + c] = words[w];
}

constexpr int k_blocks_per_cta = 4;

/// mma layout: one thread per (ntile, k-block, lane) gathers its 32 codes from AutoGPTQ's stream and places them.
template <int Bits>
__global__ void repack_mma_kernel(const std::int32_t* src, const std::int32_t* row_of, std::int64_t k, std::int64_t n,
                                  int kblocks, std::uint32_t* dst) {
    const int tile = static_cast<int>(blockIdx.x);
    const int lane = static_cast<int>(threadIdx.x);
    const int kb = static_cast<int>(blockIdx.y) * k_blocks_per_cta + static_cast<int>(threadIdx.y);
    if (kb >= kblocks) return;
    const std::int64_t col = static_cast<std::int64_t>(tile) * k_ntile_cols + lane / 4;
    std::uint32_t words[Bits];
#pragma unroll
    for (int w = 0; w < Bits; ++w) words[w] = 0;
    if (col < n)
        for (int i = 0; i < 32; ++i) {
            const std::int64_t r = static_cast<std::int64_t>(kb) * k_block_rows + unit_row(lane % 4, i);
            if (r < k) place_code<Bits>(words, i, autogptq_code(src, n, Bits, row_of ? row_of[r] : r, col));
        }
    std::uint32_t* unit = dst + static_cast<std::size_t>(unit_index(gridDim.x, kblocks, tile, kb)) * 32 * Bits;
#pragma unroll
    for (int w = 0; w < Bits; ++w) unit[unit_word_offset(Bits, lane, w)] = words[w];
}

/// mma layout: one thread per (ntile, k-block, lane) writes its 32 weights ((q - z) * s, one rounding, as the
/// v1 reconstruct) to their original rows.
template <int Bits>
__global__ void reconstruct_mma_kernel(const std::uint32_t* qweight, const std::uint32_t* meta, const std::int32_t* row_group,
                                       const std::int32_t* row_of, std::int64_t k, std::int64_t n, int kblocks,
                                       int groups, __half* w_t) {
    using g = pair_geometry<Bits>;
    pdl_wait();
    pdl_trigger();
    const int tile = static_cast<int>(blockIdx.x);
    const int lane = static_cast<int>(threadIdx.x);
    const int kb = static_cast<int>(blockIdx.y) * k_blocks_per_cta + static_cast<int>(threadIdx.y);
    const int c = lane / 4, q = lane % 4;
    const std::int64_t col = static_cast<std::int64_t>(tile) * k_ntile_cols + c;
    if (kb >= kblocks || col >= n) return;
    const std::uint32_t* unit = qweight + static_cast<std::size_t>(unit_index(gridDim.x, kblocks, tile, kb)) * 32 * Bits;
    std::uint32_t u[Bits];
#pragma unroll
    for (int w = 0; w < Bits; ++w) u[w] = unit[unit_word_offset(Bits, lane, w)];
#pragma unroll
    for (int p = 0; p < 16; ++p) {
        std::uint32_t pair;
        int fshift = 0;
        if (g::special_pair && p == 15) {
            pair = decode_special_pair3(u[0], u[1 % Bits], u[2 % Bits]);
        } else {
            pair = decode_pair<Bits>(u[p / g::pairs_per_word], p % g::pairs_per_word);
            fshift = g::field_shift(p % g::pairs_per_word);
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const std::int64_t r = static_cast<std::int64_t>(kb) * k_block_rows + unit_row(q, 2 * p + h);
            if (r >= k) continue;
            const std::uint32_t code = ((pair >> (16 * h)) & 0x3ffu) >> fshift;
            const std::uint32_t* rec = meta + (static_cast<std::size_t>(tile) * groups + row_group[r]) * k_meta_words;
            const std::uint32_t z = (rec[4 + c / 4] >> (8 * (c % 4))) & 0xffu;
            const float s = __half2float(__ushort_as_half(static_cast<unsigned short>(rec[c / 2] >> (16 * (c % 2)))));
            const float v = static_cast<float>(static_cast<int>(code) - static_cast<int>(z)) * s;
            w_t[static_cast<std::int64_t>(row_of ? row_of[r] : r) * n + col] = __float2half_rn(v);
        }
    }
}

using recons_mma_fn = void (*)(const std::uint32_t*, const std::uint32_t*, const std::int32_t*, const std::int32_t*,
                               std::int64_t, std::int64_t, int, int, __half*);
using repack_mma_fn = void (*)(const std::int32_t*, const std::int32_t*, std::int64_t, std::int64_t, int, std::uint32_t*);
constexpr std::array<recons_mma_fn, 4> k_recons_mma = {&reconstruct_mma_kernel<2>, &reconstruct_mma_kernel<3>,
                                                       &reconstruct_mma_kernel<4>, &reconstruct_mma_kernel<8>};
constexpr std::array<repack_mma_fn, 4> k_repack_mma = {&repack_mma_kernel<2>, &repack_mma_kernel<3>,
                                                       &repack_mma_kernel<4>, &repack_mma_kernel<8>};

using recons_fn = void (*)(const std::uint32_t*, const __half*, const std::uint8_t*, const std::int32_t*,
                           const std::int32_t*, std::int64_t, std::int64_t, int, int, __half*);
using repack_fn = void (*)(const std::int32_t*, const std::int32_t*, std::int64_t, std::int64_t, int, std::uint32_t*);
constexpr std::array<recons_fn, 4> k_recons = {&reconstruct_kernel<2>, &reconstruct_kernel<3>, &reconstruct_kernel<4>,
                                               &reconstruct_kernel<8>};
constexpr std::array<repack_fn, 4> k_repack = {&repack_kernel<2>, &repack_kernel<3>, &repack_kernel<4>,
                                               &repack_kernel<8>};
}  // namespace

void launch_reconstruct(int bits, const std::uint32_t* qweight, const __half* scales, const std::uint8_t* zeros,
                        const std::int32_t* row_group, const std::int32_t* row_of, std::int64_t k, std::int64_t n,
                        int slabs, int groups, int tiles, __half* w_t, const launch_options& o) {
    const int w = width_index(bits);
    if (w < 0) throw error("gptq reconstruct: unsupported bits " + std::to_string(bits));
    const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>((slabs + k_slabs_per_block - 1) / k_slabs_per_block));
    launch_kernel(k_recons[static_cast<std::size_t>(w)], grid, dim3(32, k_slabs_per_block), 0, o, qweight, scales, zeros,
                  row_group, row_of, k, n, slabs, groups, w_t);
}

void launch_repack(int bits, const std::int32_t* qweight_autogptq, const std::int32_t* row_of, std::int64_t k,
                   std::int64_t n, int slabs, int tiles, std::uint32_t* qweight_device, const launch_options& o) {
    const int w = width_index(bits);
    if (w < 0) throw error("gptq repack: unsupported bits " + std::to_string(bits));
    const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>((slabs + k_slabs_per_block - 1) / k_slabs_per_block));
    launch_kernel(k_repack[static_cast<std::size_t>(w)], grid, dim3(32, k_slabs_per_block), 0, o, qweight_autogptq,
                  row_of, k, n, slabs, qweight_device);
}

void launch_repack_mma(int bits, const std::int32_t* qweight_autogptq, const std::int32_t* row_of, std::int64_t k,
                       std::int64_t n, int kblocks, int ntiles, std::uint32_t* qweight_device, const launch_options& o) {
    const int w = width_index(bits);
    if (w < 0) throw error("gptq repack: unsupported bits " + std::to_string(bits));
    const dim3 grid(static_cast<unsigned>(ntiles), static_cast<unsigned>((kblocks + k_blocks_per_cta - 1) / k_blocks_per_cta));
    launch_kernel(k_repack_mma[static_cast<std::size_t>(w)], grid, dim3(32, k_blocks_per_cta), 0, o, qweight_autogptq,
                  row_of, k, n, kblocks, qweight_device);
}

void launch_reconstruct_mma(int bits, const std::uint32_t* qweight, const std::uint32_t* meta,
                            const std::int32_t* row_group, const std::int32_t* row_of, std::int64_t k, std::int64_t n,
                            int kblocks, int ntiles, int groups, __half* w_t, const launch_options& o) {
    const int w = width_index(bits);
    if (w < 0) throw error("gptq reconstruct: unsupported bits " + std::to_string(bits));
    const dim3 grid(static_cast<unsigned>(ntiles), static_cast<unsigned>((kblocks + k_blocks_per_cta - 1) / k_blocks_per_cta));
    launch_kernel(k_recons_mma[static_cast<std::size_t>(w)], grid, dim3(32, k_blocks_per_cta), 0, o, qweight, meta,
                  row_group, row_of, k, n, kblocks, groups, w_t);
}

}  // namespace qbench::gptq
