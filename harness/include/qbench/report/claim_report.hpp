#pragma once
/// `qbench report`: the seed's claims (claims.hpp) evaluated against one results file, as a scoreboard.
///
/// Each claim is checked once per pair or group of cells it applies to (per model, instance, beam width, ... as its
/// `vary` leaves equal); the claim is
///   reproduced       when every check holds,
///   partly           when some hold and some do not,
///   not reproduced   when none holds,
///   not evaluated    when the file has no cells to check it on, never silently "reproduced".
/// The report also lists every cell's decode speed beside its quality against FP16 (top-1 agreement, mean KL), so a
/// fast cell that answers differently from FP16 is seen as such.
#include "qbench/report/claims.hpp"
#include "qbench/results/results_file.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {

enum class claim_status : std::uint8_t { reproduced, partly, not_reproduced, not_evaluated };

/// "reproduced", "partly reproduced", "not reproduced", "not evaluated".
std::string_view to_string(claim_status status) noexcept;

/// One check of a claim: one pair (ratio, alike), one group (ordering) or one cell (fits).
struct claim_check {
    std::string subject;  ///< which cells: "vicuna-7b-v0 bnb 4b nf4 beam1 g5.2xlarge / fp16"
    std::string figures;  ///< what they measured: "0.642 (21.3 / 33.2 tokens/s)"
    bool holds = false;
};

/// A claim and its verdict.
struct claim_result {
    std::string id;
    std::string text;
    std::string source;
    claim_kind kind = claim_kind::ratio;
    claim_status status = claim_status::not_evaluated;
    std::string measured;             ///< the measured range over all checks: "ratio 0.612-0.684 over 6 pairs"
    std::string why;                  ///< one line: the rule, how many checks held, the first failure, cells left out
    std::vector<claim_check> checks;  ///< in results-file order
};

/// One cell of the results file: speed beside quality.
struct cell_overview {
    std::string label;                       ///< cell_label
    std::string outcome;                     ///< "ok", "oom_vram", ...
    std::optional<double> tokens_per_s;      ///< decode_tokens_per_s median
    std::optional<double> top1_agreement;    ///< quality.top1_agreement
    std::optional<double> mean_kl;           ///< quality.mean_kl (nats)
    std::optional<double> vram_peak_bytes;
};

struct report_result {
    std::vector<claim_result> claims;   ///< in catalog order
    std::vector<cell_overview> cells;   ///< in file order
};

/// Evaluates every claim of `catalog` against `results`. Never throws for results that parse_results accepted.
report_result evaluate_claims(const results_document& results, const claims_catalog& catalog);

/// The scoreboard as markdown: a table (claim, measured, verdict, why), the checks of each claim, then the
/// speed-and-quality table of the cells.
std::string format_report_markdown(const report_result& report);
/// The same as JSON: {"claims": [{id, text, source, kind, status, measured, why, checks: [{subject, figures,
/// holds}]}],
/// "cells": [{label, outcome, decode_tokens_per_s, top1_agreement, mean_kl, vram_peak_bytes}]} (absent figures null).
nlohmann::ordered_json report_to_json(const report_result& report);

}  // namespace qbench
