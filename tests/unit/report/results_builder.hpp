#pragma once
// Results documents built in code, so each test states the few figures it is about.
#include "qbench/config/cell.hpp"
#include "qbench/results/metrics.hpp"
#include "qbench/results/results_file.hpp"

#include <string>
#include <vector>

namespace qbench::test {

inline cell_spec make_cell(std::string model, std::string framework, std::int64_t bits, std::int64_t beam = 1,
                           std::string instance = "g5.2xlarge") {
    cell_spec c;
    c.model = std::move(model);
    c.framework = std::move(framework);
    c.bits = bits;
    c.beam = beam;
    c.instance = std::move(instance);
    return c;
}

inline cell_spec with_quant_type(cell_spec c, std::string quant_type) {
    c.bnb.quant_type = std::move(quant_type);
    return c;
}

/// A summary whose p10..p90 range is median ± spread (three samples).
inline nlohmann::ordered_json summary_around(double median, double spread) {
    const double samples[] = {median - spread * 1.25, median, median + spread * 1.25};
    // p10/p90 of three samples by linear interpolation sit at 0.2 of the outer steps: median ∓ spread.
    return summary_to_json(samples);
}

/// Metrics of a cell that ran: decode speed (± spread), VRAM and load time, optionally quality.
inline nlohmann::ordered_json ok_metrics(double tokens_per_s, double spread = 0, double vram_gib = 4,
                                         double load_s = 10) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    m[metric::k_decode_tokens_per_s] = summary_around(tokens_per_s, spread);
    m[metric::k_vram_peak_bytes] = static_cast<std::uint64_t>(vram_gib * 1024 * 1024 * 1024);
    m[metric::k_load_time_s] = load_s;
    return m;
}

inline nlohmann::ordered_json with_quality(nlohmann::ordered_json m, double top1, double mean_kl) {
    m[metric::k_quality] = {{metric::k_top1_agreement, top1}, {metric::k_mean_kl, mean_kl}};
    return m;
}

inline nlohmann::ordered_json oom_metrics(memory_kind kind) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    m[metric::k_oom] = {{metric::k_requested_bytes, 1u << 30},
                        {metric::k_available_bytes, 1u << 28},
                        {metric::k_budget_bytes, 16ull << 30},
                        {metric::k_kind, kind == memory_kind::vram ? "vram" : "host"}};
    return m;
}

inline cell_record make_record(const cell_spec& cell, outcome o, nlohmann::ordered_json metrics) {
    cell_record r;
    r.cell = cell;
    r.config_hash = cell_hash(cell);
    r.outcome = o;
    r.reason = o == outcome::ok ? "" : "test";
    r.started_at = r.finished_at = "2025-01-01T00:00:00.000Z";
    r.device = "cuda";
    r.metrics = std::move(metrics);
    return r;
}

inline cell_record ok_record(const cell_spec& cell, double tokens_per_s, double spread = 0) {
    return make_record(cell, outcome::ok, ok_metrics(tokens_per_s, spread));
}

inline results_document make_document(std::vector<cell_record> cells, const std::string& gpu = "test GPU") {
    results_document d;
    d.provenance = {{"schema_version", "1.0.0"}, {"qbench_version", "0.1.0"}, {"gpu", {{"name", gpu}}}};
    d.cells = std::move(cells);
    return d;
}

}  // namespace qbench::test
