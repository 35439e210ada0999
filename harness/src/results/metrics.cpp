#include "qbench/results/metrics.hpp"

namespace qbench {

const metric_info* find_metric(std::string_view name) noexcept {
    for (const metric_info& m : k_metric_table)
        if (m.name == name) return &m;
    return nullptr;
}

nlohmann::ordered_json summary_to_json(const summary& s, std::span<const double> samples) {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    j[metric::k_median] = s.median;
    j[metric::k_p10] = s.p10;
    j[metric::k_p90] = s.p90;
    j[metric::k_mean] = s.mean;
    j[metric::k_stddev] = s.stddev;
    j[metric::k_min] = s.min;
    j[metric::k_max] = s.max;
    j[metric::k_count] = s.count;
    j[metric::k_samples] = nlohmann::ordered_json::array();
    for (double x : samples) j[metric::k_samples].push_back(x);
    return j;
}

nlohmann::ordered_json summary_to_json(std::span<const double> samples) {
    return summary_to_json(summarize(samples), samples);
}

nlohmann::ordered_json oom_to_json(const out_of_memory& e, std::uint64_t budget_bytes) {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    j[metric::k_requested_bytes] = e.requested_bytes();
    j[metric::k_available_bytes] = e.available_bytes();
    if (budget_bytes != 0) j[metric::k_budget_bytes] = budget_bytes;
    j[metric::k_kind] = e.kind() == memory_kind::vram ? "vram" : "host";
    return j;
}

}  // namespace qbench
