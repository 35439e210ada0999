#pragma once
// Text output shared by the compare and report formatters: pipe tables, CSV rows, figures with their units.
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace qbench::report_detail {

/// A markdown pipe table whose columns are padded to line up in a terminal too; '|' inside a cell is escaped.
std::string markdown_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows);

/// One CSV line (RFC 4180 quoting where a field needs it), ending in "\n".
std::string csv_row(const std::vector<std::string>& fields);

/// A figure with its unit as people read it: bytes in GiB ("13.21 GiB"), "41.2 tokens/s", "4.21 s", "0.873".
std::string format_figure(double value, std::string_view unit);
/// A figure with its spread: "41.2 ±0.3 tokens/s"; without spread (0) as format_figure.
std::string format_figure(double value, double spread, std::string_view unit);
/// A ratio to three decimals: "0.667".
std::string format_ratio(double ratio);
/// A signed percentage to one decimal: "+12.5%", "-3.0%".
std::string format_change_pct(double pct);
/// The short name of the i-th compared file: "A", "B", ... ("A1" after "Z").
std::string document_letter(std::size_t i);

/// The parameters in which `cell` differs from `base` (both cell JSON), as "gptq.damp_percent=0.1 seed=2"; a key that
/// `cell` lacks shows as "key=-".
std::string cell_differences(const nlohmann::json& cell, const nlohmann::json& base);

/// A line about where a results file comes from: "NVIDIA H200, qbench 0.1.0 @1a2b3c4, 2025-03-14T09:26:53Z".
std::string describe_provenance(const nlohmann::ordered_json& provenance);

}  // namespace qbench::report_detail
