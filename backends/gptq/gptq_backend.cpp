// The gptq backend: AutoGPTQ artifacts made ahead of time by the real GPTQ algorithm (cached), fused kernels for
// small batches and reconstruct + cuBLAS above the threshold, lm_head kept fp16.
#include "backends/gptq/gptq_backend.hpp"

#include "backends/fp16/fp16_linear.hpp"
#include "backends/gptq/gptq_format.hpp"
#include "backends/gptq/gptq_linear.hpp"
#include "backends/gptq/gptq_quantize.hpp"

#include <string>

namespace qbench {

namespace {

class gptq_backend : public backend {
public:
    std::string_view name() const override { return "gptq"; }
    std::string_view description() const override {
        return "GPTQ quantized ahead of time (AutoGPTQ format, 2/3/4/8 bits); fused dequantize-and-multiply kernels, "
               "reconstruct + cuBLAS for large batches";
    }
    std::vector<std::int64_t> supported_bits() const override { return {2, 3, 4, 8}; }

    support supports(const cell_spec& cell) const override {
        if (cell.bits == 16) return support::no("GPTQ has no 16-bit format; use fp16");
        if (!gptq::is_supported_bits(cell.bits))
            return support::no("GPTQ supports 2, 3, 4 and 8 bits, not " + std::to_string(cell.bits));
        if (cell.gptq.group_size != -1 && cell.gptq.group_size < 32)
            return support::no("GPTQ group size must be -1 or at least 32, got " + std::to_string(cell.gptq.group_size));
        if (cell.gptq.memory_plan != "autogptq" && cell.gptq.memory_plan != "streaming")
            return support::no("GPTQ memory_plan must be autogptq or streaming, got " + cell.gptq.memory_plan);
        if (cell.gptq.recons_threshold < 0) return support::no("GPTQ recons_threshold must be >= 0");
        return support::yes();
    }

    std::filesystem::path prepare_artifact(const artifact_request& request) const override {
        return gptq::ensure_gptq_artifact(request.model, request.fp16_checkpoint, gptq::options_for_cell(request.cell),
                                          request.cache_dir, request.use_cuda);
    }

private:
    std::unique_ptr<cpu_linear> do_load_cpu_linear(const linear_request& request) const override {
        if (request.kind == linear_kind::lm_head) return load_f16_cpu_linear(request);
        return gptq::load_gptq_cpu_linear(request);
    }
#if QBENCH_HAVE_CUDA
    std::unique_ptr<device_linear> do_load_device_linear(const linear_request& request,
                                                         device_context& context) const override {
        if (request.kind == linear_kind::lm_head) return load_f16_device_linear(request, context);
        return gptq::load_gptq_device_linear(request, context);
    }
#endif
};

}  // namespace

std::unique_ptr<backend> make_gptq_backend() { return std::make_unique<gptq_backend>(); }

}  // namespace qbench
