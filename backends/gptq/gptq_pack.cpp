#include "backends/gptq/gptq_pack.hpp"

#include "backends/gptq/gptq_format.hpp"
#include "qbench/common/half.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <thread>

namespace qbench::gptq {

namespace {
void require(bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument("gptq: " + what);
}
void check_bits(std::int64_t bits) { require(is_supported_bits(bits), "bits must be 2, 3, 4 or 8, got " + std::to_string(bits)); }
std::size_t sz(std::int64_t v) { return static_cast<std::size_t>(v); }
}  // namespace

std::int64_t quantized_linear::groups() const { return num_groups(group_size, in_features); }

void quantized_linear::validate() const {
    check_bits(bits);
    require(in_features > 0 && out_features > 0, "empty layer");
    require(group_size == -1 || group_size > 0, "group_size must be -1 or positive");
    const std::int64_t g = groups();
    require(codes.size() == sz(in_features * out_features), "codes size");
    require(scales.size() == sz(g * out_features), "scales size");
    require(zeros.size() == sz(g * out_features), "zeros size");
    require(g_idx.size() == sz(in_features), "g_idx size");
    const auto maxq = static_cast<std::uint8_t>(max_code(bits));
    // Plain reductions, the message built only on failure: this runs over every code of 7B layers.
    std::uint8_t max_c = 0, max_z = 0;
    for (auto c : codes) max_c = std::max(max_c, c);
    for (auto z : zeros) max_z = std::max(max_z, z);
    bool g_ok = true;
    for (auto i : g_idx) g_ok = g_ok && i >= 0 && i < g;
    require(max_c <= maxq, "code out of range");
    require(max_z <= maxq, "zero out of range");
    require(g_ok, "g_idx out of range");
}

std::vector<float> quantized_linear::dequantize() const {
    const std::int64_t K = in_features, N = out_features;
    std::vector<float> w(sz(N * K));
    for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t k = 0; k < K; ++k) {
            const std::int64_t g = g_idx[sz(k)];
            const float s = scales[sz(g * N + n)];
            const float z = static_cast<float>(zeros[sz(g * N + n)]);
            w[sz(n * K + k)] = s * (static_cast<float>(codes[sz(n * K + k)]) - z);
        }
    return w;
}

void pack_run(const std::uint32_t* values, std::int64_t bits, std::uint32_t* words) {
    for (std::int64_t w = 0; w < bits; ++w) words[w] = 0;
    const std::uint32_t mask = static_cast<std::uint32_t>(max_code(bits));
    for (std::int64_t v = 0; v < k_pack_run; ++v) {
        const std::uint64_t val = values[v] & mask;
        const std::int64_t bit = bits * v;
        // A value touches at most two words (3-bit values 10 and 21 straddle a boundary).
        const std::uint64_t shifted = val << (bit % 32);
        words[bit / 32] |= static_cast<std::uint32_t>(shifted);
        if ((bit % 32) + bits > 32) words[bit / 32 + 1] |= static_cast<std::uint32_t>(shifted >> 32);
    }
}

void unpack_run(const std::uint32_t* words, std::int64_t bits, std::uint32_t* values) {
    const std::uint64_t mask = static_cast<std::uint64_t>(max_code(bits));
    for (std::int64_t v = 0; v < k_pack_run; ++v) {
        const std::int64_t bit = bits * v;
        std::uint64_t window = words[bit / 32];
        if ((bit % 32) + bits > 32) window |= static_cast<std::uint64_t>(words[bit / 32 + 1]) << 32;
        values[v] = static_cast<std::uint32_t>((window >> (bit % 32)) & mask);
    }
}

std::vector<std::int32_t> pack_qweight(std::span<const std::uint8_t> codes_kn, std::int64_t K, std::int64_t N,
                                       std::int64_t bits) {
    check_bits(bits);
    require(codes_kn.size() == sz(K * N), "pack_qweight: codes size");
    const std::int64_t runs = ceil_div(K, k_pack_run);
    std::vector<std::int32_t> out(sz(runs * bits * N));
    std::uint32_t vals[k_pack_run];
    std::uint32_t words[8];
    for (std::int64_t r = 0; r < runs; ++r)
        for (std::int64_t n = 0; n < N; ++n) {
            for (std::int64_t v = 0; v < k_pack_run; ++v) {
                const std::int64_t k = r * k_pack_run + v;
                vals[v] = k < K ? codes_kn[sz(k * N + n)] : 0u;
            }
            pack_run(vals, bits, words);
            for (std::int64_t w = 0; w < bits; ++w)
                out[sz((r * bits + w) * N + n)] = static_cast<std::int32_t>(words[w]);
        }
    return out;
}

