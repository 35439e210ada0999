#include "backends/bnb/bnb_backend.hpp"

#include "backends/bnb/bnb_format.hpp"
#include "backends/bnb/bnb_linear_cpu.hpp"
#include "backends/bnb/bnb_load.hpp"
#include "backends/bnb/bnb_quant_ref.hpp"
#include "backends/fp16/fp16_linear.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/common/host_memory.hpp"

#if QBENCH_HAVE_CUDA
#include "backends/bnb/bnb_device_linear.hpp"
#endif

#include <string>

namespace qbench {

namespace {

/// bitsandbytes style: the FP16 checkpoint is quantized while it loads (NF4/FP4 blockwise, LLM.int8()); lm_head
/// and bits 16 stay fp16. A checkpoint already saved in bitsandbytes' serialization loads as it is.
class bnb_backend : public backend {
public:
    std::string_view name() const override { return "bnb"; }
    std::string_view description() const override {
        return "bitsandbytes style: NF4/FP4 blockwise 4-bit (optional double quant) or LLM.int8(), quantized on the "
               "GPU while loading; 16-bit = fp16 loaded the bitsandbytes way";
    }
    std::vector<std::int64_t> supported_bits() const override { return {4, 8, 16}; }

    support supports(const cell_spec& cell) const override {
        if (cell.framework != name())
            return support::no("the bnb backend runs framework 'bnb' cells, not '" + cell.framework + "'");
        if (cell.bits == 2 || cell.bits == 3) return support::no("bitsandbytes has no 2/3-bit format");
        if (cell.bits != 4 && cell.bits != 8 && cell.bits != 16)
            return support::no("bitsandbytes has no " + std::to_string(cell.bits) + "-bit format (4, 8 and 16 exist)");
        const bnb_options& o = cell.bnb;
        if (cell.bits == 4) {
            if (o.quant_type != "nf4" && o.quant_type != "fp4")
                return support::no("bitsandbytes 4-bit quant_type '" + o.quant_type + "' does not exist (nf4, fp4)");
            if (!bnb::valid_blocksize(o.blocksize))
                return support::no("bitsandbytes 4-bit blocksize " + std::to_string(o.blocksize) +
                                   " is not a power of two in [32, 4096]");
            if (o.compute_dtype != "float16")
                return support::no("compute_dtype '" + o.compute_dtype +
                                   "': the qbench engine computes in float16 (bitsandbytes' fast path)");
            if (o.small_batch_path != "dequantize" && o.small_batch_path != "fused")
                return support::no("small_batch_path '" + o.small_batch_path + "' is not 'dequantize' or 'fused'");
        }
        if (cell.bits == 8 && !(o.int8_threshold >= 0.0))
            return support::no("int8_threshold must be >= 0 (0 disables the outlier decomposition)");
        return support::yes();
    }

private:
    std::unique_ptr<cpu_linear> do_load_cpu_linear(const linear_request& request) const override {
        if (request.kind == linear_kind::lm_head || request.cell.bits == 16) return load_f16_cpu_linear(request);
        if (request.cell.bits == 4) {
            if (auto w = bnb::read_prequantized_4bit(request)) return bnb::make_4bit_cpu_linear(std::move(*w));
            const std::vector<float> values = weight_values(request);
            return bnb::make_4bit_cpu_linear(bnb::quantize_4bit_ref(values, request.out_features, request.in_features,
                                                                    bnb::params_of(request.cell)));
        }
        if (request.cell.bits == 8) {
            const auto threshold = static_cast<float>(request.cell.bnb.int8_threshold);
            if (auto w = bnb::read_prequantized_int8(request)) return bnb::make_int8_cpu_linear(std::move(*w), threshold);
            const std::vector<float> values = weight_values(request);
            return bnb::make_int8_cpu_linear(
                bnb::quantize_int8_ref(values, request.out_features, request.in_features), threshold);
        }
        throw unsupported_error("bitsandbytes has no " + std::to_string(request.cell.bits) + "-bit format");
    }

#if QBENCH_HAVE_CUDA
    std::unique_ptr<device_linear> do_load_device_linear(const linear_request& request,
                                                         device_context& context) const override {
        if (request.kind == linear_kind::lm_head || request.cell.bits == 16)
            return load_f16_device_linear(request, context);
        if (request.cell.bits == 4) return bnb::load_4bit_device_linear(request, context);
        if (request.cell.bits == 8) return bnb::load_int8_device_linear(request, context);
        throw unsupported_error("bitsandbytes has no " + std::to_string(request.cell.bits) + "-bit format");
    }
#endif

    // The FP16 weight as floats; the host copy is accounted as checkpoint staging.
    static std::vector<float> weight_values(const linear_request& request) {
        const host_tensor weight = bnb::read_f16_weight(request);
        const host_reservation staging(static_cast<std::uint64_t>(weight.numel()) * sizeof(float),
                                       "bnb quantization input " + request.prefix);
        return to_float_vector(weight);
    }
};

}  // namespace

std::unique_ptr<backend> make_bnb_backend() { return std::make_unique<bnb_backend>(); }

}  // namespace qbench
