#pragma once
/// The v3 device layout of a GPTQ layer (kernel v3, gptq_gemm_a.cuh): the weights are the A operand of
/// mma.m16n8k16 (16 output columns x 16 sorted rows), the activations the B operand (one batch row per n column).
/// A holds 256 weights per mma where v2's B held 128, and a lane's 8 weights of one mma are exactly one 4-bit word,
/// so the decode is 4 LOP3 + 1 SHF per 8 weights and the zero is never subtracted per weight (see "zeros" below).
/// For 2, 3, 4 and 8 bits with every k-block (128 sorted rows) in one group; other layers (groups smaller than a
/// k-block) keep the mma layout (v2).
///
///   rows:    sorted rows and k-blocks as the mma layout (gptq_device_layout.hpp): K padded to 128 with code 0.
///   mtile:   16 consecutive output columns n0 .. n0+15 (N padded to a multiple of 16): the 16 rows of A.
///   chunk:   a_chunk_rows(bits) = 256 / bits sorted rows of one mtile (128 at 2 bits, 64 at 4, 32 at 8): 512
///            bytes, one 16-byte vector per lane; a k-block holds bits / 2 chunks (2 bits: one). 3 bits: a chunk is
///            a k-block of 768 bytes, the 32 lanes' 16-byte vectors of the low two bits of each code (the 2-bit
///            layout) then their 8-byte vectors of the high bits (a_lane_words: 4 words a lane, 6 at 3 bits).
///   lane L = 4 g + t: its A rows are r0 = n0 + g and r1 = n0 + g + 8; in mma m of a chunk starting at sorted row
///            kc it holds rows p .. p+3 with p = kc + t * (chunk_rows / 4) + 4 m.
///
/// K order: an mma sums over its 16 k positions whatever rows they stand for, so A and B may share any permutation.
/// Lane t's positions (2t, 2t+1 | 2t+8, 2t+9) stand for the consecutive rows (p, p+1 | p+2, p+3), and its mmas of a
/// chunk take consecutive quadruples, so its activations for a chunk are chunk_rows / 4 consecutive halves (one or
/// two 16-byte loads) and b0 = (x[p], x[p+1]), b1 = (x[p+2], x[p+3]) are those registers unchanged.
///
/// 4-bit word of lane L for mma m (q[r][k] = code; nibble i at bits 4i):
///
///     bit 31                                                                                bit 0
///     [ r1,p+3 ][ r0,p+3 ][ r1,p+1 ][ r0,p+1 ] | [ r1,p+2 ][ r0,p+2 ][ r1,p   ][ r0,p   ]
///        nib 7     nib 6     nib 5     nib 4   |   nib 3     nib 2     nib 1     nib 0
///
///     (w        & 0x000F000F) | 0x64006400 = (1024 + q[r0][p],       1024 + q[r0][p+1])       = a0
///     (w        & 0x00F000F0) | 0x64006400 = (1024 + 16 q[r1][p],    1024 + 16 q[r1][p+1])    = a1
///     (w >> 8   & 0x000F000F) | 0x64006400 = (1024 + q[r0][p+2],     1024 + q[r0][p+3])       = a2
///     (w >> 8   & 0x00F000F0) | 0x64006400 = (1024 + 16 q[r1][p+2],  1024 + 16 q[r1][p+3])    = a3
///
/// 8-bit: two words per mma: word 2m = bytes (q[r0][p], q[r0][p+1], q[r1][p], q[r1][p+1]), word 2m+1 the same at
///   p+2, p+3; a PRMT with 0x64 bytes makes each pair (1024 + q, 1024 + q').
///
/// 2-bit: one word per two mmas: word m / 2 of lane L holds mmas 2i (bits 0-7 of each half) and 2i+1 (bits 8-15);
/// each half-word holds rows p (low half) or p+1 (high half) in its first nibble and p+2 / p+3 in its second, r0 in
/// the nibble's low two bits and r1 in its high two (crumb = 2-bit field):
///
///     half-word (low: p, p+2 | high: p+1, p+3), mma 2i+1 in bits 8-15 alike
///     bit 15                              8   7                                   0
///     [ r1,p+2 ][ r0,p+2 ][ r1,p ][ r0,p ]  | [ r1,p+2 ][ r0,p+2 ][ r1,p   ][ r0,p   ]
///        mma 2i+1                           |   mma 2i
///
///     (w >> s      & 0x00030003) | 0x64006400 = (1024 + q[r0][p],     1024 + q[r0][p+1])     = a0,  s = 8 (m & 1)
///     (w >> s      & 0x000C000C) | 0x64006400 = (1024 + 4 q[r1][p],   1024 + 4 q[r1][p+1])   = a1
///     (w >> (s+4)  & 0x00030003) | 0x64006400 = (1024 + q[r0][p+2],   1024 + q[r0][p+3])     = a2
///     (w >> (s+4)  & 0x000C000C) | 0x64006400 = (1024 + 4 q[r1][p+2], 1024 + 4 q[r1][p+3])   = a3
///
/// 3-bit: the low two bits of every code as at 2 bits (words 0-3 of a lane), the high bit of mma m in word
///   4 + m / 4 at bits 4 (m % 4) + {0: r0 p, 1: r0 p+2, 2: r1 p, 3: r1 p+2} and the same + 16 for p+1 / p+3:
///
///     high word, nibble i (bits 4i .. 4i+3) of each half: mma 4 (word - 4) + i   [ r1,p+2 | r1,p | r0,p+2 | r0,p ]
///
///   so H = word >> (4 (m % 4) - 2) puts r0's high bits at 2 / 18 and r1's at 4 / 20, H >> 1 those of p+2 / p+3,
///   and one more LOP3 per fragment ORs them in: (2-bit a0) | (H & 0x00040004) = 1024 + lo + 4 hi = 1024 + q;
///   (2-bit a1) | (H & 0x00100010) = 1024 + 4 lo + 16 hi = 1024 + 4 q (r1's f = 4, as at 2 bits).
///
/// Zeros: the kernel multiplies the decoded values as they are, (1024 + q) or (1024 + f q), so a k-block's sum is
/// acc = sum_k (1024 + f q) x with f = 1, 4 or 16, and s * sum_k (q - z) x = S * (acc - C * sum_k x) with
///   row r0 (and r1 at 8 bits): C = 1024 + z,       S = s
///   row r1 at 4 (2, 3) bits:   C = 1024 + 16 z (4 z),  S = s / 16 (s / 4) (applied in fp32 by the kernel)
/// i.e. f = 2^a_r1_shift(bits) for r1.
/// (llama.cpp's q4_1 dot product folds its offset the same way). sum_k x comes from one more mma with A = ones, in
/// the same accumulator layout as acc; the products are exact and the correction is one fp32 FMA per output.
///   meta: one record per (mtile, k-block) of 8 entries (g = 0..7), 2 words each: (s[r0] | s[r1] << 16) and
///         (C[r0] | C[r1] << 16), fp16 bits (C is an exact integer); padding columns s = 0, C = 1024. 64 bytes per
///         16 x 128 weights (AutoGPTQ's scales and zeros: 40).
/// order: chunks and records in k-slice order [slice][mtile][chunk (record) of the slice], k_a_kslices slices of
///        k-blocks (one per warp of the kernel's CTA), so the warp owning slice w of consecutive mtiles reads one
///        contiguous stream.
#include "backends/gptq/gptq_device_layout.hpp"

