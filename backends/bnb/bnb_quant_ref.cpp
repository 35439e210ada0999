#include "backends/bnb/bnb_quant_ref.hpp"

#include "qbench/common/errors.hpp"
#include "qbench/common/half.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace qbench::bnb {

std::uint8_t quantize_nf4_value(float x) {
    // Counting thresholds below x is the same function as bitsandbytes' 4-level tree over sorted thresholds
    // (strict >, NaN -> 0).
    std::uint8_t code = 0;
    for (float t : k_nf4_thresholds) code = static_cast<std::uint8_t>(code + (x > t ? 1 : 0));
    return code;
}

std::uint8_t quantize_fp4_value(float x) {
    const std::uint8_t sign = x < 0.0f ? 0b1000 : 0;
    const float a = std::fabs(x);
    int rank = 0;
    for (float t : k_fp4_thresholds) rank += a > t ? 1 : 0;
    return static_cast<std::uint8_t>(sign | k_fp4_rank_to_code[static_cast<std::size_t>(rank)]);
}

std::uint8_t quantize_dynamic_value(const std::array<float, 256>& code, float x) {
    int pivot = 127;
    int upper_pivot = 255;
    int lower_pivot = 0;
    float lower = -1.0f;
    float upper = 1.0f;
    float val = code[static_cast<std::size_t>(pivot)];
    for (int i = 64; i > 0; i >>= 1) {
        if (x > val) {
            lower_pivot = pivot;
            lower = val;
            pivot += i;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= i;
        }
        val = code[static_cast<std::size_t>(pivot)];
    }
    if (upper_pivot == 255) upper = code[255];
    if (lower_pivot == 0) lower = code[0];
    if (x > val) {
        const float midpoint = (upper + val) * 0.5f;
        return static_cast<std::uint8_t>(x > midpoint ? upper_pivot : pivot);
    }
    const float midpoint = (lower + val) * 0.5f;
    return static_cast<std::uint8_t>(x < midpoint ? lower_pivot : pivot);
}

std::vector<float> blockwise_absmax_ref(std::span<const float> values, std::int64_t blocksize) {
    const auto n = static_cast<std::int64_t>(values.size());
    std::vector<float> absmax(static_cast<std::size_t>((n + blocksize - 1) / blocksize), 0.0f);
    for (std::int64_t i = 0; i < n; ++i) {
        float& a = absmax[static_cast<std::size_t>(i / blocksize)];
        a = std::max(a, std::fabs(values[static_cast<std::size_t>(i)]));
    }
    return absmax;
}

float absmax_mean_ref(std::span<const float> absmax) {
    double sum = 0.0;
    for (float a : absmax) sum += a;
    return absmax.empty() ? 0.0f : static_cast<float>(sum / static_cast<double>(absmax.size()));
}

nested_absmax double_quantize_ref(std::span<const float> absmax, std::int64_t nested_blocksize,
                                  std::optional<float> offset) {
    if (nested_blocksize <= 0) throw std::invalid_argument("double_quantize_ref: nested blocksize must be > 0");
    nested_absmax out;
    out.blocksize = nested_blocksize;
    out.code = dynamic_map_signed();
    out.offset = offset ? *offset : absmax_mean_ref(absmax);
    const auto n = static_cast<std::int64_t>(absmax.size());
    std::vector<float> centred(absmax.size());
    for (std::size_t i = 0; i < absmax.size(); ++i) centred[i] = absmax[i] - out.offset;
    out.absmax = blockwise_absmax_ref(centred, nested_blocksize);
    out.codes.resize(absmax.size());
    for (std::int64_t i = 0; i < n; ++i) {
        // 1/absmax2 first, then multiply, as kQuantizeBlockwise does (0 * inf = NaN for an all-equal block).
        const float inv = 1.0f / out.absmax[static_cast<std::size_t>(i / nested_blocksize)];
        out.codes[static_cast<std::size_t>(i)] = quantize_dynamic_value(out.code, centred[static_cast<std::size_t>(i)] * inv);
    }
    return out;
}

