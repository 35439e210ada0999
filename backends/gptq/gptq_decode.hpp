#pragma once
/// Bit-twiddling decode of the device weight layout (gptq_device_layout.hpp) into fp16 pairs: pure integer
/// operations, compiled for the host (tests) and the device (kernels), so the host tests check exactly what the
/// kernels execute.
///
/// A "pair" is two consecutive K rows (2p, 2p+1) of one column. Each 32-bit word holds several pairs with the first
/// row's field in the low half-word and the second row's field at the same position + 16:
///
///   4-bit word (rows 8w .. 8w+7 of a slab):   pair j at bits 4j and 16+4j
///     hi half  [ r7 ][ r5 ][ r3 ][ r1 ]   lo half  [ r6 ][ r4 ][ r2 ][ r0 ]     (r = row offset in the word)
///   2-bit word (16 rows): pair j at bits 2j and 16+2j.     8-bit word (4 rows): pair j at bits 8j and 16+8j.
///   3-bit, three words per 32 rows: word w holds pairs 5w..5w+4 at bits 3j and 16+3j (j = 0..4); the last pair
///     (rows 30, 31) is spread over the spare bits 15 and 31 of the three words: bit b of row 30 at word b bit 15,
///     bit b of row 31 at word b bit 31.
///
/// Why: one AND with a mask repeated in both half-words and one OR with an fp16 exponent ("magic number") turn two
/// fields into a half2 (M + q0, M + q1) exactly, with no per-value shifts or conversions. A field starting at bit f
/// of its half-word is scaled by 2^f, so the magic's binade is chosen so that one unit of the field is 2^-f:
/// magic = 2^(10-f) (fp16 bits (25-f) << 10): f=0 -> 1024 (0x6400), f=2 -> 256, f=3 -> 128, f=4 -> 64, f=6 -> 16.
/// Fields must lie within mantissa bits 0..9, so words are shifted once (by 8 or 9) to reach their upper fields.
/// Subtracting (M + z) (hsub2, exact for these small integers) then gives q - z.
#include <cstdint>

#ifndef QB_GPTQ_HD
#if defined(__CUDACC__)
#define QB_GPTQ_HD __host__ __device__
#else
#define QB_GPTQ_HD
#endif
#endif

namespace qbench::gptq {

/// Geometry of the pairs in one device word for a bit width.
template <int Bits>
struct pair_geometry;

template <>
struct pair_geometry<2> {
    static constexpr int words_per_slab = 2;
    static constexpr int pairs_per_word = 8;
    static constexpr bool special_pair = false;
    QB_GPTQ_HD static constexpr int source_shift(int j) { return (j / 4) * 8; }
    QB_GPTQ_HD static constexpr int field_shift(int j) { return (j % 4) * 2; }
};
template <>
struct pair_geometry<3> {
    static constexpr int words_per_slab = 3;
    static constexpr int pairs_per_word = 5;
    static constexpr bool special_pair = true;  // pair 15 in the spare bits
    QB_GPTQ_HD static constexpr int source_shift(int j) { return (j / 3) * 9; }
    QB_GPTQ_HD static constexpr int field_shift(int j) { return (j % 3) * 3; }
};
template <>
struct pair_geometry<4> {
    static constexpr int words_per_slab = 4;
    static constexpr int pairs_per_word = 4;
    static constexpr bool special_pair = false;
    QB_GPTQ_HD static constexpr int source_shift(int j) { return (j / 2) * 8; }
    QB_GPTQ_HD static constexpr int field_shift(int j) { return (j % 2) * 4; }
};
template <>
struct pair_geometry<8> {
    static constexpr int words_per_slab = 8;
    static constexpr int pairs_per_word = 2;
    static constexpr bool special_pair = false;
    QB_GPTQ_HD static constexpr int source_shift(int j) { return j * 8; }
    QB_GPTQ_HD static constexpr int field_shift(int j) { return 0; }
};

/// fp16 bits of the magic number for a field starting at bit f of a half-word: 2^(10-f).
QB_GPTQ_HD constexpr std::uint32_t magic_half(int field_shift) { return static_cast<std::uint32_t>(25 - field_shift) << 10; }
/// The float value of that magic number.
QB_GPTQ_HD constexpr float magic_value(int field_shift) { return static_cast<float>(1024 >> field_shift); }

/// Bit position of a pair's field in its word: the low row at this position, the high row at +16.
template <int Bits>
QB_GPTQ_HD constexpr int pair_bit(int j) {
    return pair_geometry<Bits>::source_shift(j) + pair_geometry<Bits>::field_shift(j);
}

/// Pair j of word u as half2 bits: (M + q_lo) in the low half-word, (M + q_hi) in the high half-word.
template <int Bits>
QB_GPTQ_HD inline std::uint32_t decode_pair(std::uint32_t u, int j) {
    using g = pair_geometry<Bits>;
    const std::uint32_t field = ((1u << Bits) - 1u) << g::field_shift(j);
    const std::uint32_t magic = magic_half(g::field_shift(j));
    return ((u >> g::source_shift(j)) & (field | (field << 16))) | (magic | (magic << 16));
}

/// The 3-bit special pair (rows 30, 31 of a slab) from the spare bits 15/31 of the slab's three words.
QB_GPTQ_HD inline std::uint32_t decode_special_pair3(std::uint32_t u0, std::uint32_t u1, std::uint32_t u2) {
    return ((u0 >> 15) & 0x00010001u) | ((u1 >> 14) & 0x00020002u) | ((u2 >> 13) & 0x00040004u) | 0x64006400u;
}

/// half2 bits of (M + z, M + z) for a field shift: what hsub2 removes to leave q - z.
QB_GPTQ_HD inline std::uint32_t zero_pair(int field_shift, std::uint32_t z) {
    const std::uint32_t h = magic_half(field_shift) | (z << field_shift);
    return h | (h << 16);
}

}  // namespace qbench::gptq
