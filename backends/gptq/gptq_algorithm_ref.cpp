#include "backends/gptq/gptq_algorithm_ref.hpp"

#include "backends/gptq/gptq_format.hpp"
#include "backends/gptq/gptq_quant_math.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

namespace qbench::gptq {

namespace {
std::size_t sz(std::int64_t v) { return static_cast<std::size_t>(v); }

/// Per-row params over columns [c0, c1) of a row-major [rows][ld] matrix.
void find_params_rows(const float* w, std::int64_t rows, std::int64_t ld, std::int64_t c0, std::int64_t c1,
                      std::int32_t maxq, bool sym, std::vector<channel_params>& out) {
    out.resize(sz(rows));
    for (std::int64_t r = 0; r < rows; ++r) {
        const float* row = w + r * ld;
        float lo = row[c0], hi = row[c0];
        for (std::int64_t c = c0 + 1; c < c1; ++c) {
            lo = std::min(lo, row[c]);
            hi = std::max(hi, row[c]);
        }
        out[sz(r)] = params_from_range(lo, hi, maxq, sym);
    }
}

/// In-place lower Cholesky of a [k][k] double matrix (lower triangle). false if not positive definite.
bool cholesky_lower(std::vector<double>& a, std::int64_t k) {
    for (std::int64_t j = 0; j < k; ++j) {
        double d = a[sz(j * k + j)];
        for (std::int64_t p = 0; p < j; ++p) d -= a[sz(j * k + p)] * a[sz(j * k + p)];
        if (!(d > 0.0) || !std::isfinite(d)) return false;
        const double ljj = std::sqrt(d);
        a[sz(j * k + j)] = ljj;
        for (std::int64_t i = j + 1; i < k; ++i) {
            double s = a[sz(i * k + j)];
            const double* ri = &a[sz(i * k)];
            const double* rj = &a[sz(j * k)];
            for (std::int64_t p = 0; p < j; ++p) s -= ri[p] * rj[p];
            a[sz(i * k + j)] = s / ljj;
        }
    }
    return true;
}
}  // namespace

hessian_accumulator::hessian_accumulator(std::int64_t in_features)
    : m_k(in_features), m_sum(sz(in_features * in_features), 0.0) {}

void hessian_accumulator::add_batch(std::span<const float> x, std::int64_t tokens, std::int64_t sequences) {
    if (x.size() < sz(tokens * m_k)) throw std::invalid_argument("hessian_accumulator: x too small");
    std::vector<double> row(sz(m_k));
    for (std::int64_t t = 0; t < tokens; ++t) {
        for (std::int64_t i = 0; i < m_k; ++i) row[sz(i)] = x[sz(t * m_k + i)];
        for (std::int64_t i = 0; i < m_k; ++i) {
            const double xi = row[sz(i)];
            if (xi == 0.0) continue;
            double* s = &m_sum[sz(i * m_k)];
            for (std::int64_t j = 0; j <= i; ++j) s[j] += xi * row[sz(j)];
        }
    }
    m_n += sequences;
}

std::vector<float> hessian_accumulator::finalize() const {
    std::vector<float> h(sz(m_k * m_k), 0.0f);
    if (m_n == 0) return h;
    const double f = 2.0 / static_cast<double>(m_n);
    for (std::int64_t i = 0; i < m_k; ++i)
        for (std::int64_t j = 0; j <= i; ++j) {
            const float v = static_cast<float>(f * m_sum[sz(i * m_k + j)]);
            h[sz(i * m_k + j)] = v;
            h[sz(j * m_k + i)] = v;
        }
    return h;
}

std::vector<std::int32_t> act_order_permutation(std::span<const float> h, std::int64_t k) {
    std::vector<std::int32_t> perm(sz(k));
    std::iota(perm.begin(), perm.end(), 0);
    std::stable_sort(perm.begin(), perm.end(),
                     [&](std::int32_t a, std::int32_t b) { return h[sz(a) * sz(k) + sz(a)] > h[sz(b) * sz(k) + sz(b)]; });
    return perm;
}

bool cholesky_inverse_upper(std::span<const float> h, std::int64_t k, std::vector<float>& hinv_upper) {
    std::vector<double> a(sz(k * k));
    for (std::int64_t i = 0; i < k * k; ++i) a[sz(i)] = h[sz(i)];
    if (!cholesky_lower(a, k)) return false;
    // Linv = L^-1 (lower), row by row: Linv[i][:i] = -(sum_p L[i][p] Linv[p][:p+1]) / L[i][i] (contiguous rows).
    std::vector<double> linv(sz(k * k), 0.0);
    for (std::int64_t i = 0; i < k; ++i) {
        double* row = &linv[sz(i * k)];
        for (std::int64_t p = 0; p < i; ++p) {
            const double coef = a[sz(i * k + p)];
            const double* prow = &linv[sz(p * k)];
            for (std::int64_t c = 0; c <= p; ++c) row[c] += coef * prow[c];
        }
        const double inv_d = 1.0 / a[sz(i * k + i)];
        for (std::int64_t c = 0; c < i; ++c) row[c] = -row[c] * inv_d;
        row[i] = inv_d;
    }
    // H^-1 = Linv^T Linv (cholesky_inverse), lower triangle, accumulated row by row of Linv.
    std::vector<double> inv(sz(k * k), 0.0);
    for (std::int64_t p = 0; p < k; ++p) {
        const double* row = &linv[sz(p * k)];
        for (std::int64_t i = 0; i <= p; ++i) {
            const double ri = row[i];
            if (ri == 0.0) continue;
            double* out = &inv[sz(i * k)];
            for (std::int64_t j = 0; j <= i; ++j) out[j] += ri * row[j];
        }
    }
    for (std::int64_t i = 0; i < k; ++i)
        for (std::int64_t j = 0; j < i; ++j) inv[sz(j * k + i)] = inv[sz(i * k + j)];
    if (!cholesky_lower(inv, k)) return false;
    hinv_upper.assign(sz(k * k), 0.0f);
    for (std::int64_t i = 0; i < k; ++i)
        for (std::int64_t j = i; j < k; ++j) hinv_upper[sz(i * k + j)] = static_cast<float>(inv[sz(j * k + i)]);  // U = L^T
    return true;
}

std::vector<std::int32_t> make_g_idx(std::int64_t k, std::int64_t group_size, bool static_groups,
                                     std::span<const std::int32_t> perm) {
    const std::int64_t gs = effective_group(group_size, k);
    std::vector<std::int32_t> g(sz(k));
    if (!perm.empty() && !static_groups) {
        std::vector<std::int32_t> invperm(sz(k));
        for (std::int64_t i = 0; i < k; ++i) invperm[sz(perm[sz(i)])] = static_cast<std::int32_t>(i);
        for (std::int64_t j = 0; j < k; ++j) g[sz(j)] = static_cast<std::int32_t>(invperm[sz(j)] / gs);
    } else {
        for (std::int64_t j = 0; j < k; ++j) g[sz(j)] = static_cast<std::int32_t>(j / gs);
    }
    return g;
}

gptq_result gptq_quantize_ref(std::span<const float> weight, std::int64_t N, std::int64_t K,
                              std::span<const float> hessian, const gptq_config& cfg) {
    if (!is_supported_bits(cfg.bits)) throw std::invalid_argument("gptq: unsupported bits " + std::to_string(cfg.bits));
    if (weight.size() != sz(N * K) || hessian.size() != sz(K * K)) throw std::invalid_argument("gptq: sizes");
    if (cfg.group_size == 0 || cfg.group_size < -1) throw std::invalid_argument("gptq: group_size must be -1 or > 0");
    const auto maxq = static_cast<std::int32_t>(max_code(cfg.bits));
    const std::int64_t gs = effective_group(cfg.group_size, K);
    const std::int64_t G = ceil_div(K, gs);
    const bool grouped = cfg.group_size != -1;

    std::vector<float> W(weight.begin(), weight.end());
    std::vector<float> H(hessian.begin(), hessian.end());

    // Quantizer "not ready": per-channel params of the whole row, before dead columns are zeroed.
    std::vector<channel_params> cur;
    find_params_rows(W.data(), N, K, 0, K, maxq, cfg.sym, cur);

    for (std::int64_t d = 0; d < K; ++d)
        if (H[sz(d * K + d)] == 0.0f) {
            H[sz(d * K + d)] = 1.0f;
            for (std::int64_t n = 0; n < N; ++n) W[sz(n * K + d)] = 0.0f;
        }

    gptq_result res;
    std::vector<std::vector<channel_params>> static_params;
    if (grouped && cfg.static_groups) {
        static_params.resize(sz(G));
        for (std::int64_t g = 0; g < G; ++g)
            find_params_rows(W.data(), N, K, g * gs, std::min(K, (g + 1) * gs), maxq, cfg.sym, static_params[sz(g)]);
    }

    std::vector<std::int32_t> perm;
    if (cfg.act_order) {
        perm = act_order_permutation(H, K);
        std::vector<float> Wp(W.size()), Hp(H.size());
        for (std::int64_t n = 0; n < N; ++n)
            for (std::int64_t c = 0; c < K; ++c) Wp[sz(n * K + c)] = W[sz(n * K + perm[sz(c)])];
        for (std::int64_t i = 0; i < K; ++i)
            for (std::int64_t j = 0; j < K; ++j) Hp[sz(i * K + j)] = H[sz(perm[sz(i)]) * sz(K) + sz(perm[sz(j)])];
        W.swap(Wp);
        H.swap(Hp);
    }

    // Damping: fp32 mean of the diagonal, as torch.mean on fp32.
    double diag_sum = 0.0;
    for (std::int64_t i = 0; i < K; ++i) diag_sum += H[sz(i * K + i)];
    const float mean_diag = static_cast<float>(diag_sum / static_cast<double>(K));
    std::vector<float> Hinv;
    double damp = cfg.damp_percent;
    for (int attempt = 0;; ++attempt) {
        std::vector<float> Hd = H;
        const float add = static_cast<float>(damp) * mean_diag;
        for (std::int64_t i = 0; i < K; ++i) Hd[sz(i * K + i)] += add;
        if (cholesky_inverse_upper(Hd, K, Hinv)) break;
        if (attempt >= 100) throw std::runtime_error("gptq: Hessian not positive definite even with damping " + std::to_string(damp));
        damp += 0.01;
    }
    res.damp_used = damp;

    // Scales/zeros in the order the reference appends them.
    std::vector<float> scales_list, zeros_list;  // [groups][N]
    auto append_params = [&](const std::vector<channel_params>& p) {
        for (std::int64_t n = 0; n < N; ++n) {
            scales_list.push_back(p[sz(n)].scale);
            zeros_list.push_back(p[sz(n)].zero);
        }
    };
    if (grouped && cfg.static_groups)
        for (const auto& p : static_params) append_params(p);

    std::vector<std::uint8_t> codes_perm(sz(N * K));
    const std::int64_t B = cfg.block_size;
    std::vector<float> W1, Err1;
    double loss = 0.0;
    for (std::int64_t i1 = 0; i1 < K; i1 += B) {
        const std::int64_t i2 = std::min(i1 + B, K);
        const std::int64_t cnt = i2 - i1;
        W1.assign(sz(N * cnt), 0.0f);
        Err1.assign(sz(N * cnt), 0.0f);
        for (std::int64_t n = 0; n < N; ++n)
            for (std::int64_t i = 0; i < cnt; ++i) W1[sz(n * cnt + i)] = W[sz(n * K + i1 + i)];
        for (std::int64_t i = 0; i < cnt; ++i) {
            const std::int64_t col = i1 + i;
            if (grouped) {
                if (!cfg.static_groups) {
                    if (col % gs == 0) {
                        // From W, not W1: the block-start values (the reference's group-scale subtlety).
                        find_params_rows(W.data(), N, K, col, std::min(K, col + gs), maxq, cfg.sym, cur);
                        append_params(cur);
                    }
                } else {
                    const std::int64_t idx = cfg.act_order ? perm[sz(col)] : col;
                    cur = static_params[sz(idx / gs)];
                }
            }
            const float d = Hinv[sz(col * K + col)];
            const float* hrow = &Hinv[sz(col * K)];
            for (std::int64_t n = 0; n < N; ++n) {
                float* w1 = &W1[sz(n * cnt)];
                const float w = w1[i];
                const float qc = quantize_code(w, cur[sz(n)], maxq);
                const float q = dequantize_code(qc, cur[sz(n)]);
                codes_perm[sz(n * K + col)] = static_cast<std::uint8_t>(qc);
                loss += static_cast<double>(w - q) * static_cast<double>(w - q) / (static_cast<double>(d) * d) / 2.0;
                const float err = (w - q) / d;
                for (std::int64_t j = i; j < cnt; ++j) w1[j] -= err * hrow[i1 + j];
                Err1[sz(n * cnt + i)] = err;
            }
        }
        // Lazy batch update of the columns right of the block.
        for (std::int64_t n = 0; n < N; ++n) {
            float* wrow = &W[sz(n * K)];
            const float* e = &Err1[sz(n * cnt)];
            for (std::int64_t i = 0; i < cnt; ++i) {
                const float ei = e[i];
                if (ei == 0.0f) continue;
                const float* hrow = &Hinv[sz((i1 + i) * K)];
                for (std::int64_t j = i2; j < K; ++j) wrow[j] -= ei * hrow[j];
            }
        }
    }
    if (!grouped) append_params(cur);
    res.loss = loss;

    quantized_linear& q = res.q;
    q.in_features = K;
    q.out_features = N;
    q.bits = cfg.bits;
    q.group_size = cfg.group_size;
    q.codes.resize(sz(N * K));
    if (cfg.act_order) {
        for (std::int64_t n = 0; n < N; ++n)
            for (std::int64_t c = 0; c < K; ++c) q.codes[sz(n * K + perm[sz(c)])] = codes_perm[sz(n * K + c)];
    } else {
        q.codes = std::move(codes_perm);
    }
    const std::int64_t groups_out = static_cast<std::int64_t>(scales_list.size()) / N;
    if (groups_out != G) throw std::logic_error("gptq: produced " + std::to_string(groups_out) + " groups, expected " + std::to_string(G));
    q.scales = std::move(scales_list);
    q.zeros.resize(zeros_list.size());
    for (std::size_t i = 0; i < zeros_list.size(); ++i) q.zeros[i] = static_cast<std::uint8_t>(zeros_list[i]);
    q.g_idx = make_g_idx(K, cfg.group_size, cfg.static_groups, perm);
    res.perm = std::move(perm);
    q.validate();
    return res;
}

quantized_linear rtn_quantize_ref(std::span<const float> weight, std::int64_t N, std::int64_t K, std::int64_t bits,
                                  std::int64_t group_size, bool sym) {
    if (!is_supported_bits(bits)) throw std::invalid_argument("rtn: unsupported bits");
    const auto maxq = static_cast<std::int32_t>(max_code(bits));
    const std::int64_t gs = effective_group(group_size, K);
    const std::int64_t G = ceil_div(K, gs);
    quantized_linear q;
    q.in_features = K;
    q.out_features = N;
    q.bits = bits;
    q.group_size = group_size;
    q.codes.resize(sz(N * K));
    q.scales.resize(sz(G * N));
    q.zeros.resize(sz(G * N));
    std::vector<channel_params> p;
    for (std::int64_t g = 0; g < G; ++g) {
        const std::int64_t c0 = g * gs, c1 = std::min(K, c0 + gs);
        find_params_rows(weight.data(), N, K, c0, c1, maxq, sym, p);
        for (std::int64_t n = 0; n < N; ++n) {
            q.scales[sz(g * N + n)] = p[sz(n)].scale;
            q.zeros[sz(g * N + n)] = static_cast<std::uint8_t>(p[sz(n)].zero);
            for (std::int64_t c = c0; c < c1; ++c)
                q.codes[sz(n * K + c)] = static_cast<std::uint8_t>(quantize_code(weight[sz(n * K + c)], p[sz(n)], maxq));
        }
    }
    q.g_idx = make_g_idx(K, group_size, false, {});
    return q;
}

double relative_output_error(std::span<const float> w, std::span<const float> wq, std::int64_t N, std::int64_t K,
                             std::span<const float> x, std::int64_t tokens) {
    double num = 0.0, den = 0.0;
    for (std::int64_t t = 0; t < tokens; ++t) {
        const float* xr = &x[sz(t * K)];
        for (std::int64_t n = 0; n < N; ++n) {
            const float* a = &w[sz(n * K)];
            const float* b = &wq[sz(n * K)];
            double ya = 0.0, yb = 0.0;
            for (std::int64_t k = 0; k < K; ++k) {
                ya += static_cast<double>(xr[k]) * a[k];
                yb += static_cast<double>(xr[k]) * b[k];
            }
            num += (ya - yb) * (ya - yb);
            den += ya * ya;
        }
    }
    return den > 0.0 ? std::sqrt(num / den) : 0.0;
}

}  // namespace qbench::gptq
