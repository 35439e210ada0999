// The v3 layout of the GPTQ kernel that takes the weights as the mma A operand (label cpu, no GPU needed): the host
// repack puts every code where the kernel's decode (a_fragment) finds it, the meta records hold the scales and the
// folded zeros, chunks come in k-slice order, and a lane-by-lane emulation of the kernel (the PTX fragment tables,
// the permuted k order, the ones-mma for sum(x), the per-block correction S * (acc - C * sum)) computes x·W^T.
#include "backends/gptq/gptq_a_layout.hpp"
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
#include <vector>

using namespace qbench;
using namespace qbench::gptq;
using qbench::gptq::test::emulate_mma;
using qbench::gptq::test::hi_half;
using qbench::gptq::test::lo_half;

namespace {
std::size_t sz(std::int64_t v) { return static_cast<std::size_t>(v); }

quantized_linear random_layer(std::int64_t K, std::int64_t N, std::int64_t bits, std::int64_t gs, bool act, std::uint64_t seed) {
    return test::random_quantized_layer(K, N, bits, gs, act, seed, "a-layout");
}

/// y[r][n] for r < rows (<= 8) as kernel v3 computes it, lane by lane; x is [rows][kblocks*128] in sorted order.
template <int Bits>
std::vector<double> emulate_kernel(const layout_plan& plan, const std::vector<std::uint32_t>& qw,
                                   const std::vector<std::uint32_t>& meta, const std::vector<std::uint16_t>& x, int rows) {
    constexpr int cr = a_chunk_rows(Bits), cpb = a_chunks_per_block(Bits);
    const std::int64_t ldx = plan.kblocks * k_block_rows, mtiles = a_mtiles(plan), N = plan.out_features;
    std::vector<double> y(sz(rows * N), 0.0);
    const std::uint32_t ones = 0x3C003C00u;
    std::uint32_t ones_a[4][32];
    for (auto& row : ones_a) std::fill(std::begin(row), std::end(row), ones);
    for (std::int64_t tile = 0; tile < mtiles; ++tile) {
        double out[32][4] = {};
        for (std::int64_t kb = 0; kb < plan.kblocks; ++kb) {
            double acc[32][4] = {}, sum[32][4] = {};
            for (int cc = 0; cc < cpb; ++cc) {
                const std::int64_t c = kb * cpb + cc;
                const std::uint32_t* chunk = &qw[sz(a_chunk_index(mtiles, plan.kblocks, Bits, tile, c) * a_chunk_words(Bits))];
                for (int m = 0; m < a_mmas_per_chunk(Bits); ++m) {
                    std::uint32_t a[4][32], b0[32], b1[32];
                    for (int L = 0; L < 32; ++L) {
                        const int g = L / 4, t = L % 4;
                        std::uint32_t w[a_lane_words(Bits)];
                        for (int i = 0; i < a_lane_words(Bits); ++i) w[i] = chunk[a_lane_word_offset(L, i)];
                        std::uint32_t f[4];
                        a_fragment<Bits>(w, m, f);
                        for (int i = 0; i < 4; ++i) a[i][L] = f[i];
                        const std::int64_t p = c * cr + t * (cr / 4) + 4 * m;
                        auto pair = [&](std::int64_t k) {
                            if (g >= rows) return 0u;
                            return static_cast<std::uint32_t>(x[sz(g * ldx + k)]) | (static_cast<std::uint32_t>(x[sz(g * ldx + k + 1)]) << 16);
                        };
                        b0[L] = pair(p);
                        b1[L] = pair(p + 2);
                    }
                    emulate_mma(a, b0, b1, acc);
                    emulate_mma(ones_a, b0, b1, sum);
                }
            }
            const std::uint32_t* rec = &meta[sz(a_record_index(mtiles, plan.kblocks, tile, kb) * k_a_record_words)];
            for (int L = 0; L < 32; ++L) {
                const int g = L / 4;
                const std::uint32_t sw = rec[g * k_a_entry_words], cw = rec[g * k_a_entry_words + 1];
                const double s0 = lo_half(sw), s1 = hi_half(sw) / static_cast<double>(1 << a_r1_shift(Bits));
                const double c0 = lo_half(cw), c1 = hi_half(cw);
                out[L][0] += s0 * (acc[L][0] - c0 * sum[L][0]);
                out[L][1] += s0 * (acc[L][1] - c0 * sum[L][1]);
                out[L][2] += s1 * (acc[L][2] - c1 * sum[L][2]);
                out[L][3] += s1 * (acc[L][3] - c1 * sum[L][3]);
            }
        }
        for (int L = 0; L < 32; ++L) {
            const int g = L / 4, t = L % 4;
            for (int e = 0; e < 4; ++e) {
                const int r = 2 * t + e % 2;
                const std::int64_t n = tile * k_a_tile_cols + g + 8 * (e / 2);
                if (r < rows && n < N) y[sz(r * N + n)] = out[L][e];
            }
        }
    }
    return y;
}
}  // namespace

