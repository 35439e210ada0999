// Evaluating claims against a results file: select cells, pair or group them by everything outside `vary`, check
// the rule per pair/group, and sum the checks up into a verdict with a one-line reason.
#include "qbench/report/claim_report.hpp"

#include "qbench/report/metric_reading.hpp"
#include "qbench/results/metrics.hpp"
#include "text_table.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

namespace qbench {
namespace rd = report_detail;

namespace {

// A record with its cell as JSON (what selectors and keys read) and its label, computed once.
struct cell_entry {
    const cell_record* record;
    nlohmann::json cell;
    std::string label;
};

std::string bounds_text(const claim& c) {
    if (c.min && c.max) return "in [" + rd::format_ratio(*c.min) + ", " + rd::format_ratio(*c.max) + "]";
    if (c.min) return ">= " + rd::format_ratio(*c.min);
    return "<= " + rd::format_ratio(*c.max);
}

std::string percent_text(double fraction) {
    char text[32];
    std::snprintf(text, sizeof text, "%g%%", fraction * 100);
    return text;
}

// The words of a label ("vicuna-7b-v0 bnb 4b nf4 beam1 g5.2xlarge").
std::vector<std::string> words(const std::string& label) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < label.size()) {
        const std::size_t end = std::min(label.find(' ', pos), label.size());
        if (end > pos) out.push_back(label.substr(pos, end - pos));
        pos = end + 1;
    }
    return out;
}

// How `other` differs from `base`, in the words of its label: "fp16 16b" beside "vicuna-7b-v0 bnb 4b nf4 beam1
// g5.2xlarge". Paired cells agree on everything outside `vary`, so that is all a reader needs. Where the labels agree
// (an option the label does not show), the differing parameters are named instead.
std::string difference(const cell_entry& base, const cell_entry& other) {
    const std::vector<std::string> mine = words(base.label);
    std::string out;
    for (const std::string& w : words(other.label))
        if (std::find(mine.begin(), mine.end(), w) == mine.end()) out += (out.empty() ? "" : " ") + w;
    return out.empty() ? rd::cell_differences(other.cell, base.cell) : out;
}

class evaluator {
public:
    explicit evaluator(const results_document& results) {
        m_cells.reserve(results.cells.size());
        for (const cell_record& r : results.cells) m_cells.push_back({&r, cell_to_json(r.cell), cell_label(r.cell)});
    }

    claim_result evaluate(const claim& c) const {
        claim_result result;
        result.id = c.id;
        result.text = c.text;
        result.source = c.source;
        result.kind = c.kind;
        switch (c.kind) {
        case claim_kind::ratio: ratio(c, result); break;
        case claim_kind::ordering: ordering(c, result); break;
        case claim_kind::alike: alike(c, result); break;
        case claim_kind::fits: fits(c, result); break;
        }
        return result;
    }

    std::vector<cell_overview> overview() const {
        std::vector<cell_overview> rows;
        for (const cell_entry& e : m_cells) {
            cell_overview row;
            row.label = e.label;
            row.outcome = std::string(to_string(e.record->outcome));
            const auto value = [&](std::string_view path) -> std::optional<double> {
                const auto f = read_metric(e.record->metrics, path);
                return f ? std::optional<double>(f->value) : std::nullopt;
            };
            row.tokens_per_s = value(metric::k_decode_tokens_per_s);
            row.top1_agreement = value("quality.top1_agreement");
            row.mean_kl = value("quality.mean_kl");
            row.vram_peak_bytes = value(metric::k_vram_peak_bytes);
            rows.push_back(std::move(row));
        }
        return rows;
    }

private:
    // What a claim looked at, for "not evaluated" reasons and the note on cells left out.
    struct selection {
        std::vector<const cell_entry*> matched;  // matched the selectors
        std::vector<const cell_entry*> usable;   // and ran (ok) with the metric(s)
    };

    selection select(const claim& c, const cell_selector& s, const std::vector<std::string>& metrics) const {
        selection out;
        for (const cell_entry& e : m_cells) {
            if (!c.where.matches(e.cell) || !s.matches(e.cell)) continue;
            out.matched.push_back(&e);
            const bool has_metric = std::any_of(metrics.begin(), metrics.end(), [&](const std::string& m) {
                return read_metric(e.record->metrics, m).has_value();
            });
            if (e.record->outcome == outcome::ok && has_metric) out.usable.push_back(&e);
        }
        return out;
    }

