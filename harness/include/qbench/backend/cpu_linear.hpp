#pragma once
/// A linear layer y = x Wᵀ on the CPU reference, in whatever weight format the backend chose.
#include <cstdint>
#include <string>

namespace qbench {

class cpu_linear {
public:
    virtual ~cpu_linear() = default;
    virtual std::int64_t in_features() const = 0;
    virtual std::int64_t out_features() const = 0;
    /// y[rows, out] = x[rows, in] · Wᵀ, row-major floats; the format's reference semantics (dequantize exactly as the
    /// format defines, accumulate in float or double). `x` and `y` never alias.
    virtual void forward(const float* x, std::int64_t rows, float* y) const = 0;
    /// Bytes of weights plus metadata this layer stores (what one decode step must read).
    virtual std::uint64_t weight_bytes() const = 0;
    /// Format name for records, e.g. "f16", "gptq-int4-g128", "bnb-nf4-bs64-dq".
    virtual std::string format_name() const = 0;
};

}  // namespace qbench
