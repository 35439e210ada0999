// The host-only API of qbench/engine/cuda_api.hpp over device_context.
#include "cuda/device_context.cuh"

#include "qbench/engine/cuda_api.hpp"

namespace qbench {

void device_context_deleter::operator()(device_context* context) const noexcept { delete context; }

device_context_ptr make_device_context(const cuda_context_options& options) {
    device_context_options o;
    o.device = options.device;
    o.budget_bytes = options.vram_budget_bytes;
    return device_context_ptr(new device_context(o));
}

cuda_memory_report memory_report(const device_context& context) {
    const device_memory_figures f = context.memory();
    cuda_memory_report r;
    r.allocated_peak_bytes = f.allocated_peak;
    r.allocated_current_bytes = f.allocated_current;
    r.device_peak_bytes = f.device_peak;
    r.context_bytes = f.context;
    r.library_bytes = f.libraries;
    r.workspace_bytes = f.workspace;
    r.device_total_bytes = f.device_total;
    r.budget_bytes = f.budget;
    return r;
}

void reset_memory_peaks(device_context& context) { context.reset_peaks(); }

nlohmann::json gpu_environment(const device_context& context) { return context.gpu_environment(); }

double measure_stream_bandwidth_gbs(device_context& context) { return context.measure_stream_bandwidth_gbs(); }

}  // namespace qbench