    static double value_of(const cell_entry& e, const std::string& metric) {
        return read_metric(e.record->metrics, metric)->value;
    }

    static std::string figure(const cell_entry& e, const std::string& metric) {
        return rd::format_figure(value_of(e, metric), unit_of(metric));
    }

    // Cells that matched but could not take part: said in the reason, so a thin result is not mistaken for a full
    // one. A cell may match both sides of a claim; it counts once.
    static std::string left_out_note(std::initializer_list<const selection*> sides, const std::string& what) {
        std::set<const cell_entry*> matched, usable;
        for (const selection* side : sides) {
            matched.insert(side->matched.begin(), side->matched.end());
            usable.insert(side->usable.begin(), side->usable.end());
        }
        if (matched.size() == usable.size()) return "";
        return "; " + std::to_string(matched.size() - usable.size()) + " matching cell(s) left out (not ok or no " +
               what + ")";
    }

    static std::string no_cells_reason(const std::vector<std::pair<const selection*, std::string>>& sides,
                                       const std::string& metric_text, const claim& c) {
        for (const auto& [side, name] : sides) {
            if (side->matched.empty()) return "no cells: none matches " + name;
            if (side->usable.empty()) return "no cells: none of the " + std::to_string(side->matched.size()) +
                                             " cells matching " + name + " is ok with " + metric_text;
        }
        std::string vary;
        for (const std::string& v : c.vary) vary += (vary.empty() ? "" : ", ") + v;
        return "no cells: no two cells agree on every parameter outside [" + vary + "]";
    }

    // Sums the checks up: the verdict, what was measured over all checks, and a reason that states the rule, the
    // count and the first failure.
    static void conclude(claim_result& result, const std::string& rule, const std::string& unit_name,
                         const std::string& measured, const std::string& note) {
        const std::size_t n = result.checks.size();
        const std::size_t held = static_cast<std::size_t>(
            std::count_if(result.checks.begin(), result.checks.end(), [](const claim_check& k) { return k.holds; }));
        result.status = held == n ? claim_status::reproduced
                        : held == 0 ? claim_status::not_reproduced
                                    : claim_status::partly;
        result.measured = measured + " over " + std::to_string(n) + " " + unit_name;
        result.why = rule + ": holds in " + std::to_string(held) + " of " + std::to_string(n);
        if (held != n) {
            const auto failed = std::find_if(result.checks.begin(), result.checks.end(),
                                             [](const claim_check& k) { return !k.holds; });
            result.why += "; fails for " + failed->subject + " (" + failed->figures + ")";
            if (n - held > 1) result.why += " and " + std::to_string(n - held - 1) + " more";
        }
        result.why += note;
    }

    static std::string range_text(const std::vector<double>& values) {
        const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
        const std::string low = rd::format_ratio(*lo), high = rd::format_ratio(*hi);
        return low == high ? low : low + "-" + high;
    }

    // Pairs of (first, second) usable cells that agree on everything outside `vary`, in file order of `first`.
    static std::vector<std::pair<const cell_entry*, const cell_entry*>> pairs(const selection& first,
                                                                              const selection& second,
                                                                              const std::vector<std::string>& vary) {
        std::map<std::string, std::vector<const cell_entry*>> by_key;
        for (const cell_entry* e : second.usable) by_key[cell_key_without(e->cell, vary)].push_back(e);
        std::vector<std::pair<const cell_entry*, const cell_entry*>> out;
        for (const cell_entry* a : first.usable) {
            const auto it = by_key.find(cell_key_without(a->cell, vary));
            if (it == by_key.end()) continue;
            for (const cell_entry* b : it->second)
                if (b != a) out.emplace_back(a, b);
        }
        return out;
    }

