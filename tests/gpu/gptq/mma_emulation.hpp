#pragma once
// A CPU emulation of one mma.m16n8k16 (f16 inputs, accumulation in double) from per-lane fragments, by the PTX ISA's
// fragment tables: the layout tests of kernels v2 and v3 run their lane-level emulations through it.
#include "qbench/common/half.hpp"

#include <cstdint>

namespace qbench::gptq::test {

inline float lo_half(std::uint32_t v) { return half_to_float(static_cast<std::uint16_t>(v & 0xffffu)); }
inline float hi_half(std::uint32_t v) { return half_to_float(static_cast<std::uint16_t>(v >> 16)); }

/// One mma.m16n8k16 (f32 accumulate) from per-lane fragments, by the PTX ISA's fragment tables (all 16 rows of A:
/// a0 = (row g, k 2q..2q+1), a1 = (row g+8, same k), a2 = (row g, k 2q+8..), a3 = (row g+8, k 2q+8..);
/// b0 = (k 2q..2q+1, column g), b1 = (k 2q+8.., column g)). d[lane] = {D[g][2q], D[g][2q+1], D[g+8][2q], D[g+8][2q+1]}.
inline void emulate_mma(const std::uint32_t (&a)[4][32], const std::uint32_t (&b0)[32], const std::uint32_t (&b1)[32],
                 double (&d)[32][4]) {
    double A[16][16] = {}, B[16][8] = {};
    for (int L = 0; L < 32; ++L) {
        const int g = L / 4, q = L % 4;
        A[g][2 * q] = lo_half(a[0][L]);
        A[g][2 * q + 1] = hi_half(a[0][L]);
        A[g + 8][2 * q] = lo_half(a[1][L]);
        A[g + 8][2 * q + 1] = hi_half(a[1][L]);
        A[g][2 * q + 8] = lo_half(a[2][L]);
        A[g][2 * q + 9] = hi_half(a[2][L]);
        A[g + 8][2 * q + 8] = lo_half(a[3][L]);
        A[g + 8][2 * q + 9] = hi_half(a[3][L]);
        B[2 * q][g] = lo_half(b0[L]);
        B[2 * q + 1][g] = hi_half(b0[L]);
        B[2 * q + 8][g] = lo_half(b1[L]);
        B[2 * q + 9][g] = hi_half(b1[L]);
    }
    for (int L = 0; L < 32; ++L) {
        const int g = L / 4, q = L % 4;
        for (int c = 0; c < 4; ++c)
            for (int k = 0; k < 16; ++k) d[L][c] += A[g + 8 * (c / 2)][k] * B[k][2 * q + c % 2];
    }
}

}  // namespace qbench::gptq::test