quant_4bit_weight quantize_4bit_ref(std::span<const float> values, std::int64_t rows, std::int64_t cols,
                                    const quant_4bit_params& params) {
    if (!valid_blocksize(params.blocksize))
        throw std::invalid_argument("quantize_4bit_ref: blocksize " + std::to_string(params.blocksize) +
                                    " is not a power of two in [32, 4096]");
    if (rows < 0 || cols < 0 || static_cast<std::int64_t>(values.size()) != rows * cols)
        throw std::invalid_argument("quantize_4bit_ref: value count does not match the shape");
    quant_4bit_weight w;
    w.type = params.type;
    w.rows = rows;
    w.cols = cols;
    w.blocksize = params.blocksize;
    w.code = code_book(params.type);
    const std::int64_t n = rows * cols;
    std::vector<float> absmax = blockwise_absmax_ref(values, params.blocksize);
    w.packed.assign(static_cast<std::size_t>((n + 1) / 2), 0);
    std::vector<float> inv(absmax.size());
    for (std::size_t b = 0; b < absmax.size(); ++b) inv[b] = 1.0f / absmax[b];
    for (std::int64_t i = 0; i < n + (n & 1); ++i) {
        const std::int64_t b = std::min(i / params.blocksize, w.blocks() - 1);
        // The odd tail element is padding that bitsandbytes loads as 0 before quantizing.
        const float v = i < n ? values[static_cast<std::size_t>(i)] : 0.0f;
        const std::uint8_t q = quantize_4bit_value(params.type, v * inv[static_cast<std::size_t>(b)]);
        std::uint8_t& byte = w.packed[static_cast<std::size_t>(i >> 1)];
        byte = static_cast<std::uint8_t>((i & 1) ? (byte | q) : (q << 4));
    }
    if (params.double_quant) {
        w.nested = true;
        w.nested_state = double_quantize_ref(absmax);
    } else {
        w.absmax = std::move(absmax);
    }
    return w;
}

float block_absmax(const quant_4bit_weight& w, std::int64_t block) {
    if (!w.nested) return w.absmax[static_cast<std::size_t>(block)];
    const nested_absmax& s = w.nested_state;
    const float scaled = s.code[s.codes[static_cast<std::size_t>(block)]] *
                         s.absmax[static_cast<std::size_t>(block / s.blocksize)];
    return scaled + s.offset;
}

std::vector<float> effective_absmax(const quant_4bit_weight& w) {
    std::vector<float> out(static_cast<std::size_t>(w.blocks()));
    for (std::int64_t b = 0; b < w.blocks(); ++b) out[static_cast<std::size_t>(b)] = block_absmax(w, b);
    return out;
}

void dequantize_4bit_ref(const quant_4bit_weight& w, std::span<std::uint16_t> out_f16) {
    const std::int64_t n = w.numel();
    if (static_cast<std::int64_t>(out_f16.size()) != n)
        throw std::invalid_argument("dequantize_4bit_ref: output size does not match the weight");
    const std::vector<float> absmax = effective_absmax(w);
    for (std::int64_t i = 0; i < n; ++i) {
        const float v = w.code[w.nibble(i)] * absmax[static_cast<std::size_t>(i / w.blocksize)];
        out_f16[static_cast<std::size_t>(i)] = float_to_half(v);
    }
}

std::vector<float> dequantize_4bit_ref(const quant_4bit_weight& w) {
    std::vector<std::uint16_t> bits(static_cast<std::size_t>(w.numel()));
    dequantize_4bit_ref(w, bits);
    std::vector<float> out(bits.size());
    for (std::size_t i = 0; i < bits.size(); ++i) out[i] = half_to_float(bits[i]);
    return out;
}

void matmul_4bit_ref(const quant_4bit_weight& w, const float* x, std::int64_t m, float* y) {
    const std::int64_t n_out = w.rows, k = w.cols;
    const std::vector<float> absmax = effective_absmax(w);
    std::vector<float> row(static_cast<std::size_t>(k));
    for (std::int64_t n = 0; n < n_out; ++n) {
        // One dequantized row at a time keeps memory at the packed size plus one row.
        for (std::int64_t c = 0; c < k; ++c) {
            const std::int64_t i = n * k + c;
            row[static_cast<std::size_t>(c)] =
                round_to_half(w.code[w.nibble(i)] * absmax[static_cast<std::size_t>(i / w.blocksize)]);
        }
        for (std::int64_t r = 0; r < m; ++r) {
            const float* xr = x + r * k;
            double acc = 0.0;
            for (std::int64_t c = 0; c < k; ++c) acc += static_cast<double>(xr[c]) * row[static_cast<std::size_t>(c)];
            y[r * n_out + n] = round_to_half(static_cast<float>(acc));
        }
    }
}

