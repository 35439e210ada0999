// The GPU layout, checked on the CPU with the very decode functions the kernels run: repacking from AutoGPTQ's
// qweight, row sorting for act-order, slab groups, magic numbers, and the dequantized value of every weight.
#include "backends/gptq/gptq_decode.hpp"
#include "backends/gptq/gptq_device_layout.hpp"
#include "backends/gptq/gptq_format.hpp"
#include "backends/gptq/gptq_pack.hpp"
#include "qbench/common/counter_rng.hpp"
#include "qbench/common/half.hpp"

#include "random_quantized_layer.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

using namespace qbench;
using namespace qbench::gptq;

namespace {
std::size_t sz(std::int64_t v) { return static_cast<std::size_t>(v); }

quantized_linear random_layer(std::int64_t K, std::int64_t N, std::int64_t bits, std::int64_t gs, bool shuffled_groups,
                              std::uint64_t seed) {
    return test::random_quantized_layer(K, N, bits, gs, shuffled_groups, seed, "layout");
}
}  // namespace

TEST_CASE("magic numbers put a field's unit at 1", "[gptq][layout]") {
    CHECK(magic_half(0) == 0x6400u);
    CHECK(magic_half(2) == 0x5C00u);
    CHECK(magic_half(3) == 0x5800u);
    CHECK(magic_half(4) == 0x5400u);
    CHECK(magic_half(6) == 0x4C00u);
    for (int f : {0, 2, 3, 4, 6}) {
        CHECK(half_to_float(static_cast<std::uint16_t>(magic_half(f))) == magic_value(f));
        for (std::uint32_t q = 0; q < 8; ++q)
            CHECK(half_to_float(static_cast<std::uint16_t>(magic_half(f) | (q << f))) == magic_value(f) + static_cast<float>(q));
    }
}

TEST_CASE("4-bit device word: row pairs at bits 4j and 16+4j", "[gptq][layout]") {
    std::uint32_t words[4] = {};
    for (int t = 0; t < 8; ++t) place_code<4>(words, t, static_cast<std::uint32_t>(t + 1));
    CHECK(words[0] == 0x86427531u);
    CHECK(decode_pair<4>(words[0], 0) == 0x64026401u);  // (1024+1, 1024+2)
    CHECK(decode_pair<4>(words[0], 1) == 0x54405430u);  // (64+3, 64+4): fields at bit 4
    CHECK(decode_pair<4>(words[0], 2) == 0x64066405u);
    CHECK(decode_pair<4>(words[0], 3) == 0x54805470u);
}

TEST_CASE("3-bit device words: the last pair lives in the spare bits", "[gptq][layout]") {
    std::uint32_t words[3] = {};
    place_code<3>(words, 30, 5);  // 0b101
    place_code<3>(words, 31, 6);  // 0b110
    CHECK(words[0] == 0x00008000u);
    CHECK(words[1] == 0x80000000u);
    CHECK(words[2] == 0x80008000u);
    CHECK(decode_special_pair3(words[0], words[1], words[2]) == 0x64066405u);
    std::uint32_t w2[3] = {};
    for (int t = 0; t < 30; ++t) place_code<3>(w2, t, 7);
    CHECK((w2[0] & 0x80008000u) == 0u);  // fields never touch the spare bits
    CHECK(w2[0] == 0x7fff7fffu);
}

TEST_CASE("repacked layout decodes to the dequantized weights, all widths and shapes", "[gptq][layout]") {
    struct shape {
        std::int64_t K, N, gs;
        bool act;
    };
    const shape shapes[] = {{96, 40, 32, true}, {256, 64, 128, false}, {688, 36, 128, false},
                            {320, 96, 64, true}, {128, 32, -1, false}, {96, 8, 48, false}};
    std::uint64_t seed = 1;
    for (std::int64_t bits : {2, 3, 4, 8})
        for (const auto& sh : shapes) {
            const auto q = random_layer(sh.K, sh.N, bits, sh.gs, sh.act, seed++);
            const auto p = pack(q);
            const auto plan = plan_layout(sh.K, sh.N, bits, q.groups(), p.g_idx);
            INFO("bits " << bits << " K " << sh.K << " N " << sh.N << " gs " << sh.gs << " act " << sh.act);
            CHECK(plan.sequential == !sh.act);
            CHECK(plan.fused_ok == (effective_group(sh.gs, sh.K) % 32 == 0));
            CHECK(plan.slabs == ceil_div(sh.K, 32));
            CHECK(plan.tiles == ceil_div(sh.N, 32));
            // Sorted rows are grouped, in original order within a group.
            for (std::int64_t r = 1; r < sh.K; ++r) {
                const auto a = plan.row_of[sz(r - 1)], b = plan.row_of[sz(r)];
                CHECK((q.g_idx[sz(a)] < q.g_idx[sz(b)] || (q.g_idx[sz(a)] == q.g_idx[sz(b)] && a < b)));
            }
            if (!plan.fused_ok) continue;
            const auto qw = repack_qweight_ref(plan, p.qweight);
            const auto sc = tile_scales(plan, p.scales);
            const auto zs = tile_zeros(plan, p.qzeros);
            CHECK(qw.size() == plan.qweight_words());
            std::int64_t bad = 0;
            for (std::int64_t r = 0; r < sh.K; ++r)
                for (std::int64_t n = 0; n < sh.N; ++n) {
                    const std::int64_t k = plan.row_of[sz(r)];
                    const std::int64_t g = q.g_idx[sz(k)];
                    const float expect = round_to_half(
                        (static_cast<float>(q.codes[sz(n * sh.K + k)]) - static_cast<float>(q.zeros[sz(g * sh.N + n)])) *
                        q.scales[sz(g * sh.N + n)]);
                    bad += decode_device_weight(plan, qw, sc, zs, r, n) != expect;
                }
            CHECK(bad == 0);
            // Padding rows of the last slab and padding columns hold code 0.
            if (sh.K % 32 != 0 || sh.N % 32 != 0) {
                const auto plan2 = plan;
                std::int64_t nonzero_pad = 0;
                for (std::int64_t tile = 0; tile < plan2.tiles; ++tile)
                    for (std::int64_t c = 0; c < 32; ++c)
                        if (tile * 32 + c >= sh.N)
                            for (std::int64_t w = 0; w < bits; ++w)
                                nonzero_pad += qw[sz(((tile * plan2.slabs + plan2.slabs - 1) * bits + w) * 32 + c)] != 0;
                CHECK(nonzero_pad == 0);
            }
        }
}

TEST_CASE("device bytes stay within 1% of AutoGPTQ's at 4-bit g128", "[gptq][layout]") {
    std::vector<std::int32_t> g_idx(4096);
    for (std::int64_t k = 0; k < 4096; ++k) g_idx[sz(k)] = static_cast<std::int32_t>(k / 128);
    const auto plan = plan_layout(4096, 11008, 4, 32, g_idx);
    const double autogptq = 4096.0 * 11008 / 2 + 32.0 * 11008 * 2.5 + 4096 * 4;
    CHECK(static_cast<double>(plan.device_bytes()) < 1.01 * autogptq);
    CHECK(static_cast<double>(plan.device_bytes()) > 0.99 * autogptq);
}
