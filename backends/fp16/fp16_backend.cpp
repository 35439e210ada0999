#include "backends/fp16/fp16_backend.hpp"

#include "backends/fp16/fp16_linear.hpp"
#include "backends/quant_format.hpp"

#include <string>

namespace qbench {

namespace {

/// fp16: the checkpoint's weights as they are; cuBLAS / an fp16 GEMV on the GPU, plain loops on the CPU.
class fp16_backend : public backend {
public:
    std::string_view name() const override { return "fp16"; }
    std::string_view description() const override {
        return "no quantization: fp16 weights as stored in the checkpoint (cuBLAS on the GPU)";
    }
    std::vector<std::int64_t> supported_bits() const override { return {16}; }

    support supports(const cell_spec& cell) const override {
        if (!format_for(name(), cell.bits, ""))
            return support::no("the fp16 backend runs 16-bit weights only (bits " + std::to_string(cell.bits) +
                               " requested)");
        return support::yes();
    }

private:
    std::unique_ptr<cpu_linear> do_load_cpu_linear(const linear_request& request) const override {
        return load_f16_cpu_linear(request);
    }
#if QBENCH_HAVE_CUDA
    std::unique_ptr<device_linear> do_load_device_linear(const linear_request& request,
                                                         device_context& context) const override {
        return load_f16_device_linear(request, context);
    }
#endif
};

}  // namespace

std::unique_ptr<backend> make_fp16_backend() { return std::make_unique<fp16_backend>(); }

}  // namespace qbench