#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

namespace qbench::gptq {

inline constexpr std::int64_t k_a_tile_cols = 16;
/// K slices of the v3 layout: one per warp of the kernel's 512-thread CTA (measured on the H100: a kernel of this shape
/// streams at 0.87 of the stream bandwidth with 32 warps per SM x 8 requests of 512 bytes, 0.67 with 16 x 8 and no
/// better with 16 x 16 or 16 x 32: the warps, not the bytes in flight per warp, are what count).
inline constexpr int k_a_kslices = 16;
inline constexpr int k_a_entry_words = 2;                    ///< words of one meta entry (one g of a record)
inline constexpr int k_a_record_words = 8 * k_a_entry_words; ///< words of one (mtile, k-block) record
/// Words of one lane in a chunk (16 bytes; 3 bits: 16 + 8) and of one chunk (32 lanes).
QB_GPTQ_HD constexpr int a_lane_words(int bits) { return bits == 3 ? 6 : 4; }
QB_GPTQ_HD constexpr int a_chunk_words(int bits) { return 32 * a_lane_words(bits); }

/// Where word i (< a_lane_words) of lane `lane` lies in its chunk: the lanes' 16-byte vectors, then (3 bits) their
/// 8-byte vectors of high bits.
QB_GPTQ_HD constexpr int a_lane_word_offset(int lane, int i) { return i < 4 ? lane * 4 + i : 128 + lane * 2 + (i - 4); }

/// Sorted rows of one chunk, chunks per k-block, and mmas per chunk for a width (2, 3, 4 or 8).
QB_GPTQ_HD constexpr int a_chunk_rows(int bits) { return bits == 3 ? 128 : 256 / bits; }
QB_GPTQ_HD constexpr int a_chunks_per_block(int bits) { return static_cast<int>(k_block_rows) / a_chunk_rows(bits); }
QB_GPTQ_HD constexpr int a_mmas_per_chunk(int bits) { return a_chunk_rows(bits) / 16; }

/// log2 of the factor f the decode leaves on row r1's codes (1024 + f q): 4 at 4 bits, 2 at 2 and 3 bits, 0 at 8.
QB_GPTQ_HD constexpr int a_r1_shift(int bits) { return bits == 4 ? 4 : bits == 8 ? 0 : 2; }

/// Whether a layer can use the v3 layout: 2, 3, 4 or 8 bits, every k-block in one group.
inline bool a_layout_supported(const layout_plan& p) {
    return (p.bits == 2 || p.bits == 3 || p.bits == 4 || p.bits == 8) && p.block_groups;
}

/// Calls f(std::integral_constant<int, B>{}) with B = bits for the v3 widths (2, 3, 4, 8); false (f not called) for
/// others.
template <class F>
bool a_with_bits(std::int64_t bits, F&& f) {
    switch (bits) {
        case 2: f(std::integral_constant<int, 2>{}); return true;
        case 3: f(std::integral_constant<int, 3>{}); return true;
        case 4: f(std::integral_constant<int, 4>{}); return true;
        case 8: f(std::integral_constant<int, 8>{}); return true;
        default: return false;
    }
}
inline std::int64_t a_mtiles(const layout_plan& p) { return (p.out_features + k_a_tile_cols - 1) / k_a_tile_cols; }
inline std::uint64_t a_qweight_words(const layout_plan& p) {
    const int bits = static_cast<int>(p.bits);
    return static_cast<std::uint64_t>(a_mtiles(p) * p.kblocks * a_chunks_per_block(bits)) * a_chunk_words(bits);
}
inline std::uint64_t a_meta_words(const layout_plan& p) {
    return static_cast<std::uint64_t>(a_mtiles(p) * p.kblocks) * k_a_record_words;
}
/// Bytes kernel v3 reads per forward: weights, meta, and the permutation if any.
inline std::uint64_t a_device_bytes(const layout_plan& p) {
    std::uint64_t b = (a_qweight_words(p) + a_meta_words(p)) * 4;
    if (!p.sequential) b += static_cast<std::uint64_t>(p.in_features) * 4;
    return b;
}

/// Index of the record of (mtile, k-block kb), and of chunk c (0 .. kblocks * chunks_per_block - 1) of an mtile.
QB_GPTQ_HD inline std::int64_t a_record_index(std::int64_t mtiles, std::int64_t kblocks, std::int64_t tile, std::int64_t kb) {
    return unit_index(mtiles, kblocks, tile, kb, k_a_kslices);
}
QB_GPTQ_HD inline std::int64_t a_chunk_index(std::int64_t mtiles, std::int64_t kblocks, int bits, std::int64_t tile,
                                             std::int64_t c) {
    const int cpb = a_chunks_per_block(bits);
    return a_record_index(mtiles, kblocks, tile, c / cpb) * cpb + c % cpb;
}

/// Where element j (0..3: rows p..p+3) of A row half h (0: r0, 1: r1) of mma m lies in a lane's 4 chunk words.
struct a_slot {
    int word;
    int shift;
};
/// (3 bits: where the low two bits lie; a_high_slot_of says where the high bit does.)
QB_GPTQ_HD constexpr a_slot a_slot_of(int bits, int m, int h, int j) {
    return bits == 4   ? a_slot{m, 4 * (h + 2 * (j >> 1) + 4 * (j & 1))}
           : bits <= 3 ? a_slot{m / 2, 8 * (m & 1) + 4 * (j >> 1) + 2 * h + 16 * (j & 1)}
                       : a_slot{2 * m + (j >> 1), 8 * ((j & 1) + 2 * h)};
}
/// 3 bits: the word and bit of the high bit of element j (rows p .. p+3) of row half h of mma m.
QB_GPTQ_HD constexpr a_slot a_high_slot_of(int m, int h, int j) {
    return a_slot{4 + m / 4, 4 * (m & 3) + (j >> 1) + 2 * h + 16 * (j & 1)};
}

/// (u & Mask) | Magic in one LOP3 on the device (the compiler splits the C++ form into two).
template <std::uint32_t Mask, std::uint32_t Magic>
QB_GPTQ_HD inline std::uint32_t a_and_or(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
    std::uint32_t r;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(u), "n"(Mask), "n"(Magic));
    return r;
#else
    return (u & Mask) | Magic;
#endif
}

