#include "backends/bnb/bnb_linear_cpu.hpp"

#include "backends/bnb/bnb_quant_ref.hpp"
#include "qbench/common/half.hpp"

#include <array>
#include <vector>

namespace qbench::bnb {

namespace {

class bnb_4bit_cpu_linear final : public cpu_linear {
public:
    explicit bnb_4bit_cpu_linear(quant_4bit_weight w) : m_w(std::move(w)), m_absmax(effective_absmax(m_w)) {}

    std::int64_t in_features() const override { return m_w.cols; }
    std::int64_t out_features() const override { return m_w.rows; }
    std::uint64_t weight_bytes() const override { return m_w.storage_bytes(); }
    std::string format_name() const override { return format_name_4bit(m_w.type, m_w.blocksize, m_w.nested); }

    void forward(const float* x, std::int64_t rows, float* y) const override {
        const std::int64_t k = m_w.cols, n_out = m_w.rows, bs = m_w.blocksize;
        std::vector<float> row(static_cast<std::size_t>(k));
        std::array<float, 16> table{};
        std::int64_t table_block = -1;
        for (std::int64_t n = 0; n < n_out; ++n) {
            // Dequantize row n exactly as dequantize_4bit_ref does: the 16 possible values of a block are computed
            // once per block (fp16(code * absmax)), then each element is a table lookup.
            for (std::int64_t c = 0; c < k; ++c) {
                const std::int64_t i = n * k + c;
                const std::int64_t b = i / bs;
                if (b != table_block) {
                    const float a = m_absmax[static_cast<std::size_t>(b)];
                    for (std::size_t q = 0; q < 16; ++q) table[q] = round_to_half(m_w.code[q] * a);
                    table_block = b;
                }
                row[static_cast<std::size_t>(c)] = table[m_w.nibble(i)];
            }
            for (std::int64_t r = 0; r < rows; ++r) {
                const float* xr = x + r * k;
                double acc = 0.0;
                for (std::int64_t c = 0; c < k; ++c) acc += static_cast<double>(xr[c]) * row[static_cast<std::size_t>(c)];
                y[r * n_out + n] = round_to_half(static_cast<float>(acc));
            }
        }
    }

private:
    quant_4bit_weight m_w;
    std::vector<float> m_absmax;  // effective absmax per block (double quantization resolved once)
};

class bnb_int8_cpu_linear final : public cpu_linear {
public:
    bnb_int8_cpu_linear(int8_weight w, float threshold) : m_w(std::move(w)), m_threshold(threshold) {}

    std::int64_t in_features() const override { return m_w.cols; }
    std::int64_t out_features() const override { return m_w.rows; }
    std::uint64_t weight_bytes() const override { return m_w.storage_bytes(); }
    std::string format_name() const override { return format_name_int8(m_threshold); }

    void forward(const float* x, std::int64_t rows, float* y) const override {
        matmul_int8_ref(m_w, x, rows, m_threshold, y);
    }

private:
    int8_weight m_w;
    float m_threshold;
};

}  // namespace

std::unique_ptr<cpu_linear> make_4bit_cpu_linear(quant_4bit_weight weight) {
    return std::make_unique<bnb_4bit_cpu_linear>(std::move(weight));
}

std::unique_ptr<cpu_linear> make_int8_cpu_linear(int8_weight weight, float threshold) {
    return std::make_unique<bnb_int8_cpu_linear>(std::move(weight), threshold);
}

}  // namespace qbench::bnb
