#pragma once
/// `qbench compare A.json B.json [...]`: results files side by side, cell by cell.
///
/// Cells are joined by their parameters (the cell JSON: model, framework, bits, beam, instance, seed, options,
/// generation settings), never by the machine, so runs of one matrix on two GPUs pair up. How many warm-up and timed
/// repetitions ran is not a parameter of the cell being measured and does not split a join. The first document is the
/// baseline; every other one is compared with it:
///   - per metric, the ratio other/baseline of the medians, and a verdict: `same` when the difference is within the
///     spread of the repetitions (half the p10..p90 range, both sides added) or below the noise floor, otherwise
///     `better` or `worse` (`differs` for a metric with no better direction);
///   - outcome changes (ok -> oom_vram is a regression, oom_vram -> ok an improvement);
///   - cells present in one document only.
/// With fail_above_pct set, a `worse` beyond that many percent, or a cell that ran in the baseline and no longer does,
/// is a regression; the CLI exits with k_compare_regression_exit_code when there is one (for CI gates).
#include "qbench/report/metric_reading.hpp"
#include "qbench/results/results_file.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {

/// Exit status of `qbench compare --fail-above` when it finds a regression (1 = a command failed, 2 = bad input).
inline constexpr int k_compare_regression_exit_code = 3;

/// The metrics compared when none are named: speed, load time, memory, bandwidth utilization, quality.
inline constexpr std::string_view k_default_compare_metrics[] = {
    "decode_tokens_per_s", "e2e_tokens_per_s",       "prefill_ms",      "load_time_s",     "vram_peak_bytes",
    "host_peak_rss_bytes", "bandwidth_utilization", "quality.top1_agreement", "quality.mean_kl",
};

struct compare_options {
    std::vector<std::string> names;    ///< one display name per document (file paths); empty = "A", "B", ...
    std::vector<std::string> metrics;  ///< metric paths (metric_reading.hpp); empty = k_default_compare_metrics
    double noise_floor = 0.01;         ///< relative change never flagged, whatever the spread (1 %)
    std::optional<double> fail_above_pct;  ///< regression threshold in percent; nullopt = never a regression
};

/// How one document's figure compares with the baseline's.
enum class change_verdict : std::uint8_t { same, better, worse, differs };
/// "same", "better", "worse", "differs".
std::string_view to_string(change_verdict verdict) noexcept;

/// One metric of one joined cell.
struct metric_row {
    std::string metric;
    std::vector<std::optional<metric_figure>> figures;  ///< per document; nullopt = absent there
    struct change {
        double ratio = 0;       ///< other / baseline
        double change_pct = 0;  ///< (other - baseline) / |baseline| in percent
        change_verdict verdict = change_verdict::same;
        bool regression = false;
    };
    std::vector<std::optional<change>> changes;  ///< per document; nullopt for the baseline and where not comparable
};

/// One cell, as found in each document.
struct compared_cell {
    nlohmann::json cell;                          ///< cell_to_json of the cell (the join key)
    std::string label;                            ///< cell_label, plus differing options where labels collide
    std::vector<std::optional<outcome>> outcomes;  ///< per document; nullopt = the cell is not in that document
    std::vector<metric_row> metrics;              ///< the compared metrics carried by at least two documents
};

struct compare_result {
    std::vector<std::string> names;        ///< display names, baseline first
    std::vector<std::string> provenance;   ///< per document: GPU, host, qbench version, timestamp
    std::vector<compared_cell> cells;      ///< in baseline order, then cells the baseline lacks in file order
    std::vector<std::string> regressions;  ///< one line each; empty = none (or no fail_above_pct)
    std::vector<std::string> warnings;     ///< e.g. a cell recorded twice in one file (the last record counts)
    std::optional<double> fail_above_pct;  ///< as given
};

/// Joins the documents' cells and compares every other document with the first. Throws input_error when fewer than
/// two documents are given, names and documents differ in number, or a metric path is unknown.
compare_result compare_files(const std::vector<results_document>& documents, const compare_options& options);

/// Markdown: the files, a table of metric rows (cell, metric, each document's figure ± spread, ratio and verdict
/// against the baseline), the outcome changes, the cells found in one file only, and the regressions.
std::string format_compare_markdown(const compare_result& result);
/// CSV, one line per (cell, metric, compared document), outcome changes and missing cells as rows of metric
/// "outcome": cell, model, framework, bits, beam, instance, metric, unit, baseline, baseline_value,
/// baseline_spread, file, value, spread, ratio, change_pct, verdict, regression.
std::string format_compare_csv(const compare_result& result);
/// JSON: {"files": [{name, provenance}], "fail_above_pct", "cells": [{label, cell, outcomes, metrics: [{metric, unit,
/// figures: [{value, spread, count} | null], changes: [{ratio, change_pct, verdict, regression} | null]}]}],
/// "regressions", "warnings"}.
nlohmann::ordered_json compare_to_json(const compare_result& result);

/// Whether the cell ran (ok) in the baseline and not in document `d`: always a regression under --fail-above.
bool stopped_running(const compared_cell& cell, std::size_t d) noexcept;

/// 0, or k_compare_regression_exit_code when the result holds a regression.
int compare_exit_code(const compare_result& result) noexcept;

}  // namespace qbench
