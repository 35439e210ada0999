// Checking a `metrics` object against metrics.hpp (the reader and results_file::append share it).
#include "checks.hpp"
#include "qbench/results/metrics.hpp"

#include <algorithm>

namespace qbench::detail {

namespace {

void check_summary(const ojson& j, const json_check& check, const std::string& ptr) {
    check.expect_object(j, ptr);
    check.allowed_keys(j, ptr,
                       {metric::k_median, metric::k_p10, metric::k_p90, metric::k_mean, metric::k_stddev,
                        metric::k_min, metric::k_max, metric::k_count, metric::k_samples});
    for (const char* key : {metric::k_median, metric::k_p10, metric::k_p90, metric::k_mean, metric::k_min,
                            metric::k_max})
        check.number_value(check.member(j, key, ptr), json_check::child(ptr, key));
    check.non_negative_number(check.member(j, metric::k_stddev, ptr), json_check::child(ptr, metric::k_stddev));
    const std::uint64_t count =
        check.non_negative_integer(check.member(j, metric::k_count, ptr), json_check::child(ptr, metric::k_count));
    const std::string samples_ptr = json_check::child(ptr, metric::k_samples);
    const ojson& samples = check.member(j, metric::k_samples, ptr);
    check.expect_array(samples, samples_ptr);
    for (std::size_t i = 0; i < samples.size(); ++i) check.number_value(samples[i], json_check::child(samples_ptr, i));
    if (count != samples.size())
        check.fail(json_check::child(ptr, metric::k_count),
                   "count is " + std::to_string(count) + " but samples holds " + std::to_string(samples.size()));
}

void check_oom(const ojson& j, const json_check& check, const std::string& ptr, outcome result) {
    check.expect_object(j, ptr);
    check.allowed_keys(j, ptr,
                       {metric::k_requested_bytes, metric::k_available_bytes, metric::k_budget_bytes, metric::k_kind});
    for (const char* key : {metric::k_requested_bytes, metric::k_available_bytes})
        check.non_negative_integer(check.member(j, key, ptr), json_check::child(ptr, key));
    if (j.contains(metric::k_budget_bytes))
        check.non_negative_integer(j[metric::k_budget_bytes], json_check::child(ptr, metric::k_budget_bytes));
    const std::string kind_ptr = json_check::child(ptr, metric::k_kind);
    const std::string& kind = check.string_value(check.member(j, metric::k_kind, ptr), kind_ptr);
    if (kind != "vram" && kind != "host") check.fail(kind_ptr, "expected \"vram\" or \"host\", found \"" + kind + "\"");
    const outcome expected = kind == "vram" ? outcome::oom_vram : outcome::oom_host;
    if (result != expected)
        check.fail(ptr, "an oom object of kind '" + kind + "' belongs to outcome '" + std::string(to_string(expected)) +
                            "', not '" + std::string(to_string(result)) + "'");
}

void check_field(const ojson& j, const json_check& check, const std::string& ptr, metric_kind kind) {
    switch (kind) {
        case metric_kind::number: check.non_negative_number(j, ptr); break;
        case metric_kind::integer: check.non_negative_integer(j, ptr); break;
        case metric_kind::string: check.string_value(j, ptr); break;
        default: check.fail(ptr, "internal: unexpected field kind");
    }
}

void check_quality(const ojson& j, const json_check& check, const std::string& ptr) {
    check.expect_object(j, ptr);
    for (const auto& item : j.items()) {
        const std::string field_ptr = json_check::child(ptr, item.key());
        const auto row = std::find_if(k_quality_table.begin(), k_quality_table.end(),
                                      [&](const metric_info& m) { return m.name == item.key(); });
        if (row == k_quality_table.end()) {
            if (check.strict()) check.fail(field_ptr, "unknown quality key '" + item.key() + "'");
            continue;
        }
        check_field(item.value(), check, field_ptr, row->kind);
    }
    if (j.contains(metric::k_top1_agreement) && j[metric::k_top1_agreement].get<double>() > 1)
        check.fail(json_check::child(ptr, metric::k_top1_agreement), "a fraction must not exceed 1");
}

void check_string_map(const ojson& j, const json_check& check, const std::string& ptr) {
    check.expect_object(j, ptr);
    for (const auto& item : j.items()) check.string_value(item.value(), json_check::child(ptr, item.key()));
}

}  // namespace

void check_metrics(const ojson& metrics, const json_check& check, const std::string& pointer, outcome result) {
    check.expect_object(metrics, pointer);
    for (const auto& item : metrics.items()) {
        const std::string ptr = json_check::child(pointer, item.key());
        const metric_info* info = find_metric(item.key());
        if (!info) {
            // A newer minor version may add metrics: keep them (they are written back unchanged) but do not check.
            if (check.strict()) check.fail(ptr, "unknown metric '" + item.key() + "' (metrics.hpp lists the known ones)");
            continue;
        }
        switch (info->kind) {
            case metric_kind::summary: check_summary(item.value(), check, ptr); break;
            case metric_kind::oom: check_oom(item.value(), check, ptr, result); break;
            case metric_kind::quality: check_quality(item.value(), check, ptr); break;
            case metric_kind::string_map: check_string_map(item.value(), check, ptr); break;
            default: check_field(item.value(), check, ptr, info->kind); break;
        }
    }
}

}  // namespace qbench::detail