    void ratio(const claim& c, claim_result& result) const {
        const std::string& metric = c.metrics.front();
        const selection num = select(c, c.first, c.metrics);
        const selection den = select(c, c.second, c.metrics);
        std::vector<double> ratios;
        for (const auto& [a, b] : pairs(num, den, c.vary)) {
            const double va = value_of(*a, metric), vb = value_of(*b, metric);
            if (vb == 0) continue;  // no ratio to a zero; such a record would be broken anyway
            const double r = va / vb;
            ratios.push_back(r);
            result.checks.push_back({a->label + " / " + difference(*a, *b),
                                     rd::format_ratio(r) + " (" + figure(*a, metric) + " / " + figure(*b, metric) + ")",
                                     (!c.min || r >= *c.min) && (!c.max || r <= *c.max)});
        }
        if (result.checks.empty()) {
            result.why = no_cells_reason({{&num, "the numerator {" + c.first.describe() + "}"},
                                          {&den, "the denominator {" + c.second.describe() + "}"}},
                                         metric, c);
            return;
        }
        conclude(result, metric + " ratio " + bounds_text(c), "pairs", "ratio " + range_text(ratios),
                 left_out_note({&num, &den}, metric));
    }

    void ordering(const claim& c, claim_result& result) const {
        const std::string& metric = c.metrics.front();
        const selection subjects = select(c, c.first, c.metrics);
        const selection among = select(c, c.second, c.metrics);
        // Groups in file order of their first cell, so the checks read in the order the matrix ran.
        std::vector<std::string> order;
        std::map<std::string, std::vector<const cell_entry*>> groups;
        const auto add = [&](const cell_entry* e) {
            const std::string key = cell_key_without(e->cell, c.vary);
            auto& g = groups[key];
            if (g.empty()) order.push_back(key);
            if (std::find(g.begin(), g.end(), e) == g.end()) g.push_back(e);
        };
        for (const cell_entry* e : subjects.usable) add(e);
        for (const cell_entry* e : among.usable) add(e);

        const auto better = [&](double x, double y) { return c.highest ? x > y : x < y; };
        std::vector<double> ratios;
        for (const std::string& key : order) {
            const cell_entry* best_subject = nullptr;
            const cell_entry* best_other = nullptr;
            for (const cell_entry* e : groups[key]) {
                const cell_entry*& best = c.first.matches(e->cell) ? best_subject : best_other;
                if (!best || better(value_of(*e, metric), value_of(*best, metric))) best = e;
            }
            if (!best_subject || !best_other) continue;
            const double s = value_of(*best_subject, metric), o = value_of(*best_other, metric);
            const bool holds = c.highest ? s >= o * (1 - c.tolerance) : s <= o * (1 + c.tolerance);
            if (o != 0) ratios.push_back(s / o);
            result.checks.push_back({best_subject->label,
                                     figure(*best_subject, metric) + " vs best other " + figure(*best_other, metric) +
                                         " (" + difference(*best_subject, *best_other) + ")",
                                     holds});
        }
        if (result.checks.empty()) {
            result.why = no_cells_reason({{&subjects, "the subject {" + c.first.describe() + "}"},
                                          {&among, "the others {" + c.second.describe() + "}"}},
                                         metric, c);
            return;
        }
        std::string rule = "{" + c.first.describe() + "} " + (c.highest ? "highest" : "lowest") + " " + metric;
        if (c.tolerance > 0) rule += " within " + percent_text(c.tolerance);
        conclude(result, rule, "groups", "subject / best other " + (ratios.empty() ? "-" : range_text(ratios)),
                 left_out_note({&subjects, &among}, metric));
    }

    void alike(const claim& c, claim_result& result) const {
        const selection first = select(c, c.first, c.metrics);
        const selection second = select(c, c.second, c.metrics);
        double worst = 0;
        for (const auto& [a, b] : pairs(first, second, c.vary)) {
            std::string figures;
            bool holds = true;
            bool compared = false;
            for (const std::string& metric : c.metrics) {
                const auto fa = read_metric(a->record->metrics, metric);
                const auto fb = read_metric(b->record->metrics, metric);
                if (!fa || !fb || fb->value == 0) continue;
                compared = true;
                const double r = fa->value / fb->value;
                worst = std::max(worst, std::fabs(r - 1));
                holds = holds && std::fabs(r - 1) <= c.tolerance;
                figures += (figures.empty() ? "" : "; ") + metric + " " + rd::format_ratio(r) + " (" +
                           figure(*a, metric) + " / " + figure(*b, metric) + ")";
            }
            if (compared) result.checks.push_back({a->label + " / " + difference(*a, *b), figures, holds});
        }
        std::string metrics;
        for (const std::string& m : c.metrics) metrics += (metrics.empty() ? "" : ", ") + m;
        if (result.checks.empty()) {
            result.why = no_cells_reason({{&first, "the first {" + c.first.describe() + "}"},
                                          {&second, "the second {" + c.second.describe() + "}"}},
                                         metrics, c);
            return;
        }
        conclude(result, metrics + " alike within " + percent_text(c.tolerance), "pairs",
                 "largest difference " + percent_text(std::round(worst * 1000) / 1000),
                 left_out_note({&first, &second}, metrics));
    }

