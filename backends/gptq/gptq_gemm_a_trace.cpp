// Kernel v3's launch trace (gptq_gemm_a.cuh, a_trace_open): the host side, which launch gets which stamps.
#include "backends/gptq/gptq_gemm_a.cuh"

#include <utility>

namespace qbench::gptq {

namespace {
/// The open launch trace: the stamps, their room (CTAs), and the launches stamped so far.
struct a_trace_state {
    unsigned long long* stamps = nullptr;
    std::size_t capacity = 0, used = 0;
    std::vector<a_trace_launch> launches;
};
a_trace_state& trace_state() {
    static a_trace_state s;
    return s;
}
}  // namespace

void a_trace_open(unsigned long long* stamps, std::size_t capacity_ctas) {
    trace_state() = a_trace_state{stamps, capacity_ctas, 0, {}};
}

std::vector<a_trace_launch> a_trace_close() {
    std::vector<a_trace_launch> launches = std::move(trace_state().launches);
    trace_state() = a_trace_state{};
    return launches;
}

unsigned long long* a_trace_claim(a_trace_launch launch) {
    a_trace_state& tr = trace_state();
    const auto grid = static_cast<std::size_t>(launch.grid);
    if (tr.stamps == nullptr || tr.used + grid > tr.capacity) return nullptr;
    launch.first = tr.used;
    tr.launches.push_back(launch);
    tr.used += grid;
    return tr.stamps + launch.first * k_a_trace_fields;
}

}  // namespace qbench::gptq