int8_weight quantize_int8_ref(std::span<const float> values, std::int64_t rows, std::int64_t cols) {
    if (rows < 0 || cols < 0 || static_cast<std::int64_t>(values.size()) != rows * cols)
        throw std::invalid_argument("quantize_int8_ref: value count does not match the shape");
    int8_weight w;
    w.rows = rows;
    w.cols = cols;
    w.cb.assign(values.size(), 0);
    w.scb.assign(static_cast<std::size_t>(rows), 0.0f);
    for (std::int64_t r = 0; r < rows; ++r) {
        const float* row = values.data() + r * cols;
        float amax = 0.0f;
        for (std::int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(row[c]));
        w.scb[static_cast<std::size_t>(r)] = amax;
        if (amax == 0.0f) continue;
        const float scale = 127.0f / amax;
        for (std::int64_t c = 0; c < cols; ++c)
            w.cb[static_cast<std::size_t>(r * cols + c)] = static_cast<std::int8_t>(std::nearbyint(row[c] * scale));
    }
    return w;
}

int8_activations quantize_int8_activations_ref(const float* x, std::int64_t m, std::int64_t k, float threshold) {
    int8_activations a;
    a.q.assign(static_cast<std::size_t>(m * k), 0);
    a.row_stats.assign(static_cast<std::size_t>(m), 0.0f);
    std::vector<char> outlier(static_cast<std::size_t>(k), 0);
    if (threshold > 0.0f) {
        for (std::int64_t r = 0; r < m; ++r)
            for (std::int64_t c = 0; c < k; ++c)
                if (std::fabs(x[r * k + c]) >= threshold) outlier[static_cast<std::size_t>(c)] = 1;
        for (std::int64_t c = 0; c < k; ++c)
            if (outlier[static_cast<std::size_t>(c)]) a.outlier_cols.push_back(c);
    }
    for (std::int64_t r = 0; r < m; ++r) {
        const float* xr = x + r * k;
        float amax = 0.0f;
        // Values at or above the threshold are excluded from the row statistic; other values of an outlier
        // column still count (they are zeroed only after the statistic is taken), as in bitsandbytes.
        for (std::int64_t c = 0; c < k; ++c) {
            const float v = std::fabs(xr[c]);
            if (threshold > 0.0f && v >= threshold) continue;
            amax = std::max(amax, v);
        }
        a.row_stats[static_cast<std::size_t>(r)] = amax;
        if (amax == 0.0f) continue;
        const float scale = 127.0f / amax;
        for (std::int64_t c = 0; c < k; ++c) {
            if (outlier[static_cast<std::size_t>(c)]) continue;
            a.q[static_cast<std::size_t>(r * k + c)] = static_cast<std::int8_t>(std::nearbyint(xr[c] * scale));
        }
    }
    return a;
}

float int8_weight_value(const int8_weight& w, std::int64_t row, std::int64_t col) {
    return static_cast<float>(w.cb[static_cast<std::size_t>(row * w.cols + col)]) * w.scb[static_cast<std::size_t>(row)] /
           127.0f;
}

void matmul_int8_ref(const int8_weight& w, const float* x, std::int64_t m, float threshold, float* y) {
    const std::int64_t n_out = w.rows, k = w.cols;
    const int8_activations a = quantize_int8_activations_ref(x, m, k, threshold);
    for (std::int64_t r = 0; r < m; ++r) {
        const std::int8_t* qa = a.q.data() + r * k;
        for (std::int64_t n = 0; n < n_out; ++n) {
            const std::int8_t* qb = w.cb.data() + n * k;
            std::int64_t acc = 0;
            for (std::int64_t c = 0; c < k; ++c) acc += static_cast<std::int32_t>(qa[c]) * qb[c];
            const double scb = w.scb[static_cast<std::size_t>(n)];
            double out = static_cast<double>(acc) * a.row_stats[static_cast<std::size_t>(r)] * scb / (127.0 * 127.0);
            double outl = 0.0;
            for (std::int64_t c : a.outlier_cols) outl += static_cast<double>(x[r * k + c]) * qb[c];
            out += outl * scb / 127.0;
            y[r * n_out + n] = round_to_half(static_cast<float>(out));
        }
    }
}

}  // namespace qbench::bnb