    void fits(const claim& c, claim_result& result) const {
        const outcome out_of_budget = c.budget == memory_kind::vram ? outcome::oom_vram : outcome::oom_host;
        const std::string budget = c.budget == memory_kind::vram ? "VRAM" : "host RAM";
        std::size_t matched = 0, judged = 0, ran = 0;
        for (const fits_expectation& row : c.expectations) {
            for (const cell_entry& e : m_cells) {
                if (!c.where.matches(e.cell) || !row.select.matches(e.cell)) continue;
                ++matched;
                const outcome o = e.record->outcome;
                if (o != outcome::ok && o != out_of_budget) continue;  // cannot say whether it fits
                ++judged;
                const bool fitted = o == outcome::ok;
                ran += fitted ? 1 : 0;
                result.checks.push_back({e.label, std::string("expected ") + (row.fits ? "fits" : "oom") + "; " +
                                                      fits_figures(*e.record, c.budget),
                                         fitted == row.fits});
            }
        }
        if (result.checks.empty()) {
            std::string selectors;
            for (const fits_expectation& row : c.expectations)
                selectors += (selectors.empty() ? "{" : ", {") + row.select.describe() + "}";
            result.why = matched == 0 ? "no cells: none matches " + selectors
                                      : "no cells: none of the " + std::to_string(matched) +
                                            " matching cells ended ok or " + std::string(to_string(out_of_budget));
            return;
        }
        const std::string oom_name(to_string(out_of_budget));
        conclude(result, "fits / out of " + budget + " as expected", "cells",
                 std::to_string(ran) + " ran, " + std::to_string(judged - ran) + " " + oom_name,
                 matched == judged ? ""
                                   : "; " + std::to_string(matched - judged) +
                                         " matching cell(s) left out (outcome neither ok nor " + oom_name + ")");
    }

    static std::string fits_figures(const cell_record& r, memory_kind budget) {
        if (r.outcome == outcome::ok) {
            const char* key = budget == memory_kind::vram ? metric::k_vram_peak_bytes : metric::k_host_peak_rss_bytes;
            const auto peak = read_metric(r.metrics, key);
            return peak ? "ran, peak " + rd::format_figure(peak->value, "bytes") : "ran";
        }
        std::string text(to_string(r.outcome));
        const auto requested = read_metric(r.metrics, "oom.requested_bytes");
        const auto available = read_metric(r.metrics, "oom.available_bytes");
        const auto budget_bytes = read_metric(r.metrics, "oom.budget_bytes");
        if (requested && available) {
            text += ": " + rd::format_figure(requested->value, "bytes") + " requested, " +
                    rd::format_figure(available->value, "bytes") + " available";
            if (budget_bytes) text += " of " + rd::format_figure(budget_bytes->value, "bytes");
        }
        return text;
    }

    std::vector<cell_entry> m_cells;
};

}  // namespace

std::string_view to_string(claim_status status) noexcept {
    switch (status) {
    case claim_status::reproduced: return "reproduced";
    case claim_status::partly: return "partly reproduced";
    case claim_status::not_reproduced: return "not reproduced";
    case claim_status::not_evaluated: return "not evaluated";
    }
    return "?";
}

report_result evaluate_claims(const results_document& results, const claims_catalog& catalog) {
    const evaluator eval(results);
    report_result report;
    for (const claim& c : catalog.claims) report.claims.push_back(eval.evaluate(c));
    report.cells = eval.overview();
    return report;
}

}  // namespace qbench
