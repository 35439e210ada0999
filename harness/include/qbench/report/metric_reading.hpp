#pragma once
/// Reading one figure out of a record's `metrics` object for comparisons: the number to compare, how much it
/// scattered over the repetitions, and which way is better. Metric paths are the keys of metrics.hpp
/// ("decode_tokens_per_s", "vram_peak_bytes") and, inside the quality object, "quality.<key>" ("quality.mean_kl").
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {

/// One metric of one record as a comparable figure.
struct metric_figure {
    double value = 0;       ///< the number; for a repeated measurement (summary) its median
    double spread = 0;      ///< half the p10..p90 range of the repetitions; 0 for a single number
    std::size_t count = 1;  ///< repetitions behind the value (1 for a single number)
};

/// Which way a metric improves.
enum class metric_direction : std::uint8_t { higher_is_better, lower_is_better, neither };

/// The figure at `path` in `metrics`, or nullopt when the record does not carry it (or it is not numeric).
std::optional<metric_figure> read_metric(const nlohmann::ordered_json& metrics, std::string_view path);

/// Whether `path` names a numeric metric of metrics.hpp: a number, integer or summary key, or "quality.<number key>".
bool is_numeric_metric(std::string_view path);
/// Every numeric metric path, in the order of metrics.hpp's tables (for messages and for "compare all").
std::vector<std::string> numeric_metric_paths();

/// tokens/s, bandwidth utilization and top-1 agreement grow when things get better; times, bytes, KL divergences and
/// relative errors shrink; counts go neither way.
metric_direction direction_of(std::string_view path);
/// The unit from metrics.hpp ("tokens/s", "s", "ms", "bytes", "1", "nats"); "" for an unknown path.
std::string_view unit_of(std::string_view path);

}  // namespace qbench
