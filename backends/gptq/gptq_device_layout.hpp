#pragma once
/// The GPU's copy of a GPTQ layer: AutoGPTQ's tensors rearranged at load time for the fused kernels.
///
///   rows:    sorted by group (exllama's make_sequential): sorted row r is original row row_of[r]. With act-order
///            g_idx is non-monotone, so the kernels read x through the same permutation; without it row_of is the
///            identity and x is read in place.
///   slab:    32 consecutive sorted rows; slab s lies in one group (slab_group[s]) whenever every group spans a
///            multiple of 32 rows (group size a multiple of 32, or -1) — the condition for the fused kernels.
///   tile:    32 consecutive output columns (N padded to a multiple of 32).
///   qweight: uint32 [tiles][slabs][bits][32]: for each (tile, slab) `bits` words per column, 32 columns side by
///            side, so 4 adjacent columns are one 16-byte load and a CTA walking down K reads contiguous memory.
///            Inside a word the codes sit in pairs of rows as gptq_decode.hpp draws it.
///   scales:  fp16 [tiles][groups][32];  zeros: uint8 [tiles][groups][32] (true zeros, not minus one).
///
/// The bytes equal AutoGPTQ's except zeros, one byte each instead of `bits` bits (+0.4% at 4-bit g128), and the
/// padding of N to a tile. The permutation replaces g_idx (same size).
#include "backends/gptq/gptq_decode.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace qbench::gptq {

inline constexpr std::int64_t k_slab_rows = 32;
inline constexpr std::int64_t k_tile_cols = 32;

/// Where row offset t (0..31) of a slab goes: word index and bit position of each of the code's bits.
/// For every width but 3 the code's bits are contiguous from `bit`; the 3-bit rows 30 and 31 are spread.
template <int Bits>
QB_GPTQ_HD inline void place_code(std::uint32_t* words, int t, std::uint32_t code) {
    using g = pair_geometry<Bits>;
    const int p = t / 2, h = t % 2;
    if constexpr (Bits == 3) {
        if (p == 15) {
            for (int b = 0; b < 3; ++b) words[b] |= ((code >> b) & 1u) << (15 + 16 * h);
            return;
        }
    }
    const int w = p / g::pairs_per_word, j = p % g::pairs_per_word;
    words[w] |= code << (pair_bit<Bits>(j) + 16 * h);
}

/// Everything about a layer's device layout that is decided on the host.
struct layout_plan {
    std::int64_t in_features = 0;   ///< K
    std::int64_t out_features = 0;  ///< N
    std::int64_t bits = 4;
    std::int64_t groups = 1;
    std::int64_t slabs = 0;         ///< ceil(K / 32)
    std::int64_t tiles = 0;         ///< ceil(N / 32)
    bool sequential = true;         ///< row_of is the identity
    bool fused_ok = true;           ///< every slab lies in one group
    std::vector<std::int32_t> row_of;      ///< [K] sorted row -> original row
    std::vector<std::int32_t> slab_group;  ///< [slabs]

    std::uint64_t qweight_words() const { return static_cast<std::uint64_t>(tiles * slabs * bits * k_tile_cols); }
    std::uint64_t meta_entries() const { return static_cast<std::uint64_t>(tiles * groups * k_tile_cols); }
    /// Bytes the fused kernel reads per forward: weights, scales, zeros, slab groups, and the permutation if any.
    std::uint64_t device_bytes() const;
};

/// Plans the layout from g_idx (stable sort of rows by group).
layout_plan plan_layout(std::int64_t in_features, std::int64_t out_features, std::int64_t bits, std::int64_t groups,
                        std::span<const std::int32_t> g_idx);

/// The device qweight from AutoGPTQ's qweight (host reference of the device repack kernel).
std::vector<std::uint32_t> repack_qweight_ref(const layout_plan& plan, std::span<const std::int32_t> qweight);
/// Tile-major scales from AutoGPTQ's [G][N] fp16 bits (padding columns 0).
std::vector<std::uint16_t> tile_scales(const layout_plan& plan, std::span<const std::uint16_t> scales);
/// Tile-major true zeros from AutoGPTQ's qzeros.
std::vector<std::uint8_t> tile_zeros(const layout_plan& plan, std::span<const std::int32_t> qzeros);

/// The code of AutoGPTQ's qweight at (row k, column n), read from its 32*bits-bit stream.
QB_GPTQ_HD inline std::uint32_t autogptq_code(const std::int32_t* qweight, std::int64_t n_cols, int bits,
                                              std::int64_t k, std::int64_t n) {
    const std::int64_t run = k / 32, v = k % 32;
    const std::int64_t bit = bits * v;
    const std::int64_t row = run * bits + bit / 32;
    std::uint64_t window = static_cast<std::uint32_t>(qweight[row * n_cols + n]);
    if ((bit % 32) + bits > 32) window |= static_cast<std::uint64_t>(static_cast<std::uint32_t>(qweight[(row + 1) * n_cols + n])) << 32;
    return static_cast<std::uint32_t>((window >> (bit % 32)) & ((1u << bits) - 1u));
}

/// Host emulation of the kernels' decode: the dequantized weight of (sorted row r, column n) computed from the
/// device arrays with decode_pair / zero_pair and fp16 arithmetic semantics (exact here: q - z is a small integer,
/// then one rounding of (q - z) * s to fp16 as hmul2 does).
float decode_device_weight(const layout_plan& plan, std::span<const std::uint32_t> qweight,
                           std::span<const std::uint16_t> scales, std::span<const std::uint8_t> zeros, std::int64_t r,
                           std::int64_t n);

}  // namespace qbench::gptq
