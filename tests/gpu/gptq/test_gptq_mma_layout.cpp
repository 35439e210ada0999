// The mma layout of the fused GPTQ kernel v2 (label cpu, no GPU needed): the host repack puts every code where
// mma_code finds it, the meta records hold the right scales and zeros, and a lane-by-lane emulation of the kernel
// (the same decode functions, the PTX fragment layouts of mma.m16n8k16 written out element by element, the
// permuted k order of A and B) computes x·W^T. A layout or fragment mistake shows up here before any GPU run.
#include "backends/gptq/gptq_decode.hpp"
#include "backends/gptq/gptq_device_layout.hpp"
#include "backends/gptq/gptq_format.hpp"
#include "backends/gptq/gptq_pack.hpp"
#include "qbench/common/counter_rng.hpp"
#include "qbench/common/half.hpp"

#include "mma_emulation.hpp"
#include "random_quantized_layer.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

using namespace qbench;
using namespace qbench::gptq;
using qbench::gptq::test::emulate_mma;
using qbench::gptq::test::hi_half;
using qbench::gptq::test::lo_half;

namespace {
std::size_t sz(std::int64_t v) { return static_cast<std::size_t>(v); }

quantized_linear random_layer(std::int64_t K, std::int64_t N, std::int64_t bits, std::int64_t gs, bool act, std::uint64_t seed) {
    return test::random_quantized_layer(K, N, bits, gs, act, seed, "mma-layout");
}


/// (M + q) - (M + z) per half, as hsub2 (exact for these integers), packed back to half2 bits.
std::uint32_t hsub2_bits(std::uint32_t a, std::uint32_t b) {
    const std::uint16_t lo = float_to_half(lo_half(a) - lo_half(b)), hi = float_to_half(hi_half(a) - hi_half(b));
    return static_cast<std::uint32_t>(lo) | (static_cast<std::uint32_t>(hi) << 16);
}

template <int Bits>
std::uint32_t lane_pair(const std::uint32_t* w, int P, int& shift) {
    using g = pair_geometry<Bits>;
    if (g::special_pair && P == 15) {
        shift = 0;
        return decode_special_pair3(w[0], w[1 % Bits], w[2 % Bits]);
    }
    shift = g::field_shift(P % g::pairs_per_word);
    return decode_pair<Bits>(w[P / g::pairs_per_word], P % g::pairs_per_word);
}

/// y[r][n] for r < rows (<= 8) as the v2 kernel computes it, lane by lane; x is [rows][slabs*32] (sorted order).
template <int Bits>
std::vector<double> emulate_kernel(const layout_plan& plan, const std::vector<std::uint32_t>& qw,
                                   const std::vector<std::uint32_t>& meta, const std::vector<std::uint16_t>& x, int rows) {
    const std::int64_t ldx = plan.slabs * 32;
    std::vector<double> y(sz(rows * plan.out_features), 0.0);
    for (std::int64_t tile = 0; tile < plan.ntiles; ++tile) {
        double acc[32][2] = {};
        for (std::int64_t kb = 0; kb < plan.kblocks; ++kb) {
            const std::uint32_t* unit = &qw[sz(unit_index(plan.ntiles, plan.kblocks, tile, kb) * 32 * Bits)];
            std::uint32_t w[32][8] = {};
            for (int L = 0; L < 32; ++L)
                for (int i = 0; i < Bits; ++i) w[L][i] = unit[unit_word_offset(Bits, L, i)];
            for (int j = 0; j < 4; ++j) {
                const std::int64_t s = kb * 4 + j;
                if (s >= plan.slabs) continue;  // the kernel loads x = 0 there
                const std::int64_t grp = plan.slab_group[sz(s)];
                const std::uint32_t* rec = &meta[sz((tile * plan.groups + grp) * k_meta_words)];
                // The kernel's slab_mma2: the 16-byte x load as the A quad (lanes past the batch read the last
                // row); step 0 = (P0, P2) kept in D rows 0..7, step 1 = (P1, P3) kept in D rows 8..15.
                std::uint32_t a[4][32] = {}, b[4][32] = {};
                for (int L = 0; L < 32; ++L) {
                    const int g = L / 4, q = L % 4;
                    const std::uint32_t z = (rec[4 + g / 4] >> (8 * (g % 4))) & 0xffu;
                    for (int i = 0; i < 4; ++i) {
                        int shift = 0;
                        const std::uint32_t pair = lane_pair<Bits>(w[L], 4 * j + i, shift);
                        b[i][L] = hsub2_bits(pair, zero_pair(shift, z));
                    }
                    const std::uint16_t* xp = &x[sz(std::min(g, rows - 1) * ldx + s * 32 + 8 * q)];
                    for (int i = 0; i < 4; ++i)
                        a[i][L] = static_cast<std::uint32_t>(xp[2 * i]) | (static_cast<std::uint32_t>(xp[2 * i + 1]) << 16);
                }
                double d0[32][4] = {}, d1[32][4] = {};
                emulate_mma(a, b[0], b[2], d0);
                emulate_mma(a, b[1], b[3], d1);
                for (int L = 0; L < 32; ++L) {
                    const int q = L % 4;
                    acc[L][0] += lo_half(rec[q]) * (d0[L][0] + d1[L][2]);
                    acc[L][1] += hi_half(rec[q]) * (d0[L][1] + d1[L][3]);
                }
            }
        }
        for (int L = 0; L < 32; ++L) {
            const int g = L / 4, q = L % 4;
            for (int c = 0; c < 2; ++c) {
                const std::int64_t n = tile * 8 + 2 * q + c;
                if (g < rows && n < plan.out_features) y[sz(g * plan.out_features + n)] = acc[L][c];
            }
        }
    }
    return y;
}
}  // namespace

