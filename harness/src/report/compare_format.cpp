// A compare_result as markdown, CSV and JSON. Outcome changes and one-file cells are derived from the per-document
// outcomes here rather than stored twice.
#include "qbench/report/compare.hpp"

#include "qbench/report/cell_selector.hpp"
#include "text_table.hpp"

#include <cstdio>

namespace qbench {
namespace rd = report_detail;

namespace {

std::string outcome_text(const std::optional<outcome>& o) { return o ? std::string(to_string(*o)) : "absent"; }

// How an outcome changed against the baseline: a cell that stops running is worse, one that starts running better.
change_verdict outcome_verdict(outcome base, outcome other) {
    if (base == outcome::ok) return change_verdict::worse;
    if (other == outcome::ok) return change_verdict::better;
    return change_verdict::differs;
}

std::size_t present_count(const compared_cell& cell) {
    std::size_t n = 0;
    for (const auto& o : cell.outcomes) n += o.has_value();
    return n;
}

std::string text_at(const nlohmann::json& cell, const char* key) {
    const nlohmann::json* v = find_dotted(cell, key);
    if (!v) return "";
    return v->is_string() ? v->get<std::string>() : v->dump();
}

}  // namespace

std::string format_compare_markdown(const compare_result& result) {
    const std::size_t n = result.names.size();
    std::string out = "## qbench compare\n\n";
    for (std::size_t d = 0; d < n; ++d)
        out += "- " + rd::document_letter(d) + (d == 0 ? " (baseline)" : "") + ": " + result.names[d] + " — " +
               result.provenance[d] + "\n";
    out += "\nFigures are medians ± spread (half the p10-p90 range of the repetitions). A change counts when it exceeds "
           "both spreads added and the noise floor; `worse`/`better` follow each metric's direction.\n\n";

    std::vector<std::string> header = {"cell", "metric", "A"};
    for (std::size_t d = 1; d < n; ++d) {
        const std::string l = rd::document_letter(d);
        header.insert(header.end(), {l, l + "/A", l + " verdict"});
    }
    std::vector<std::vector<std::string>> rows;
    for (const compared_cell& cell : result.cells) {
        bool first = true;
        for (const metric_row& row : cell.metrics) {
            const std::string_view unit = unit_of(row.metric);
            const auto figure = [&](std::size_t d) {
                return row.figures[d] ? rd::format_figure(row.figures[d]->value, row.figures[d]->spread, unit) : "-";
            };
            std::vector<std::string> line = {first ? cell.label : "", row.metric, figure(0)};
            for (std::size_t d = 1; d < n; ++d) {
                const auto& ch = row.changes[d];
                line.push_back(figure(d));
                line.push_back(ch ? rd::format_ratio(ch->ratio) : "-");
                line.push_back(ch ? std::string(to_string(ch->verdict)) + (ch->verdict == change_verdict::same
                                                                                ? ""
                                                                                : " " + rd::format_change_pct(ch->change_pct)) +
                                        (ch->regression ? " REGRESSION" : "")
                                  : "-");
            }
            rows.push_back(std::move(line));
            first = false;
        }
    }
    out += rows.empty() ? "No metric is present in two files for any cell.\n" : rd::markdown_table(header, rows);

    rows.clear();
    for (const compared_cell& cell : result.cells) {
        if (!cell.outcomes[0]) continue;
        bool changed = false;
        for (std::size_t d = 1; d < n; ++d) changed |= cell.outcomes[d] && *cell.outcomes[d] != *cell.outcomes[0];
        if (!changed) continue;
        std::vector<std::string> line = {cell.label};
        for (std::size_t d = 0; d < n; ++d) line.push_back(outcome_text(cell.outcomes[d]));
        rows.push_back(std::move(line));
    }
    if (!rows.empty()) {
        std::vector<std::string> h = {"cell"};
        for (std::size_t d = 0; d < n; ++d) h.push_back(rd::document_letter(d));
        out += "\n### Outcome changes\n\n" + rd::markdown_table(h, rows);
    }

    rows.clear();
    for (const compared_cell& cell : result.cells) {
        if (present_count(cell) != 1) continue;
        for (std::size_t d = 0; d < n; ++d)
            if (cell.outcomes[d]) rows.push_back({cell.label, rd::document_letter(d), outcome_text(cell.outcomes[d])});
    }
    if (!rows.empty()) out += "\n### Cells in one file only\n\n" + rd::markdown_table({"cell", "only in", "outcome"}, rows);

    if (!result.warnings.empty()) {
        out += "\n### Warnings\n\n";
        for (const std::string& w : result.warnings) out += "- " + w + "\n";
    }
    if (result.fail_above_pct) {
        char threshold[32];
        std::snprintf(threshold, sizeof threshold, "%g%%", *result.fail_above_pct);
        if (result.regressions.empty()) {
            out += "\nNo regression beyond " + std::string(threshold) + ".\n";
        } else {
            out += "\n### Regressions beyond " + std::string(threshold) + "\n\n";
            for (const std::string& r : result.regressions) out += "- " + r + "\n";
        }
    }
    return out;
}

std::string format_compare_csv(const compare_result& result) {
    const std::size_t n = result.names.size();
    std::string out = rd::csv_row({"cell", "model", "framework", "bits", "beam", "instance", "metric", "unit", "baseline",
                                   "baseline_value", "baseline_spread", "file", "value", "spread", "ratio",
                                   "change_pct", "verdict", "regression"});
    // Shortest text that reads back as the same double, as the results files themselves write numbers.
    const auto num = [](double v) { return nlohmann::json(v).dump(); };
    for (const compared_cell& cell : result.cells) {
        const std::vector<std::string> head = {cell.label,
                                               text_at(cell.cell, "model"),
                                               text_at(cell.cell, "framework"),
                                               text_at(cell.cell, "bits"),
                                               text_at(cell.cell, "beam"),
                                               text_at(cell.cell, "instance")};
        const auto emit = [&](std::vector<std::string> tail) {
            std::vector<std::string> fields = head;
            fields.insert(fields.end(), tail.begin(), tail.end());
            out += rd::csv_row(fields);
        };
        for (std::size_t d = 1; d < n; ++d) {
            if (cell.outcomes[0] != cell.outcomes[d]) {
                std::string verdict = "differs";
                if (cell.outcomes[0] && cell.outcomes[d])
                    verdict = std::string(to_string(outcome_verdict(*cell.outcomes[0], *cell.outcomes[d])));
                const bool regression = result.fail_above_pct && stopped_running(cell, d);
                emit({"outcome", "", result.names[0], outcome_text(cell.outcomes[0]), "", result.names[d],
                      outcome_text(cell.outcomes[d]), "", "", "", verdict, regression ? "true" : "false"});
            }
            for (const metric_row& row : cell.metrics) {
                const auto& a = row.figures[0];
                const auto& b = row.figures[d];
                if (!a && !b) continue;
                const auto& ch = row.changes[d];
                emit({row.metric, std::string(unit_of(row.metric)), result.names[0], a ? num(a->value) : "",
                      a ? num(a->spread) : "", result.names[d], b ? num(b->value) : "", b ? num(b->spread) : "",
                      ch ? num(ch->ratio) : "", ch ? num(ch->change_pct) : "",
                      ch ? std::string(to_string(ch->verdict)) : "", ch && ch->regression ? "true" : "false"});
            }
        }
    }
    return out;
}

nlohmann::ordered_json compare_to_json(const compare_result& result) {
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    out["files"] = nlohmann::ordered_json::array();
    for (std::size_t d = 0; d < result.names.size(); ++d)
        out["files"].push_back({{"name", result.names[d]}, {"provenance", result.provenance[d]}});
    out["fail_above_pct"] = result.fail_above_pct ? nlohmann::ordered_json(*result.fail_above_pct) : nullptr;
    out["cells"] = nlohmann::ordered_json::array();
    for (const compared_cell& cell : result.cells) {
        nlohmann::ordered_json c = {{"label", cell.label}, {"cell", cell.cell}};
        c["outcomes"] = nlohmann::ordered_json::array();
        for (const auto& o : cell.outcomes)
            c["outcomes"].push_back(o ? nlohmann::ordered_json(std::string(to_string(*o))) : nullptr);
        c["metrics"] = nlohmann::ordered_json::array();
        for (const metric_row& row : cell.metrics) {
            nlohmann::ordered_json r = {{"metric", row.metric}, {"unit", std::string(unit_of(row.metric))}};
            r["figures"] = nlohmann::ordered_json::array();
            for (const auto& f : row.figures)
                r["figures"].push_back(f ? nlohmann::ordered_json{{"value", f->value}, {"spread", f->spread},
                                                                  {"count", f->count}}
                                         : nlohmann::ordered_json(nullptr));
            r["changes"] = nlohmann::ordered_json::array();
            for (const auto& ch : row.changes)
                r["changes"].push_back(ch ? nlohmann::ordered_json{{"ratio", ch->ratio},
                                                                   {"change_pct", ch->change_pct},
                                                                   {"verdict", std::string(to_string(ch->verdict))},
                                                                   {"regression", ch->regression}}
                                          : nlohmann::ordered_json(nullptr));
            c["metrics"].push_back(std::move(r));
        }
        out["cells"].push_back(std::move(c));
    }
    out["regressions"] = result.regressions;
    out["warnings"] = result.warnings;
    return out;
}

}  // namespace qbench
