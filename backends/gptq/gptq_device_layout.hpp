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

/// ---- The mma layout (fused kernel v2, gptq_gemm_mma.cuh) ------------------------------------------------------
///
///   ntile:   8 consecutive output columns (an mma n8 tile; N padded to a multiple of 8).
///   k-block: 4 consecutive slabs = 128 sorted rows (K padded to a multiple of 128 with code 0).
///   unit:    (ntile, k-block), 32 * bits words: lane L = 4 * c + q (c = column in the ntile, q = 0..3) holds the 32
///            codes of column c at sorted rows 32 * j + 8 * q + t (j = slab of the block 0..3, t = 0..7), as
///            `bits` words of one pair stream: lane code i = 8 * j + t is placed with place_code<bits>(words, i, code)
///            (pair i/2 of the stream, gptq_decode.hpp). Within the unit, word w of lane L sits at
///            ((w / V) * 32 + L) * V + w % V, V = unit_vector_words (4 for 4 and 8 bits, 2 for 2, 1 for 3), so every
///            lane's words are one or two 16-byte loads (4-, 8-bit), one 8-byte load (2-bit), or three coalesced
///            4-byte loads (3-bit), and a warp reads 128 * bits contiguous bytes per unit.
///   qweight: units in k-slice order: K's k-blocks are cut into k_kslices slices (slice w = blocks
///            [kblocks*w/8, kblocks*(w+1)/8), one per warp of a CTA), and the units are stored
///            [slice][ntile][k-block of the slice] (unit_index), so the warp of slice w walking its blocks of
///            consecutive tiles reads one contiguous stream with a constant stride.
///
/// Why this shape: lane (c, q) is exactly the B fragment owner of mma.m16n8k16 (column c = lane/4, k pairs by
/// q = lane%4), with the k order permuted identically in A and B so that lane q's rows of a slab are the 8
/// consecutive rows 8q .. 8q+7: its x fragment is one 16-byte load, and for 4 and 8 bits its words equal AutoGPTQ's
/// words (8 or 4 consecutive rows) with the nibbles reordered.
///   meta:    per (ntile, group) 6 words: 8 fp16 scales (words 0..3, column 2i in the low half of word i), then 8
///            true zeros as bytes (words 4..5): the lane of C columns 2q, 2q+1 reads word q, the lane of B column c
///            reads byte c. "group meta" is [ntile][group][6] (any slab-aligned groups); "unit meta" holds the
///            record of each unit's block group in unit order [unit][6] (when every block lies in one group), so
///            it streams beside the weights.
inline constexpr std::int64_t k_block_slabs = 4;
inline constexpr std::int64_t k_block_rows = k_block_slabs * k_slab_rows;
inline constexpr std::int64_t k_ntile_cols = 8;
inline constexpr std::int64_t k_meta_words = 6;

/// Words of one vector load of a lane in a unit.
QB_GPTQ_HD constexpr int unit_vector_words(int bits) { return bits % 4 == 0 ? 4 : (bits == 2 ? 2 : 1); }
/// Offset (in words) of word w of lane `lane` inside its unit.
QB_GPTQ_HD constexpr int unit_word_offset(int bits, int lane, int w) {
    return ((w / unit_vector_words(bits)) * 32 + lane) * unit_vector_words(bits) + w % unit_vector_words(bits);
}
/// Sorted row, relative to the k-block start, of lane code i (0..31) of a lane with quad index q.
QB_GPTQ_HD constexpr int unit_row(int q, int i) { return (i / 8) * 32 + 8 * q + i % 8; }

/// K slices of the mma layout (one per warp of the v2 kernel's CTA). The functions below take the slice count so the
/// v3 layout (gptq_a_layout.hpp, one slice per warp of its larger CTA) orders its chunks the same way.
inline constexpr int k_kslices = 8;
/// First k-block of slice w (w = slices: kblocks).
QB_GPTQ_HD constexpr std::int64_t kslice_begin(std::int64_t kblocks, int w, int slices = k_kslices) { return kblocks * w / slices; }
/// The slice holding k-block kb.
QB_GPTQ_HD inline int kslice_of(std::int64_t kblocks, std::int64_t kb, int slices = k_kslices) {
    int w = static_cast<int>(kb * slices / kblocks);
    while (w + 1 < slices && kslice_begin(kblocks, w + 1, slices) <= kb) ++w;
    while (w > 0 && kslice_begin(kblocks, w, slices) > kb) --w;
    return w;
}
/// Index of unit (tile, kb) in the mma layout's unit order.
QB_GPTQ_HD inline std::int64_t unit_index(std::int64_t ntiles, std::int64_t kblocks, std::int64_t tile, std::int64_t kb,
                                          int slices = k_kslices) {
    const int w = kslice_of(kblocks, kb, slices);
    const std::int64_t b = kslice_begin(kblocks, w, slices), e = kslice_begin(kblocks, w + 1, slices);
    return ntiles * b + tile * (e - b) + (kb - b);
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
    // mma layout
    std::int64_t kblocks = 0;              ///< ceil(slabs / 4)
    std::int64_t ntiles = 0;               ///< ceil(N / 8)
    bool block_groups = true;              ///< every k-block lies in one group (fused kernel v2 scales per block)
    int group_shift = -1;                  ///< group of block kb = kb >> group_shift for all kb; -1: use block_group
    std::vector<std::int32_t> block_group; ///< [kblocks] group of each k-block's first slab

    std::uint64_t qweight_words() const { return static_cast<std::uint64_t>(tiles * slabs * bits * k_tile_cols); }
    std::uint64_t meta_entries() const { return static_cast<std::uint64_t>(tiles * groups * k_tile_cols); }
    /// Bytes the fused kernel reads per forward: weights, scales, zeros, slab groups, and the permutation if any.
    std::uint64_t device_bytes() const;
    std::uint64_t mma_qweight_words() const { return static_cast<std::uint64_t>(ntiles * kblocks * 32 * bits); }
    std::uint64_t mma_meta_words() const { return static_cast<std::uint64_t>(ntiles * groups * k_meta_words); }
    std::uint64_t mma_unit_meta_words() const { return static_cast<std::uint64_t>(ntiles * kblocks * k_meta_words); }
    /// The v2 kernel scales per k-block from the unit meta (else per slab from the group meta).
    bool mma_block_path() const { return block_groups && group_shift >= 0; }
    /// Bytes the fused kernel v2 reads per forward: weights, meta, and the permutation if any.
    std::uint64_t mma_device_bytes() const;
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

/// The mma-layout qweight from AutoGPTQ's qweight (host reference of the device repack kernel).
std::vector<std::uint32_t> repack_qweight_mma_ref(const layout_plan& plan, std::span<const std::int32_t> qweight);
/// The mma-layout group meta [ntile][group][6] from AutoGPTQ's scales [G][N] (fp16 bits) and qzeros (padding
/// columns: scale 0, zero 0).
std::vector<std::uint32_t> mma_meta(const layout_plan& plan, std::span<const std::uint16_t> scales,
                                    std::span<const std::int32_t> qzeros);
/// The unit meta [unit][6] from the group meta: the record of (tile, block_group[kb]) for every unit.
std::vector<std::uint32_t> mma_unit_meta(const layout_plan& plan, std::span<const std::uint32_t> group_meta);
/// The code at (sorted row r, column n) read back from an mma-layout qweight with the kernels' decode functions.
std::uint32_t mma_code(const layout_plan& plan, std::span<const std::uint32_t> qweight, std::int64_t r, std::int64_t n);

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
