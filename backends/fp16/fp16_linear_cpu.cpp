#include "backends/fp16/fp16_linear.hpp"

#include "qbench/common/errors.hpp"
#include "qbench/common/half.hpp"
#include "qbench/io/tensor_source.hpp"

#include <algorithm>
#include <array>
#include <thread>
#include <vector>

namespace qbench {

namespace {

// fp16 bits -> float for all 65536 patterns: one table load per weight instead of a branchy conversion.
const std::array<float, 65536>& half_table() {
    static const std::array<float, 65536> table = [] {
        std::array<float, 65536> t{};
        for (std::uint32_t h = 0; h < t.size(); ++h) t[h] = half_to_float(static_cast<std::uint16_t>(h));
        return t;
    }();
    return table;
}

// Below this many multiply-adds a call runs on the calling thread: thread start-up would cost more than it saves
// (a decode step of the tiny model is ~1e5 per linear).
constexpr std::int64_t k_parallel_work = std::int64_t{1} << 22;
constexpr unsigned k_max_threads = 8;

class f16_cpu_linear final : public cpu_linear {
public:
    f16_cpu_linear(std::vector<std::uint16_t> weight, std::int64_t out, std::int64_t in)
        : m_weight(std::move(weight)), m_out(out), m_in(in) {}

    std::int64_t in_features() const override { return m_in; }
    std::int64_t out_features() const override { return m_out; }
    std::uint64_t weight_bytes() const override { return m_weight.size() * sizeof(std::uint16_t); }
    std::string format_name() const override { return "f16"; }

    void forward(const float* x, std::int64_t rows, float* y) const override {
        const std::int64_t work = rows * m_out * m_in;
        unsigned threads = 1;
        if (work >= k_parallel_work)
            threads = static_cast<unsigned>(
                std::min<std::int64_t>({std::max(1u, std::thread::hardware_concurrency()), k_max_threads, m_out}));
        if (threads <= 1) {
            forward_outputs(x, rows, y, 0, m_out);
            return;
        }
        // Each thread owns a contiguous slice of output features; every y element is one thread's fixed-order sum,
        // so the result is the same for any thread count.
        std::vector<std::thread> pool;
        const std::int64_t chunk = (m_out + threads - 1) / threads;
        for (unsigned t = 1; t < threads; ++t) {
            const std::int64_t begin = std::min(m_out, t * chunk), end = std::min(m_out, begin + chunk);
            if (begin < end) pool.emplace_back([=, this] { forward_outputs(x, rows, y, begin, end); });
        }
        forward_outputs(x, rows, y, 0, std::min(m_out, chunk));
        for (std::thread& t : pool) t.join();
    }

private:
    // y[r, o] for o in [begin, end), all rows; the weight row stays in cache while it meets every input row.
    void forward_outputs(const float* x, std::int64_t rows, float* y, std::int64_t begin, std::int64_t end) const {
        const std::array<float, 65536>& to_float = half_table();
        for (std::int64_t o = begin; o < end; ++o) {
            const std::uint16_t* w = m_weight.data() + o * m_in;
            for (std::int64_t r = 0; r < rows; ++r) {
                const float* xr = x + r * m_in;
                double acc = 0;
                for (std::int64_t i = 0; i < m_in; ++i) acc += static_cast<double>(xr[i]) * to_float[w[i]];
                y[r * m_out + o] = round_to_half(static_cast<float>(acc));
            }
        }
    }

    std::vector<std::uint16_t> m_weight;  // [out, in] fp16 bits
    std::int64_t m_out, m_in;
};

}  // namespace

std::unique_ptr<cpu_linear> make_f16_cpu_linear(host_tensor weight_f16) {
    if (weight_f16.type != dtype::f16 || weight_f16.shape.size() != 2)
        throw error("make_f16_cpu_linear: needs a 2-D F16 tensor, got " +
                    std::string(traits_of(weight_f16.type).name) + " " + shape_to_string(weight_f16.shape));
    const std::int64_t out = weight_f16.shape[0], in = weight_f16.shape[1];
    if (weight_f16.byte_size() != static_cast<std::size_t>(out * in) * 2)
        throw error("make_f16_cpu_linear: " + std::to_string(weight_f16.byte_size()) + " bytes for shape " +
                    shape_to_string(weight_f16.shape));
    const auto bits = weight_f16.as<std::uint16_t>();
    return std::make_unique<f16_cpu_linear>(std::vector<std::uint16_t>(bits.begin(), bits.end()), out, in);
}

std::unique_ptr<cpu_linear> load_f16_cpu_linear(const linear_request& request) {
    const std::string name = request.prefix + ".weight";
    const std::string file = request.source.path().string();
    const std::string place = "tensor '" + name + "'";
    const tensor_info* info = request.source.find(name);
    if (!info) throw input_error(file, place, "missing from the checkpoint");
    const std::vector<std::int64_t> expected{request.out_features, request.in_features};
    if (info->type != dtype::f16)
        throw input_error(file, place, "has dtype " + std::string(traits_of(info->type).name) + ", expected F16");
    if (info->shape != expected)
        throw input_error(file, place, "has shape " + shape_to_string(info->shape) + ", expected " +
                                           shape_to_string(expected) + " ([out_features, in_features])");
    host_tensor weight = request.source.read(name);
    if (weight.type != dtype::f16 || weight.shape != expected)
        throw input_error(file, place, "read as " + std::string(traits_of(weight.type).name) + " " +
                                           shape_to_string(weight.shape) + ", expected F16 " +
                                           shape_to_string(expected));
    return make_f16_cpu_linear(std::move(weight));
}

}  // namespace qbench