TEST_CASE("mma layout: every code where the kernels look for it, meta records, block groups", "[gptq][layout][mma]") {
    struct shape {
        std::int64_t K, N, gs;
        bool act;
    };
    const shape shapes[] = {{96, 40, 32, true}, {256, 64, 128, false}, {688, 36, 128, false}, {320, 96, 64, true},
                            {128, 32, -1, false}, {512, 24, 128, true}, {1024, 16, 256, false}};
    std::uint64_t seed = 11;
    for (std::int64_t bits : {2, 3, 4, 8})
        for (const auto& sh : shapes) {
            const auto q = random_layer(sh.K, sh.N, bits, sh.gs, sh.act, seed++);
            const auto p = pack(q);
            const auto plan = plan_layout(sh.K, sh.N, bits, q.groups(), p.g_idx);
            INFO("bits " << bits << " K " << sh.K << " N " << sh.N << " gs " << sh.gs << " act " << sh.act);
            CHECK(plan.kblocks == ceil_div(plan.slabs, 4));
            CHECK(plan.ntiles == ceil_div(sh.N, 8));
            const auto qw = repack_qweight_mma_ref(plan, p.qweight);
            REQUIRE(qw.size() == plan.mma_qweight_words());
            std::int64_t bad = 0;
            for (std::int64_t r = 0; r < plan.kblocks * k_block_rows; ++r)
                for (std::int64_t n = 0; n < plan.ntiles * 8; ++n) {
                    const std::uint32_t expect = (r < sh.K && n < sh.N) ? q.codes[sz(n * sh.K + plan.row_of[sz(r)])] : 0u;
                    bad += mma_code(plan, qw, r, n) != expect;
                }
            CHECK(bad == 0);
            const auto meta = mma_meta(plan, p.scales, p.qzeros);
            std::int64_t bad_meta = 0;
            for (std::int64_t g = 0; g < plan.groups; ++g)
                for (std::int64_t n = 0; n < sh.N; ++n) {
                    const std::uint32_t* rec = &meta[sz(((n / 8) * plan.groups + g) * k_meta_words)];
                    const int c = static_cast<int>(n % 8);
                    bad_meta += ((rec[c / 2] >> (16 * (c % 2))) & 0xffffu) != p.scales[sz(g * sh.N + n)];
                    bad_meta += ((rec[4 + c / 4] >> (8 * (c % 4))) & 0xffu) != q.zeros[sz(g * sh.N + n)];
                }
            CHECK(bad_meta == 0);
            // Unit order: a bijection onto [0, ntiles * kblocks), each k-slice's units of consecutive tiles
            // contiguous; the unit meta holds each unit's block-group record.
            std::vector<int> seen(sz(plan.ntiles * plan.kblocks), 0);
            for (std::int64_t tile = 0; tile < plan.ntiles; ++tile)
                for (std::int64_t kb = 0; kb < plan.kblocks; ++kb) {
                    const std::int64_t u = unit_index(plan.ntiles, plan.kblocks, tile, kb);
                    REQUIRE(u >= 0);
                    REQUIRE(u < plan.ntiles * plan.kblocks);
                    ++seen[sz(u)];
                    const int w = kslice_of(plan.kblocks, kb);
                    CHECK(kslice_begin(plan.kblocks, w) <= kb);
                    CHECK(kb < kslice_begin(plan.kblocks, w + 1));
                    if (kb + 1 < kslice_begin(plan.kblocks, w + 1)) CHECK(unit_index(plan.ntiles, plan.kblocks, tile, kb + 1) == u + 1);
                    else if (tile + 1 < plan.ntiles)
                        CHECK(unit_index(plan.ntiles, plan.kblocks, tile + 1, kslice_begin(plan.kblocks, w)) == u + 1);
                }
            CHECK(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
            const auto umeta = mma_unit_meta(plan, meta);
            std::int64_t bad_unit_meta = 0;
            for (std::int64_t tile = 0; tile < plan.ntiles; ++tile)
                for (std::int64_t kb = 0; kb < plan.kblocks; ++kb)
                    for (std::int64_t i = 0; i < k_meta_words; ++i)
                        bad_unit_meta += umeta[sz(unit_index(plan.ntiles, plan.kblocks, tile, kb) * k_meta_words + i)] !=
                                         meta[sz((tile * plan.groups + plan.block_group[sz(kb)]) * k_meta_words + i)];
            CHECK(bad_unit_meta == 0);
            // Block groups: the group of every slab of a block is its block's group, and group_shift agrees.
            if (plan.block_groups)
                for (std::int64_t s = 0; s < plan.slabs; ++s) {
                    CHECK(plan.slab_group[sz(s)] == plan.block_group[sz(s / 4)]);
                    if (plan.group_shift >= 0) CHECK(plan.block_group[sz(s / 4)] == (s / 4) >> plan.group_shift);
                }
        }
    // The kernels build zero pairs as ((z * 0x10001) << f) | magic(f) * 0x10001 (PRMT then shift/or).
    for (std::uint32_t z = 0; z < 256; ++z)
        for (int f : {0, 2, 3, 4, 6})
            if (z << f < 1024u) CHECK((((z * 0x00010001u) << f) | (magic_half(f) * 0x00010001u)) == zero_pair(f, z));
    // g128 / g-1 use the shift; g32 does not have block groups.
    std::vector<std::int32_t> g128(4096), g1(4096, 0), g32(4096);
    for (std::int32_t k = 0; k < 4096; ++k) g128[sz(k)] = k / 128, g32[sz(k)] = k / 32;
    CHECK(plan_layout(4096, 64, 4, 32, g128).group_shift == 0);
    CHECK(plan_layout(4096, 64, 4, 1, g1).group_shift >= 0);
    CHECK_FALSE(plan_layout(4096, 64, 4, 128, g32).block_groups);
}

TEST_CASE("mma layout: a lane-level emulation of the v2 kernel computes x·W^T", "[gptq][layout][mma]") {
    struct shape {
        std::int64_t K, N, gs;
        bool act;
    };
    const shape shapes[] = {{256, 24, 128, false}, {688, 20, 128, false}, {320, 16, 32, true}, {96, 9, -1, false}};
    std::uint64_t seed = 77;
    for (std::int64_t bits : {2, 3, 4, 8})
        for (const auto& sh : shapes)
            for (int rows : {1, 3, 8}) {
                const auto q = random_layer(sh.K, sh.N, bits, sh.gs, sh.act, seed++);
                const auto p = pack(q);
                const auto plan = plan_layout(sh.K, sh.N, bits, q.groups(), p.g_idx);
                REQUIRE(plan.fused_ok);
                const auto qw = repack_qweight_mma_ref(plan, p.qweight);
                const auto meta = mma_meta(plan, p.scales, p.qzeros);
                // x in sorted order, zero-padded to whole slabs (as the staging kernel leaves it).
                const auto key = stream_key(seed, hash_string("mma-x"));
                std::vector<float> x(sz(rows * sh.K));
                for (std::size_t i = 0; i < x.size(); ++i) x[i] = round_to_half(normal01(key, i));
                const std::int64_t ldx = plan.slabs * 32;
                std::vector<std::uint16_t> xs(sz(rows * ldx), 0);
                for (int r = 0; r < rows; ++r)
                    for (std::int64_t k = 0; k < sh.K; ++k) xs[sz(r * ldx + k)] = float_to_half(x[sz(r * sh.K + plan.row_of[sz(k)])]);
                std::vector<double> y;
                switch (bits) {
                case 2: y = emulate_kernel<2>(plan, qw, meta, xs, rows); break;
                case 3: y = emulate_kernel<3>(plan, qw, meta, xs, rows); break;
                case 4: y = emulate_kernel<4>(plan, qw, meta, xs, rows); break;
                default: y = emulate_kernel<8>(plan, qw, meta, xs, rows); break;
                }
                const auto w = q.dequantize();  // [N][K] float
                double num = 0, den = 0;
                for (int r = 0; r < rows; ++r)
                    for (std::int64_t n = 0; n < sh.N; ++n) {
                        double ref = 0;
                        for (std::int64_t k = 0; k < sh.K; ++k) ref += static_cast<double>(x[sz(r * sh.K + k)]) * w[sz(n * sh.K + k)];
                        const double got = y[sz(r * sh.N + n)];
                        num += (got - ref) * (got - ref);
                        den += ref * ref;
                    }
                INFO("bits " << bits << " K " << sh.K << " N " << sh.N << " gs " << sh.gs << " act " << sh.act << " rows " << rows);
                CHECK(std::sqrt(num / den) < 1e-5);
            }
}