std::vector<std::uint8_t> unpack_qweight(std::span<const std::int32_t> qweight, std::int64_t K, std::int64_t N,
                                         std::int64_t bits) {
    check_bits(bits);
    require(qweight.size() == sz(qweight_rows(K, bits) * N), "unpack_qweight: qweight size");
    const std::int64_t runs = ceil_div(K, k_pack_run);
    std::vector<std::uint8_t> codes(sz(K * N));
    std::uint32_t vals[k_pack_run];
    std::uint32_t words[8];
    for (std::int64_t r = 0; r < runs; ++r)
        for (std::int64_t n = 0; n < N; ++n) {
            for (std::int64_t w = 0; w < bits; ++w) words[w] = static_cast<std::uint32_t>(qweight[sz((r * bits + w) * N + n)]);
            unpack_run(words, bits, vals);
            for (std::int64_t v = 0; v < k_pack_run; ++v) {
                const std::int64_t k = r * k_pack_run + v;
                if (k < K) codes[sz(k * N + n)] = static_cast<std::uint8_t>(vals[v]);
            }
        }
    return codes;
}

std::vector<std::int32_t> pack_qzeros(std::span<const std::uint8_t> zeros, std::int64_t G, std::int64_t N,
                                      std::int64_t bits) {
    check_bits(bits);
    require(zeros.size() == sz(G * N), "pack_qzeros: zeros size");
    const std::int64_t cols = qzeros_cols(N, bits);
    const std::int64_t runs = ceil_div(N, k_pack_run);
    const auto maxq = static_cast<std::uint32_t>(max_code(bits));
    std::vector<std::int32_t> out(sz(G * cols));
    std::uint32_t vals[k_pack_run];
    std::uint32_t words[8];
    for (std::int64_t g = 0; g < G; ++g)
        for (std::int64_t r = 0; r < runs; ++r) {
            for (std::int64_t v = 0; v < k_pack_run; ++v) {
                const std::int64_t n = r * k_pack_run + v;
                // The zero-minus-one convention; z = 0 wraps to maxq (exllama reads it back as 0).
                vals[v] = n < N ? (static_cast<std::uint32_t>(zeros[sz(g * N + n)]) - 1u) & maxq : 0u;
            }
            pack_run(vals, bits, words);
            for (std::int64_t w = 0; w < bits; ++w) out[sz(g * cols + r * bits + w)] = static_cast<std::int32_t>(words[w]);
        }
    return out;
}

std::vector<std::uint8_t> unpack_qzeros(std::span<const std::int32_t> qzeros, std::int64_t G, std::int64_t N,
                                        std::int64_t bits) {
    check_bits(bits);
    const std::int64_t cols = qzeros_cols(N, bits);
    require(qzeros.size() == sz(G * cols), "unpack_qzeros: qzeros size");
    const std::int64_t runs = ceil_div(N, k_pack_run);
    const auto maxq = static_cast<std::uint32_t>(max_code(bits));
    std::vector<std::uint8_t> zeros(sz(G * N));
    std::uint32_t vals[k_pack_run];
    std::uint32_t words[8];
    for (std::int64_t g = 0; g < G; ++g)
        for (std::int64_t r = 0; r < runs; ++r) {
            for (std::int64_t w = 0; w < bits; ++w) words[w] = static_cast<std::uint32_t>(qzeros[sz(g * cols + r * bits + w)]);
            unpack_run(words, bits, vals);
            for (std::int64_t v = 0; v < k_pack_run; ++v) {
                const std::int64_t n = r * k_pack_run + v;
                if (n < N) zeros[sz(g * N + n)] = static_cast<std::uint8_t>((vals[v] + 1u) & maxq);
            }
        }
    return zeros;
}