/// a | (b & Mask) in one LOP3 on the device (3 bits: the high bit ORed into a 2-bit fragment).
template <std::uint32_t Mask>
QB_GPTQ_HD inline std::uint32_t a_or_and(std::uint32_t a, std::uint32_t b) {
#if defined(__CUDA_ARCH__)
    std::uint32_t r;
    asm("lop3.b32 %0, %1, %2, %3, 0xF8;" : "=r"(r) : "r"(a), "r"(b), "n"(Mask));
    return r;
#else
    return a | (b & Mask);
#endif
}

/// The A fragment (a0..a3 as half2 bits, magic-offset codes) of mma m from a lane's 4 chunk words: what the kernel
/// multiplies, and what the host tests decode.
template <int Bits>
QB_GPTQ_HD inline void a_fragment(const std::uint32_t (&w)[a_lane_words(Bits)], int m, std::uint32_t (&a)[4]) {
    if constexpr (Bits == 3) {
        std::uint32_t lo[4];
        a_fragment<2>(reinterpret_cast<const std::uint32_t(&)[4]>(w), m, lo);
        const int s = 4 * (m & 3) - 2;  // -2 for m % 4 == 0: a left shift
        const std::uint32_t hw = w[4 + (m >> 2)], H = s >= 0 ? hw >> s : hw << -s, H1 = H >> 1;
        a[0] = a_or_and<0x00040004u>(lo[0], H);
        a[1] = a_or_and<0x00100010u>(lo[1], H);
        a[2] = a_or_and<0x00040004u>(lo[2], H1);
        a[3] = a_or_and<0x00100010u>(lo[3], H1);
    } else if constexpr (Bits == 4) {
        const std::uint32_t u = w[m], v = w[m] >> 8;
        a[0] = a_and_or<0x000F000Fu, 0x64006400u>(u);
        a[1] = a_and_or<0x00F000F0u, 0x64006400u>(u);
        a[2] = a_and_or<0x000F000Fu, 0x64006400u>(v);
        a[3] = a_and_or<0x00F000F0u, 0x64006400u>(v);
    } else if constexpr (Bits == 2) {
        const std::uint32_t u = w[m >> 1] >> (8 * (m & 1)), v = u >> 4;
        a[0] = a_and_or<0x00030003u, 0x64006400u>(u);
        a[1] = a_and_or<0x000C000Cu, 0x64006400u>(u);
        a[2] = a_and_or<0x00030003u, 0x64006400u>(v);
        a[3] = a_and_or<0x000C000Cu, 0x64006400u>(v);
    } else {
        static_assert(Bits == 8, "v3 layout: 2, 3, 4 or 8 bits");
#if defined(__CUDA_ARCH__)
        a[0] = __byte_perm(w[2 * m], 0x64646464u, 0x4140);
        a[1] = __byte_perm(w[2 * m], 0x64646464u, 0x4342);
        a[2] = __byte_perm(w[2 * m + 1], 0x64646464u, 0x4140);
        a[3] = __byte_perm(w[2 * m + 1], 0x64646464u, 0x4342);
#else
        auto pair = [](std::uint32_t u, int b) { return 0x64006400u | ((u >> (8 * b)) & 0xffu) | (((u >> (8 * b + 8)) & 0xffu) << 16); };
        a[0] = pair(w[2 * m], 0);
        a[1] = pair(w[2 * m], 2);
        a[2] = pair(w[2 * m + 1], 0);
        a[3] = pair(w[2 * m + 1], 2);
#endif
    }
}

