// Joining results files by cell parameters and comparing each with the first.
#include "qbench/report/compare.hpp"

#include "config/suggest.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/report/cell_selector.hpp"
#include "text_table.hpp"

#include <cmath>
#include <map>

namespace qbench {

namespace {

// How often a cell was measured is how well, not what: a rerun with more repetitions still pairs with the original.
const std::vector<std::string> k_not_join_keys = {"generation.warmup", "generation.repetitions"};

// cell_label leaves out options that rarely vary; where joined cells share a label, name what tells them apart
// (against another cell of the same label).
void disambiguate_labels(std::vector<compared_cell>& cells) {
    std::map<std::string, std::vector<std::size_t>> by_label;
    for (std::size_t i = 0; i < cells.size(); ++i) by_label[cells[i].label].push_back(i);
    for (const auto& [label, members] : by_label) {
        if (members.size() < 2) continue;
        std::vector<std::string> extra;
        for (std::size_t m = 0; m < members.size(); ++m)
            extra.push_back(report_detail::cell_differences(cells[members[m]].cell,
                                                            cells[members[m == 0 ? 1 : 0]].cell));
        for (std::size_t m = 0; m < members.size(); ++m) cells[members[m]].label += " [" + extra[m] + "]";
    }
}

change_verdict judge(const metric_figure& base, const metric_figure& other, metric_direction direction,
                     double noise_floor) {
    const double diff = other.value - base.value;
    // nvbench's legacy rule (|diff| within the smaller noise) flags identical code as changed (NVIDIA/nvbench#316);
    // requiring the difference to clear both spreads added, and a floor, keeps repeated runs `same`.
    const bool beyond = std::fabs(diff) > base.spread + other.spread &&
                        std::fabs(diff) > noise_floor * std::fabs(base.value);
    if (!beyond) return change_verdict::same;
    if (direction == metric_direction::neither) return change_verdict::differs;
    const bool up = diff > 0;
    return up == (direction == metric_direction::higher_is_better) ? change_verdict::better : change_verdict::worse;
}

}  // namespace

std::string_view to_string(change_verdict verdict) noexcept {
    switch (verdict) {
    case change_verdict::same: return "same";
    case change_verdict::better: return "better";
    case change_verdict::worse: return "worse";
    case change_verdict::differs: return "differs";
    }
    return "?";
}

compare_result compare_files(const std::vector<results_document>& documents, const compare_options& options) {
    if (documents.size() < 2) throw input_error("compare", "", "needs at least two results files");
    if (!options.names.empty() && options.names.size() != documents.size())
        throw input_error("compare", "", std::to_string(options.names.size()) + " names for " +
                                             std::to_string(documents.size()) + " results files");
    std::vector<std::string> metrics = options.metrics;
    if (metrics.empty()) metrics.assign(std::begin(k_default_compare_metrics), std::end(k_default_compare_metrics));
    for (const std::string& m : metrics)
        if (!is_numeric_metric(m))
            throw input_error("compare", "metric '" + m + "'",
                              "not a numeric metric" + config_detail::suggestion_suffix(m, numeric_metric_paths()));

    compare_result result;
    result.fail_above_pct = options.fail_above_pct;
    const std::size_t n = documents.size();
    for (std::size_t d = 0; d < n; ++d) {
        result.names.push_back(options.names.empty() ? report_detail::document_letter(d) : options.names[d]);
        result.provenance.push_back(report_detail::describe_provenance(documents[d].provenance));
    }

    // Join: one compared_cell per distinct key, in order of first appearance (baseline first).
    std::map<std::string, std::size_t> index;
    std::vector<std::vector<const cell_record*>> records;  // [cell][document]
    for (std::size_t d = 0; d < n; ++d) {
        for (const cell_record& r : documents[d].cells) {
            nlohmann::json cell = cell_to_json(r.cell);
            const std::string key = cell_key_without(cell, k_not_join_keys);
            auto [it, added] = index.emplace(key, result.cells.size());
            if (added) {
                result.cells.push_back({std::move(cell), cell_label(r.cell), std::vector<std::optional<outcome>>(n), {}});
                records.emplace_back(n, nullptr);
            }
            const cell_record*& slot = records[it->second][d];
            if (slot)
                result.warnings.push_back(result.names[d] + ": " + cell_label(r.cell) +
                                          " is recorded more than once; the last record counts");
            slot = &r;
        }
    }

    for (std::size_t c = 0; c < result.cells.size(); ++c) {
        compared_cell& cell = result.cells[c];
        for (std::size_t d = 0; d < n; ++d)
            if (records[c][d]) cell.outcomes[d] = records[c][d]->outcome;

        for (const std::string& m : metrics) {
            metric_row row;
            row.metric = m;
            std::size_t present = 0;
            for (std::size_t d = 0; d < n; ++d) {
                row.figures.push_back(records[c][d] ? read_metric(records[c][d]->metrics, m) : std::nullopt);
                present += row.figures.back().has_value();
            }
            if (present < 2) continue;
            row.changes.resize(n);
            const auto& base = row.figures[0];
            for (std::size_t d = 1; d < n; ++d) {
                if (!base || !row.figures[d]) continue;
                // No ratio to a zero (the KL divergence of an FP16 cell): equal zeros are the same, anything else
                // cannot be put as a ratio and is left uncompared.
                const bool zeros = base->value == 0 && row.figures[d]->value == 0;
                if (base->value == 0 && !zeros) continue;
                metric_row::change ch;
                ch.ratio = zeros ? 1.0 : row.figures[d]->value / base->value;
                ch.change_pct = zeros ? 0.0 : (row.figures[d]->value - base->value) / std::fabs(base->value) * 100;
                ch.verdict = judge(*base, *row.figures[d], direction_of(m), options.noise_floor);
                ch.regression = options.fail_above_pct && ch.verdict == change_verdict::worse &&
                                std::fabs(ch.change_pct) > *options.fail_above_pct;
                row.changes[d] = ch;
            }
            cell.metrics.push_back(std::move(row));
        }
    }
    disambiguate_labels(result.cells);

    if (options.fail_above_pct) {
        for (const compared_cell& cell : result.cells) {
            for (std::size_t d = 1; d < n; ++d) {
                if (stopped_running(cell, d))
                    result.regressions.push_back(cell.label + ": outcome ok -> " +
                                                 std::string(to_string(*cell.outcomes[d])) + " in " + result.names[d]);
                for (const metric_row& row : cell.metrics)
                    if (row.changes[d] && row.changes[d]->regression)
                        result.regressions.push_back(cell.label + ": " + row.metric + " " +
                                                     report_detail::format_change_pct(row.changes[d]->change_pct) + " in " +
                                                     result.names[d] + " (ratio " +
                                                     report_detail::format_ratio(row.changes[d]->ratio) + ")");
            }
        }
    }
    return result;
}

bool stopped_running(const compared_cell& cell, std::size_t d) noexcept {
    return cell.outcomes[0] == outcome::ok && cell.outcomes[d] && *cell.outcomes[d] != outcome::ok;
}

int compare_exit_code(const compare_result& result) noexcept {
    return result.regressions.empty() ? 0 : k_compare_regression_exit_code;
}

}  // namespace qbench