std::vector<std::uint8_t> intweight_from_fake_quant(std::span<const std::uint16_t> weight_f16, std::span<const float> scales,
                                                    std::span<const float> zeros, std::span<const std::int32_t> g_idx,
                                                    std::int64_t K, std::int64_t N, std::int64_t bits) {
    check_bits(bits);
    require(weight_f16.size() == sz(N * K) && g_idx.size() == sz(K), "intweight: sizes");
    const std::int64_t maxq = max_code(bits);
    std::vector<std::uint8_t> codes(sz(N * K));
    for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t k = 0; k < K; ++k) {
            const std::int64_t g = g_idx[sz(k)];
            const float s = scales[sz(g * N + n)];
            const float scale_zero = zeros[sz(g * N + n)] * s;                 // fp32, as `zeros * scales`
            const float s_half = round_to_half(s);                              // `self.scales = scales.half()`
            const float w = half_to_float(weight_f16[sz(n * K + k)]);
            float v = std::nearbyint((w + scale_zero) / s_half);               // torch.round: half to even
            if (!std::isfinite(v)) v = 0.0f;
            v = std::min(std::max(v, 0.0f), static_cast<float>(maxq));          // see gptq_format.hpp: clamped
            codes[sz(n * K + k)] = static_cast<std::uint8_t>(v);
        }
    return codes;
}

namespace {
/// qweight straight from codes [N][K] (each output row's codes are contiguous along K, the packing direction), over
/// a few threads for large layers: each thread owns a range of columns n, so the words do not depend on the split.
std::vector<std::int32_t> pack_qweight_rows(std::span<const std::uint8_t> codes_nk, std::int64_t K, std::int64_t N,
                                            std::int64_t bits) {
    const std::int64_t runs = ceil_div(K, k_pack_run);
    std::vector<std::int32_t> out(sz(runs * bits * N));
    auto work = [&](std::int64_t n0, std::int64_t n1) {
        std::uint32_t vals[k_pack_run];
        std::uint32_t words[8];
        for (std::int64_t n = n0; n < n1; ++n) {
            const std::uint8_t* row = &codes_nk[sz(n * K)];
            for (std::int64_t r = 0; r < runs; ++r) {
                for (std::int64_t v = 0; v < k_pack_run; ++v) {
                    const std::int64_t k = r * k_pack_run + v;
                    vals[v] = k < K ? row[k] : 0u;
                }
                pack_run(vals, bits, words);
                for (std::int64_t w = 0; w < bits; ++w) out[sz((r * bits + w) * N + n)] = static_cast<std::int32_t>(words[w]);
            }
        }
    };
    const std::int64_t threads =
        K * N < (1 << 20) ? 1 : std::clamp<std::int64_t>(std::thread::hardware_concurrency(), 1, 16);
    if (threads == 1) {
        work(0, N);
        return out;
    }
    std::vector<std::thread> pool;
    for (std::int64_t t = 0; t < threads; ++t) pool.emplace_back(work, N * t / threads, N * (t + 1) / threads);
    for (auto& th : pool) th.join();
    return out;
}
}  // namespace

packed_linear pack(const quantized_linear& q) {
    q.validate();
    const std::int64_t K = q.in_features, N = q.out_features, G = q.groups();
    packed_linear p;
    p.in_features = K;
    p.out_features = N;
    p.bits = q.bits;
    p.group_size = q.group_size;
    p.qweight = pack_qweight_rows(q.codes, K, N, q.bits);
    p.qzeros = pack_qzeros(q.zeros, G, N, q.bits);
    p.scales.resize(sz(G * N));
    for (std::size_t i = 0; i < p.scales.size(); ++i) p.scales[i] = float_to_half(q.scales[i]);
    p.g_idx = q.g_idx;
    return p;
}

quantized_linear unpack(const packed_linear& p) {
    check_bits(p.bits);
    const std::int64_t K = p.in_features, N = p.out_features;
    require(K > 0 && N > 0, "unpack: empty layer");
    const std::int64_t G = num_groups(p.group_size, K);
    require(p.scales.size() == sz(G * N), "unpack: scales size");
    require(p.g_idx.size() == sz(K), "unpack: g_idx size");
    quantized_linear q;
    q.in_features = K;
    q.out_features = N;
    q.bits = p.bits;
    q.group_size = p.group_size;
    const auto codes_kn = unpack_qweight(p.qweight, K, N, p.bits);
    q.codes.resize(sz(K * N));
    for (std::int64_t k = 0; k < K; ++k)
        for (std::int64_t n = 0; n < N; ++n) q.codes[sz(n * K + k)] = codes_kn[sz(k * N + n)];
    q.zeros = unpack_qzeros(p.qzeros, G, N, p.bits);
    q.scales.resize(sz(G * N));
    for (std::size_t i = 0; i < q.scales.size(); ++i) q.scales[i] = half_to_float(p.scales[i]);
    q.g_idx = p.g_idx;
    q.validate();
    return q;
}

}  // namespace qbench::gptq