/// Gathers the words of lane `lane` of chunk c (counted over all of K) of mtile `tile` from AutoGPTQ's qweight
/// [ceil(K/32)*bits][N] through row_of (nullptr: identity); code 0 past K and N. Used by the device repack and the
/// host reference alike.
template <int Bits>
QB_GPTQ_HD inline void a_gather_lane(const std::int32_t* qweight, const std::int32_t* row_of, std::int64_t K,
                                     std::int64_t N, std::int64_t tile, std::int64_t c, int lane,
                                     std::uint32_t (&w)[a_lane_words(Bits)]) {
    constexpr int cr = a_chunk_rows(Bits);
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < a_lane_words(Bits); ++i) w[i] = 0;
    for (int m = 0; m < a_mmas_per_chunk(Bits); ++m)
        for (int h = 0; h < 2; ++h) {
            const std::int64_t n = tile * k_a_tile_cols + g + 8 * h;
            if (n >= N) continue;
            for (int j = 0; j < 4; ++j) {
                const std::int64_t r = c * cr + t * (cr / 4) + 4 * m + j;
                if (r >= K) continue;
                const std::uint32_t q = autogptq_code(qweight, N, Bits, row_of ? row_of[r] : r, n);
                const a_slot s = a_slot_of(Bits, m, h, j);
                if constexpr (Bits == 3) {
                    const a_slot hs = a_high_slot_of(m, h, j);
                    w[s.word] |= (q & 3u) << s.shift;
                    w[hs.word] |= (q >> 2) << hs.shift;
                } else {
                    w[s.word] |= q << s.shift;
                }
            }
        }
}

/// The v3 qweight from AutoGPTQ's qweight (host reference of the device repack kernel).
std::vector<std::uint32_t> repack_qweight_a_ref(const layout_plan& plan, std::span<const std::int32_t> qweight);
/// The v3 meta records from AutoGPTQ's scales [G][N] (fp16 bits) and qzeros.
std::vector<std::uint32_t> a_meta(const layout_plan& plan, std::span<const std::uint16_t> scales,
                                  std::span<const std::int32_t> qzeros);
/// The code at (sorted row r, column n) read back from a v3 qweight through a_fragment (the kernel's decode).
std::uint32_t a_code(const layout_plan& plan, std::span<const std::uint32_t> qweight, std::int64_t r, std::int64_t n);

}  // namespace qbench::gptq