TEST_CASE("v3 layout: every code where the kernel decodes it, meta records, chunk order", "[gptq][layout][v3]") {
    struct shape {
        std::int64_t K, N, gs;
        bool act;
    };
    const shape shapes[] = {{256, 64, 128, false}, {688, 36, 128, false}, {128, 32, -1, false}, {512, 24, 128, true},
                            {1024, 16, 256, false}, {96, 40, 128, false}, {1408, 20, 128, true}};
    std::uint64_t seed = 31;
    for (std::int64_t bits : {2, 3, 4, 8})
        for (const auto& sh : shapes) {
            const auto q = random_layer(sh.K, sh.N, bits, sh.gs, sh.act, seed++);
            const auto p = pack(q);
            const auto plan = plan_layout(sh.K, sh.N, bits, q.groups(), p.g_idx);
            INFO("bits " << bits << " K " << sh.K << " N " << sh.N << " gs " << sh.gs << " act " << sh.act);
            REQUIRE(a_layout_supported(plan));
            const std::int64_t mtiles = a_mtiles(plan);
            CHECK(mtiles == ceil_div(sh.N, 16));
            const auto qw = repack_qweight_a_ref(plan, p.qweight);
            REQUIRE(qw.size() == a_qweight_words(plan));
            std::int64_t bad = 0;
            for (std::int64_t r = 0; r < plan.kblocks * k_block_rows; ++r)
                for (std::int64_t n = 0; n < mtiles * 16; ++n) {
                    const std::uint32_t expect = (r < sh.K && n < sh.N) ? q.codes[sz(n * sh.K + plan.row_of[sz(r)])] : 0u;
                    bad += a_code(plan, qw, r, n) != expect;
                }
            CHECK(bad == 0);
            const auto meta = a_meta(plan, p.scales, p.qzeros);
            REQUIRE(meta.size() == a_meta_words(plan));
            std::int64_t bad_meta = 0;
            for (std::int64_t kb = 0; kb < plan.kblocks; ++kb)
                for (std::int64_t n = 0; n < mtiles * 16; ++n) {
                    const std::uint32_t* rec = &meta[sz(a_record_index(mtiles, plan.kblocks, n / 16, kb) * k_a_record_words)];
                    const int g = static_cast<int>(n % 8), h = static_cast<int>((n % 16) / 8);
                    const std::uint32_t s = (rec[g * 2] >> (16 * h)) & 0xffffu, c = (rec[g * 2 + 1] >> (16 * h)) & 0xffffu;
                    const std::int64_t grp = plan.block_group[sz(kb)];
                    const std::uint32_t es = n < sh.N ? p.scales[sz(grp * sh.N + n)] : 0u;
                    const std::uint32_t z = n < sh.N ? q.zeros[sz(grp * sh.N + n)] : 0u;
                    bad_meta += s != es;
                    const std::uint32_t zf = h == 1 ? z << a_r1_shift(static_cast<int>(bits)) : z;  // r1's factor f
                    bad_meta += half_to_float(static_cast<std::uint16_t>(c)) != 1024.0f + static_cast<float>(zf);
                }
            CHECK(bad_meta == 0);
            // Chunk order: a bijection; each warp's slice of consecutive mtiles is one contiguous run.
            const std::int64_t chunks = plan.kblocks * a_chunks_per_block(static_cast<int>(bits));
            std::vector<int> seen(sz(mtiles * chunks), 0);
            for (int w = 0; w < k_a_kslices; ++w) {
                const std::int64_t c0 = kslice_begin(plan.kblocks, w, k_a_kslices) * a_chunks_per_block(static_cast<int>(bits));
                const std::int64_t c1 = kslice_begin(plan.kblocks, w + 1, k_a_kslices) * a_chunks_per_block(static_cast<int>(bits));
                std::int64_t expect = -1;
                for (std::int64_t tile = 0; tile < mtiles; ++tile)
                    for (std::int64_t c = c0; c < c1; ++c) {
                        const std::int64_t i = a_chunk_index(mtiles, plan.kblocks, static_cast<int>(bits), tile, c);
                        REQUIRE(i >= 0);
                        REQUIRE(i < mtiles * chunks);
                        ++seen[sz(i)];
                        if (expect >= 0) CHECK(i == expect);
                        expect = i + 1;
                    }
            }
            CHECK(std::all_of(seen.begin(), seen.end(), [](int v) { return v == 1; }));
        }
    // Layers v3 does not take: other widths, blocks straddling groups (g32 / g64).
    std::vector<std::int32_t> g32(512);
    for (std::int32_t k = 0; k < 512; ++k) g32[sz(k)] = k / 32;
    CHECK_FALSE(a_layout_supported(plan_layout(512, 64, 4, 16, g32)));
    std::vector<std::int32_t> g128(512);
    for (std::int32_t k = 0; k < 512; ++k) g128[sz(k)] = k / 128;
    CHECK_FALSE(a_layout_supported(plan_layout(512, 64, 3, 16, g32)));
    for (std::int64_t bits : {2, 3, 4, 8}) CHECK(a_layout_supported(plan_layout(512, 64, bits, 4, g128)));
}

