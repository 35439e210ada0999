#include "backends/gptq/gptq_a_layout.hpp"

#include "backends/gptq/gptq_format.hpp"
#include "backends/gptq/gptq_pack.hpp"

#include <stdexcept>
#include <string>

namespace qbench::gptq {

namespace {
std::size_t sz(std::int64_t v) { return static_cast<std::size_t>(v); }

void require_supported(const layout_plan& plan) {
    if (!a_layout_supported(plan))
        throw std::invalid_argument("gptq v3 layout: needs 2, 3, 4 or 8 bits with every k-block in one group (bits " +
                                    std::to_string(plan.bits) + ")");
}

/// fp16 bits of the exact integer 1024 + v (0 <= v < 1024).
std::uint32_t half_1024_plus(std::uint32_t v) { return 0x6400u | v; }

/// The words of lane `lane` of chunk c of mtile `tile` (a_lane_words of them), gathered as the device repack does.
void gather_lane_words(const layout_plan& plan, std::span<const std::int32_t> qweight, std::int64_t tile, std::int64_t c,
                       int lane, std::uint32_t (&w)[6]) {
    const std::int32_t* row_of = plan.sequential ? nullptr : plan.row_of.data();
    a_with_bits(plan.bits, [&](auto b) {
        constexpr int B = decltype(b)::value;
        a_gather_lane<B>(qweight.data(), row_of, plan.in_features, plan.out_features, tile, c, lane,
                         reinterpret_cast<std::uint32_t(&)[a_lane_words(B)]>(w));
    });
}

}  // namespace

std::vector<std::uint32_t> repack_qweight_a_ref(const layout_plan& plan, std::span<const std::int32_t> qweight) {
    require_supported(plan);
    if (qweight.size() != sz(qweight_rows(plan.in_features, plan.bits) * plan.out_features))
        throw std::invalid_argument("gptq v3 layout: qweight size");
    const int bits = static_cast<int>(plan.bits);
    const std::int64_t mtiles = a_mtiles(plan), chunks = plan.kblocks * a_chunks_per_block(bits);
    std::vector<std::uint32_t> out(sz(static_cast<std::int64_t>(a_qweight_words(plan))));
    for (std::int64_t tile = 0; tile < mtiles; ++tile)
        for (std::int64_t c = 0; c < chunks; ++c) {
            const std::int64_t base = a_chunk_index(mtiles, plan.kblocks, bits, tile, c) * a_chunk_words(bits);
            for (int lane = 0; lane < 32; ++lane) {
                std::uint32_t w[6];
                gather_lane_words(plan, qweight, tile, c, lane, w);
                for (int i = 0; i < a_lane_words(bits); ++i) out[sz(base + a_lane_word_offset(lane, i))] = w[i];
            }
        }
    return out;
}

std::vector<std::uint32_t> a_meta(const layout_plan& plan, std::span<const std::uint16_t> scales,
                                  std::span<const std::int32_t> qzeros) {
    require_supported(plan);
    const std::int64_t N = plan.out_features, G = plan.groups, mtiles = a_mtiles(plan);
    const int bits = static_cast<int>(plan.bits);
    if (scales.size() != sz(G * N)) throw std::invalid_argument("gptq v3 layout: scales size");
    const auto z = unpack_qzeros(qzeros, G, N, plan.bits);
    std::vector<std::uint32_t> out(sz(static_cast<std::int64_t>(a_meta_words(plan))), 0);
    for (std::int64_t tile = 0; tile < mtiles; ++tile)
        for (std::int64_t kb = 0; kb < plan.kblocks; ++kb) {
            const std::int64_t g_of_block = plan.block_group[sz(kb)];
            std::uint32_t* rec = &out[sz(a_record_index(mtiles, plan.kblocks, tile, kb) * k_a_record_words)];
            for (int g = 0; g < 8; ++g)
                for (int h = 0; h < 2; ++h) {
                    const std::int64_t n = tile * k_a_tile_cols + g + 8 * h;
                    std::uint32_t s = 0, zc = 0;
                    if (n < N) {
                        s = scales[sz(g_of_block * N + n)];
                        zc = z[sz(g_of_block * N + n)];
                    }
                    const std::uint32_t c = half_1024_plus(h == 1 ? zc << a_r1_shift(bits) : zc);
                    rec[g * k_a_entry_words + 0] |= s << (16 * h);
                    rec[g * k_a_entry_words + 1] |= c << (16 * h);
                }
        }
    return out;
}

std::uint32_t a_code(const layout_plan& plan, std::span<const std::uint32_t> qweight, std::int64_t r, std::int64_t n) {
    require_supported(plan);
    const int bits = static_cast<int>(plan.bits);
    const int cr = a_chunk_rows(bits);
    const std::int64_t c = r / cr, rr = r % cr;
    const int t = static_cast<int>(rr / (cr / 4)), m = static_cast<int>((rr % (cr / 4)) / 4), j = static_cast<int>(rr % 4);
    const std::int64_t tile = n / k_a_tile_cols;
    const int nn = static_cast<int>(n % k_a_tile_cols), g = nn % 8, h = nn / 8;
    const int lane = 4 * g + t;
    const std::int64_t base = a_chunk_index(a_mtiles(plan), plan.kblocks, bits, tile, c) * a_chunk_words(bits);
    std::uint32_t w[6] = {};
    for (int i = 0; i < a_lane_words(bits); ++i) w[i] = qweight[sz(base + a_lane_word_offset(lane, i))];
    std::uint32_t a[4];
    a_with_bits(bits, [&](auto b) {
        constexpr int B = decltype(b)::value;
        a_fragment<B>(reinterpret_cast<const std::uint32_t(&)[a_lane_words(B)]>(w), m, a);
    });
    // a0 = (r0: p, p+1), a1 = (r1: p, p+1), a2 = (r0: p+2, p+3), a3 = (r1: p+2, p+3).
    const std::uint32_t pair = a[h + 2 * (j >> 1)];
    const std::uint32_t half = (j & 1) ? pair >> 16 : pair & 0xffffu;
    const std::uint32_t v = half - 0x6400u;  // exact integers 1024 + f q: mantissa bits
    return h == 1 ? v >> a_r1_shift(bits) : v;
}

}  // namespace qbench::gptq
