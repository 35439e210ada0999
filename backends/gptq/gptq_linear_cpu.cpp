// The GPTQ linear on the CPU reference: dequantize once, multiply in double, round the output to fp16.
#include "backends/gptq/gptq_artifact.hpp"
#include "backends/gptq/gptq_cpu_dot.hpp"
#include "backends/gptq/gptq_format.hpp"
#include "backends/gptq/gptq_linear.hpp"

#include "qbench/common/errors.hpp"
#include "qbench/common/half.hpp"
#include "qbench/common/host_memory.hpp"

namespace qbench::gptq {

namespace {
class gptq_cpu_linear final : public cpu_linear {
public:
    gptq_cpu_linear(const quantized_linear& q, std::uint64_t weight_bytes)
        : m_hold(static_cast<std::uint64_t>(q.in_features * q.out_features) * sizeof(float), "gptq cpu linear (dequantized)"),
          m_in(q.in_features), m_out(q.out_features), m_weight(q.dequantize()), m_bytes(weight_bytes) {
        bool act = false;
        for (std::size_t k = 1; k < q.g_idx.size(); ++k) act = act || q.g_idx[k] < q.g_idx[k - 1];
        m_name = gptq_format_name(q.bits, q.group_size, act);
    }
    std::int64_t in_features() const override { return m_in; }
    std::int64_t out_features() const override { return m_out; }
    std::uint64_t weight_bytes() const override { return m_bytes; }
    std::string format_name() const override { return m_name; }

    void forward(const float* x, std::int64_t rows, float* y) const override {
        for (std::int64_t r = 0; r < rows; ++r) {
            const float* xr = x + r * m_in;
            for (std::int64_t n = 0; n < m_out; ++n)
                y[r * m_out + n] = round_to_half(dot_f32(xr, m_weight.data() + n * m_in, m_in));
        }
    }

private:
    host_reservation m_hold;
    std::int64_t m_in, m_out;
    std::vector<float> m_weight;  // [out][in]
    std::uint64_t m_bytes;
    std::string m_name;
};
}  // namespace

std::string gptq_format_name(std::int64_t bits, std::int64_t group_size, bool act_order) {
    return "gptq-int" + std::to_string(bits) + "-g" + std::to_string(group_size) + (act_order ? "-act" : "");
}

std::uint64_t packed_bytes(const packed_linear& p) {
    return (p.qweight.size() + p.qzeros.size() + p.g_idx.size()) * 4 + p.scales.size() * 2;
}

std::unique_ptr<cpu_linear> make_gptq_cpu_linear(const quantized_linear& q, std::uint64_t weight_bytes) {
    q.validate();
    return std::make_unique<gptq_cpu_linear>(q, weight_bytes);
}

std::unique_ptr<cpu_linear> load_gptq_cpu_linear(const linear_request& request) {
    const packed_linear p = read_packed_linear(request.source, request.prefix, request.in_features, request.out_features);
    if (p.bits != request.cell.bits)
        throw input_error(request.source.path().string(), "tensor '" + request.prefix + ".qweight'",
                          "holds " + std::to_string(p.bits) + "-bit weights but the cell asks for " +
                              std::to_string(request.cell.bits) + " bits");
    quantized_linear q;
    try {
        q = unpack(p);
    } catch (const std::invalid_argument& e) {
        throw input_error(request.source.path().string(), "tensor '" + request.prefix + ".qweight'", e.what());
    }
    return make_gptq_cpu_linear(q, packed_bytes(p));
}

}  // namespace qbench::gptq
