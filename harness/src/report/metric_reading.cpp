#include "qbench/report/metric_reading.hpp"

#include "qbench/report/cell_selector.hpp"
#include "qbench/results/metrics.hpp"

#include <algorithm>

namespace qbench {

namespace {

constexpr std::string_view k_quality_prefix = "quality.";

// The table row of a path: a top-level metric, or a key of the quality object.
const metric_info* row_of(std::string_view path) {
    if (path.starts_with(k_quality_prefix)) {
        const std::string_view key = path.substr(k_quality_prefix.size());
        const auto row = std::find_if(k_quality_table.begin(), k_quality_table.end(),
                                      [&](const metric_info& m) { return m.name == key; });
        return row == k_quality_table.end() ? nullptr : &*row;
    }
    return find_metric(path);
}

bool numeric_kind(metric_kind kind) {
    return kind == metric_kind::number || kind == metric_kind::integer || kind == metric_kind::summary;
}

}  // namespace

std::optional<metric_figure> read_metric(const nlohmann::ordered_json& metrics, std::string_view path) {
    const nlohmann::ordered_json* node = find_dotted(metrics, path);
    if (!node) return std::nullopt;
    if (node->is_number()) return metric_figure{node->get<double>(), 0.0, 1};
    if (node->is_object() && node->contains(metric::k_median) && (*node)[metric::k_median].is_number()) {
        metric_figure f;
        f.value = (*node)[metric::k_median].get<double>();
        const auto p10 = node->find(metric::k_p10);
        const auto p90 = node->find(metric::k_p90);
        if (p10 != node->end() && p90 != node->end() && p10->is_number() && p90->is_number())
            f.spread = std::max(0.0, (p90->get<double>() - p10->get<double>()) / 2);
        const auto count = node->find(metric::k_count);
        f.count = count != node->end() && count->is_number_unsigned() ? count->get<std::size_t>() : 1;
        return f;
    }
    return std::nullopt;
}

bool is_numeric_metric(std::string_view path) {
    const metric_info* row = row_of(path);
    return row && numeric_kind(row->kind);
}

std::vector<std::string> numeric_metric_paths() {
    std::vector<std::string> paths;
    for (const metric_info& m : k_metric_table)
        if (numeric_kind(m.kind)) paths.emplace_back(m.name);
    for (const metric_info& m : k_quality_table)
        if (numeric_kind(m.kind) && m.name != metric::k_compared_positions)
            paths.push_back(std::string(k_quality_prefix) + std::string(m.name));
    return paths;
}

metric_direction direction_of(std::string_view path) {
    if (path == metric::k_bandwidth_utilization || path == "quality.top1_agreement")
        return metric_direction::higher_is_better;
    const std::string_view unit = unit_of(path);
    if (unit == "tokens/s") return metric_direction::higher_is_better;
    if (unit == "s" || unit == "ms" || unit == "bytes" || unit == "nats" ||
        path.starts_with("quality.layer_relative_error"))
        return metric_direction::lower_is_better;
    return metric_direction::neither;
}

std::string_view unit_of(std::string_view path) {
    const metric_info* row = row_of(path);
    return row ? row->unit : std::string_view();
}

}  // namespace qbench