TEST_CASE("v3 layout: a lane-level emulation of the v3 kernel computes x·W^T", "[gptq][layout][v3]") {
    struct shape {
        std::int64_t K, N, gs;
        bool act;
    };
    const shape shapes[] = {{256, 40, 128, false}, {688, 20, 128, false}, {512, 16, 128, true}, {96, 9, -1, false},
                            {1024, 24, 256, false}};
    std::uint64_t seed = 97;
    for (std::int64_t bits : {2, 3, 4, 8})
        for (const auto& sh : shapes)
            for (int rows : {1, 2, 5, 8}) {
                const auto q = random_layer(sh.K, sh.N, bits, sh.gs, sh.act, seed++);
                const auto p = pack(q);
                const auto plan = plan_layout(sh.K, sh.N, bits, q.groups(), p.g_idx);
                REQUIRE(a_layout_supported(plan));
                const auto qw = repack_qweight_a_ref(plan, p.qweight);
                const auto meta = a_meta(plan, p.scales, p.qzeros);
                const auto key = stream_key(seed, hash_string("a-x"));
                std::vector<float> x(sz(rows * sh.K));
                for (std::size_t i = 0; i < x.size(); ++i) x[i] = round_to_half(normal01(key, i));
                const std::int64_t ldx = plan.kblocks * k_block_rows;
                std::vector<std::uint16_t> xs(sz(rows * ldx), 0);  // sorted order, zero past K (as staged)
                for (int r = 0; r < rows; ++r)
                    for (std::int64_t k = 0; k < sh.K; ++k) xs[sz(r * ldx + k)] = float_to_half(x[sz(r * sh.K + plan.row_of[sz(k)])]);
                std::vector<double> y;
                a_with_bits(bits, [&](auto b) { y = emulate_kernel<decltype(b)::value>(plan, qw, meta, xs, rows); });
                const auto w = q.dequantize();  // [N][K]
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
