#pragma once
/// The seed article's claims as data (configs/claims.yaml): what each claim says, where it comes from, and the rule
/// that decides from a results file whether it holds. `qbench report` evaluates them (claim_report.hpp).
///
/// File form (every key is checked; unknown keys are errors with line:column):
///
///   claims_version: 1
///   source: "default source note for claims without one"      # optional
///   claims:
///     - id: bnb-4bit-two-thirds-of-fp16                        # unique: a-z, 0-9, "-", "_", "."
///       text: "bitsandbytes 4-bit runs at about 2/3 of its FP16 speed"
///       source: "where the claim comes from"
///       where: {beam: 1}                                       # optional: every cell the claim looks at
///       kind: ratio | ordering | alike | fits
///       ...kind-specific keys, below
///
/// Cells are compared only with cells that have the same parameters except those listed in `vary` (see
/// cell_key_without): "bnb 4-bit against fp16 on the same model, instance and beam width" is
///   vary: [framework, bits, bnb]
/// Only cells with outcome ok that carry the metric take part in ratio, ordering and alike.
///
///   ratio:    metric, numerator (selector), denominator (selector), vary, min and/or max.
///             Holds for a pair when min <= value(numerator) / value(denominator) <= max.
///   ordering: metric, subject (selector), among (selector, optional: any cell), vary, best: highest | lowest,
///             tolerance (fraction, default 0). Holds for a group when its best subject cell is at least as good as
///             every other cell of the group (within the tolerance).
///   alike:    metrics (list), first (selector), second (selector), vary, tolerance (fraction).
///             Holds for a pair when |value(first) / value(second) - 1| <= tolerance for every metric.
///   fits:     budget: vram | host (default vram), cells: a list of {select: selector, expect: fits | oom}.
///             A cell "fits" when its outcome is ok and is "oom" when it ran out of that budget (oom_vram or oom_host);
///             cells with any other outcome cannot say and are left out.
///
/// Metric paths are those of metric_reading.hpp ("decode_tokens_per_s", "quality.top1_agreement"); a summary compares
/// by its median. Selector keys are the cell's dotted keys (cell_selector.hpp).
#include "qbench/common/errors.hpp"
#include "qbench/report/cell_selector.hpp"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {

enum class claim_kind : std::uint8_t { ratio, ordering, alike, fits };

/// "ratio", "ordering", "alike", "fits".
std::string_view to_string(claim_kind kind) noexcept;

/// One row of a fits claim: these cells should (not) fit the budget.
struct fits_expectation {
    cell_selector select;
    bool fits = true;  ///< true: outcome ok expected; false: out of the claim's budget expected
};

/// One claim. Which members mean something depends on `kind` (see the file comment).
struct claim {
    std::string id;
    std::string text;                  ///< the claim as the seed article makes it
    std::string source;                ///< where it comes from
    claim_kind kind = claim_kind::ratio;
    std::string place;                 ///< "configs/claims.yaml:12:5": where it is defined, for messages
    cell_selector where;               ///< every cell the claim looks at; empty = all cells
    std::vector<std::string> vary;     ///< ratio, ordering, alike: keys in which compared cells may differ
    std::vector<std::string> metrics;  ///< ratio, ordering: exactly one; alike: one or more
    /// ratio: numerator and denominator; ordering: subject and among; alike: first and second.
    cell_selector first;
    cell_selector second;
    std::optional<double> min;         ///< ratio bounds (inclusive); at least one is set
    std::optional<double> max;
    double tolerance = 0;              ///< ordering, alike: allowed relative shortfall / difference
    bool highest = true;               ///< ordering: the best is the highest value (false: the lowest)
    memory_kind budget = memory_kind::vram;       ///< fits
    std::vector<fits_expectation> expectations;   ///< fits
};

/// A claims file as read.
struct claims_catalog {
    std::string file;           ///< the name it was read under
    std::vector<claim> claims;  ///< in file order
};

/// Parses and checks a claims file. Throws input_error(file_name, "line:column (key 'claims[2].min')", message) on
/// malformed YAML, unknown or missing keys, wrong types, unknown metrics or cell keys, and duplicate ids.
claims_catalog parse_claims(std::string_view yaml_text, const std::string& file_name);
/// parse_claims of a file's content; a missing or unreadable file is an input_error too.
claims_catalog load_claims(const std::filesystem::path& path);

}  // namespace qbench
