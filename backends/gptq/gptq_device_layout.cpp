#include "backends/gptq/gptq_device_layout.hpp"

#include "backends/gptq/gptq_format.hpp"
#include "backends/gptq/gptq_pack.hpp"
#include "qbench/common/half.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

namespace qbench::gptq {

namespace {
std::size_t sz(std::int64_t v) { return static_cast<std::size_t>(v); }

template <int Bits>
void repack_tile_slab(const layout_plan& plan, std::span<const std::int32_t> qweight, std::int64_t tile, std::int64_t s,
                      std::uint32_t* out) {
    const std::int64_t K = plan.in_features, N = plan.out_features;
    for (std::int64_t c = 0; c < k_tile_cols; ++c) {
        const std::int64_t n = tile * k_tile_cols + c;
        std::uint32_t words[8] = {};
        if (n < N)
            for (int t = 0; t < 32; ++t) {
                const std::int64_t r = s * k_slab_rows + t;
                if (r >= K) break;
                place_code<Bits>(words, t, autogptq_code(qweight.data(), N, Bits, plan.row_of[sz(r)], n));
            }
        for (int w = 0; w < Bits; ++w) out[w * k_tile_cols + c] = words[w];
    }
}

template <int Bits>
float decode_impl(const layout_plan& plan, std::span<const std::uint32_t> qweight, std::span<const std::uint16_t> scales,
                  std::span<const std::uint8_t> zeros, std::int64_t r, std::int64_t n) {
    using g = pair_geometry<Bits>;
    const std::int64_t s = r / k_slab_rows, t = r % k_slab_rows;
    const std::int64_t tile = n / k_tile_cols, c = n % k_tile_cols;
    const std::uint32_t* w = &qweight[sz(((tile * plan.slabs + s) * Bits) * k_tile_cols + c)];
    auto word = [&](int i) { return w[i * k_tile_cols]; };
    const std::int64_t p = t / 2, h = t % 2;
    std::uint32_t pair;
    int fshift;
    if (g::special_pair && p == 15) {
        pair = decode_special_pair3(word(0), word(1), word(2));
        fshift = 0;
    } else {
        const int wi = static_cast<int>(p / g::pairs_per_word), j = static_cast<int>(p % g::pairs_per_word);
        pair = decode_pair<Bits>(word(wi), j);
        fshift = g::field_shift(j);
    }
    const std::int64_t grp = plan.slab_group[sz(s)];
    const std::size_t meta = sz((tile * plan.groups + grp) * k_tile_cols + c);
    const std::uint32_t zp = zero_pair(fshift, zeros[meta]);
    const auto half_of = [&](std::uint32_t v) { return static_cast<std::uint16_t>(h ? v >> 16 : v & 0xffffu); };
    const float diff = half_to_float(half_of(pair)) - half_to_float(half_of(zp));  // hsub2: exact
    return round_to_half(diff * half_to_float(scales[meta]));                       // hmul2: one rounding
}
}  // namespace

std::uint64_t layout_plan::device_bytes() const {
    std::uint64_t b = qweight_words() * 4 + meta_entries() * 3 + static_cast<std::uint64_t>(slabs) * 4;
    if (!sequential) b += static_cast<std::uint64_t>(in_features) * 4;
    return b;
}

layout_plan plan_layout(std::int64_t K, std::int64_t N, std::int64_t bits, std::int64_t groups,
                        std::span<const std::int32_t> g_idx) {
    if (!is_supported_bits(bits)) throw std::invalid_argument("gptq layout: bits " + std::to_string(bits));
    if (g_idx.size() != sz(K)) throw std::invalid_argument("gptq layout: g_idx has " + std::to_string(g_idx.size()) + " entries, expected " + std::to_string(K));
    layout_plan p;
    p.in_features = K;
    p.out_features = N;
    p.bits = bits;
    p.groups = groups;
    p.slabs = ceil_div(K, k_slab_rows);
    p.tiles = ceil_div(N, k_tile_cols);
    p.row_of.resize(sz(K));
    std::iota(p.row_of.begin(), p.row_of.end(), 0);
    for (auto gi : g_idx)
        if (gi < 0 || gi >= groups) throw std::invalid_argument("gptq layout: g_idx value " + std::to_string(gi) + " outside [0, " + std::to_string(groups) + ")");
    std::stable_sort(p.row_of.begin(), p.row_of.end(), [&](std::int32_t a, std::int32_t b) { return g_idx[sz(a)] < g_idx[sz(b)]; });
    p.sequential = true;
    for (std::int64_t r = 0; r < K; ++r)
        if (p.row_of[sz(r)] != r) p.sequential = false;
    p.slab_group.resize(sz(p.slabs));
    p.fused_ok = true;
    for (std::int64_t s = 0; s < p.slabs; ++s) {
        const std::int32_t g0 = g_idx[sz(p.row_of[sz(s * k_slab_rows)])];
        p.slab_group[sz(s)] = g0;
        for (std::int64_t r = s * k_slab_rows; r < std::min(K, (s + 1) * k_slab_rows); ++r)
            if (g_idx[sz(p.row_of[sz(r)])] != g0) p.fused_ok = false;
    }
    // mma layout: k-blocks of 4 slabs; the kernel scales per block when a block never straddles two groups.
    p.kblocks = ceil_div(p.slabs, k_block_slabs);
    p.ntiles = ceil_div(N, k_ntile_cols);
    p.block_group.resize(sz(p.kblocks));
    p.block_groups = p.fused_ok;
    for (std::int64_t b = 0; b < p.kblocks; ++b) {
        p.block_group[sz(b)] = p.slab_group[sz(b * k_block_slabs)];
        for (std::int64_t s = b * k_block_slabs; s < std::min(p.slabs, (b + 1) * k_block_slabs); ++s)
            if (p.slab_group[sz(s)] != p.block_group[sz(b)]) p.block_groups = false;
    }
    p.group_shift = -1;
    if (p.block_groups)
        for (int sh = 0; sh <= 31 && p.group_shift < 0; ++sh) {
            bool ok = true;
            for (std::int64_t b = 0; b < p.kblocks && ok; ++b) ok = p.block_group[sz(b)] == static_cast<std::int32_t>(b >> sh);
            if (ok) p.group_shift = sh;
        }
    return p;
}

std::uint64_t layout_plan::mma_device_bytes() const {
    std::uint64_t b = mma_qweight_words() * 4;
    if (mma_block_path()) b += mma_unit_meta_words() * 4;
    else b += mma_meta_words() * 4 + static_cast<std::uint64_t>(kblocks * k_block_slabs) * 4;
    if (!sequential) b += static_cast<std::uint64_t>(in_features) * 4;
    return b;
}

namespace {
template <int Bits>
void repack_unit(const layout_plan& plan, std::span<const std::int32_t> qweight, std::int64_t tile, std::int64_t kb,
                 std::uint32_t* unit) {
    const std::int64_t K = plan.in_features, N = plan.out_features;
    for (int lane = 0; lane < 32; ++lane) {
        const std::int64_t n = tile * k_ntile_cols + lane / 4;
        std::uint32_t words[8] = {};
        if (n < N)
            for (int i = 0; i < 32; ++i) {
                const std::int64_t r = kb * k_block_rows + unit_row(lane % 4, i);
                if (r < K) place_code<Bits>(words, i, autogptq_code(qweight.data(), N, Bits, plan.row_of[sz(r)], n));
            }
        for (int w = 0; w < Bits; ++w) unit[unit_word_offset(Bits, lane, w)] = words[w];
    }
}

template <int Bits>
std::uint32_t mma_code_impl(const layout_plan& plan, std::span<const std::uint32_t> qweight, std::int64_t r, std::int64_t n) {
    using g = pair_geometry<Bits>;
    const std::int64_t kb = r / k_block_rows, rr = r % k_block_rows;
    const int j = static_cast<int>(rr / 32), q = static_cast<int>((rr % 32) / 8), t = static_cast<int>(rr % 8);
    const int lane = static_cast<int>(n % k_ntile_cols) * 4 + q;
    const std::uint32_t* unit = &qweight[sz(unit_index(plan.ntiles, plan.kblocks, n / k_ntile_cols, kb) * 32 * Bits)];
    std::uint32_t w[Bits];
    for (int i = 0; i < Bits; ++i) w[i] = unit[unit_word_offset(Bits, lane, i)];
    const int i = 8 * j + t, p = i / 2, h = i % 2;
    std::uint32_t pair;
    int fshift = 0;
    if (g::special_pair && p == 15) {
        pair = decode_special_pair3(w[0], w[1 % Bits], w[2 % Bits]);
    } else {
        pair = decode_pair<Bits>(w[p / g::pairs_per_word], p % g::pairs_per_word);
        fshift = g::field_shift(p % g::pairs_per_word);
    }
    const std::uint32_t field = h ? pair >> 16 : pair & 0xffffu;
    return (field & 0x3ffu) >> fshift;
}
}  // namespace

std::vector<std::uint32_t> repack_qweight_mma_ref(const layout_plan& plan, std::span<const std::int32_t> qweight) {
    if (qweight.size() != sz(qweight_rows(plan.in_features, plan.bits) * plan.out_features))
        throw std::invalid_argument("gptq layout: qweight size");
    std::vector<std::uint32_t> out(sz(static_cast<std::int64_t>(plan.mma_qweight_words())));
    for (std::int64_t tile = 0; tile < plan.ntiles; ++tile)
        for (std::int64_t kb = 0; kb < plan.kblocks; ++kb) {
            std::uint32_t* unit = &out[sz(unit_index(plan.ntiles, plan.kblocks, tile, kb) * 32 * plan.bits)];
            switch (plan.bits) {
            case 2: repack_unit<2>(plan, qweight, tile, kb, unit); break;
            case 3: repack_unit<3>(plan, qweight, tile, kb, unit); break;
            case 4: repack_unit<4>(plan, qweight, tile, kb, unit); break;
            default: repack_unit<8>(plan, qweight, tile, kb, unit); break;
            }
        }
    return out;
}

std::vector<std::uint32_t> mma_meta(const layout_plan& plan, std::span<const std::uint16_t> scales,
                                    std::span<const std::int32_t> qzeros) {
    const std::int64_t N = plan.out_features, G = plan.groups;
    if (scales.size() != sz(G * N)) throw std::invalid_argument("gptq layout: scales size");
    const auto z = unpack_qzeros(qzeros, G, N, plan.bits);
    std::vector<std::uint32_t> out(sz(static_cast<std::int64_t>(plan.mma_meta_words())), 0);
    for (std::int64_t g = 0; g < G; ++g)
        for (std::int64_t n = 0; n < N; ++n) {
            std::uint32_t* rec = &out[sz(((n / k_ntile_cols) * G + g) * k_meta_words)];
            const int c = static_cast<int>(n % k_ntile_cols);
            rec[c / 2] |= static_cast<std::uint32_t>(scales[sz(g * N + n)]) << (16 * (c % 2));
            rec[4 + c / 4] |= static_cast<std::uint32_t>(z[sz(g * N + n)]) << (8 * (c % 4));
        }
    return out;
}

std::vector<std::uint32_t> mma_unit_meta(const layout_plan& plan, std::span<const std::uint32_t> group_meta) {
    if (group_meta.size() != plan.mma_meta_words()) throw std::invalid_argument("gptq layout: meta size");
    std::vector<std::uint32_t> out(sz(static_cast<std::int64_t>(plan.mma_unit_meta_words())));
    for (std::int64_t tile = 0; tile < plan.ntiles; ++tile)
        for (std::int64_t kb = 0; kb < plan.kblocks; ++kb) {
            const std::uint32_t* rec = &group_meta[sz((tile * plan.groups + plan.block_group[sz(kb)]) * k_meta_words)];
            std::copy(rec, rec + k_meta_words, &out[sz(unit_index(plan.ntiles, plan.kblocks, tile, kb) * k_meta_words)]);
        }
    return out;
}

std::uint32_t mma_code(const layout_plan& plan, std::span<const std::uint32_t> qweight, std::int64_t r, std::int64_t n) {
    switch (plan.bits) {
    case 2: return mma_code_impl<2>(plan, qweight, r, n);
    case 3: return mma_code_impl<3>(plan, qweight, r, n);
    case 4: return mma_code_impl<4>(plan, qweight, r, n);
    default: return mma_code_impl<8>(plan, qweight, r, n);
    }
}

std::vector<std::uint32_t> repack_qweight_ref(const layout_plan& plan, std::span<const std::int32_t> qweight) {
    if (qweight.size() != sz(qweight_rows(plan.in_features, plan.bits) * plan.out_features))
        throw std::invalid_argument("gptq layout: qweight size");
    std::vector<std::uint32_t> out(sz(static_cast<std::int64_t>(plan.qweight_words())));
    for (std::int64_t tile = 0; tile < plan.tiles; ++tile)
        for (std::int64_t s = 0; s < plan.slabs; ++s) {
            std::uint32_t* dst = &out[sz(((tile * plan.slabs + s) * plan.bits) * k_tile_cols)];
            switch (plan.bits) {
            case 2: repack_tile_slab<2>(plan, qweight, tile, s, dst); break;
            case 3: repack_tile_slab<3>(plan, qweight, tile, s, dst); break;
            case 4: repack_tile_slab<4>(plan, qweight, tile, s, dst); break;
            default: repack_tile_slab<8>(plan, qweight, tile, s, dst); break;
            }
        }
    return out;
}

std::vector<std::uint16_t> tile_scales(const layout_plan& plan, std::span<const std::uint16_t> scales) {
    const std::int64_t N = plan.out_features, G = plan.groups;
    if (scales.size() != sz(G * N)) throw std::invalid_argument("gptq layout: scales size");
    std::vector<std::uint16_t> out(sz(static_cast<std::int64_t>(plan.meta_entries())), 0);
    for (std::int64_t g = 0; g < G; ++g)
        for (std::int64_t n = 0; n < N; ++n)
            out[sz(((n / k_tile_cols) * G + g) * k_tile_cols + n % k_tile_cols)] = scales[sz(g * N + n)];
    return out;
}

std::vector<std::uint8_t> tile_zeros(const layout_plan& plan, std::span<const std::int32_t> qzeros) {
    const std::int64_t N = plan.out_features, G = plan.groups;
    const auto z = unpack_qzeros(qzeros, G, N, plan.bits);
    std::vector<std::uint8_t> out(sz(static_cast<std::int64_t>(plan.meta_entries())), 0);
    for (std::int64_t g = 0; g < G; ++g)
        for (std::int64_t n = 0; n < N; ++n)
            out[sz(((n / k_tile_cols) * G + g) * k_tile_cols + n % k_tile_cols)] = z[sz(g * N + n)];
    return out;
}

float decode_device_weight(const layout_plan& plan, std::span<const std::uint32_t> qweight,
                           std::span<const std::uint16_t> scales, std::span<const std::uint8_t> zeros, std::int64_t r,
                           std::int64_t n) {
    switch (plan.bits) {
    case 2: return decode_impl<2>(plan, qweight, scales, zeros, r, n);
    case 3: return decode_impl<3>(plan, qweight, scales, zeros, r, n);
    case 4: return decode_impl<4>(plan, qweight, scales, zeros, r, n);
    default: return decode_impl<8>(plan, qweight, scales, zeros, r, n);
    }
}

}  // namespace qbench::gptq
