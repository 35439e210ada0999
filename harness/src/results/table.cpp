#include "qbench/results/table.hpp"

#include "qbench/results/metrics.hpp"

#include <algorithm>
#include <array>
#include <cstdio>

namespace qbench {

namespace {

constexpr std::size_t k_columns = 12;
constexpr std::size_t k_reason_width = 48;
constexpr std::array<const char*, k_columns> k_headers = {
    "#", "model", "framework", "bits", "beam", "instance", "outcome", "load s", "decode tok/s", "VRAM GiB", "BW util",
    "reason"};
// Numbers right-aligned (markdown "---:"), words left.
constexpr std::array<bool, k_columns> k_numeric = {true,  false, false, true, true, false,
                                                   false, true,  true,  true, true, false};

/// A number from a metric that is a plain number or a summary (its median); nullptr-safe.
const nlohmann::ordered_json* figure(const cell_record& r, const char* name) {
    const auto it = r.metrics.find(name);
    if (it == r.metrics.end()) return nullptr;
    if (it->is_number()) return &*it;
    if (it->is_object()) {
        const auto median = it->find(metric::k_median);
        if (median != it->end() && median->is_number()) return &*median;
    }
    return nullptr;
}

std::string format_number(const nlohmann::ordered_json* v, double scale, const char* format) {
    if (!v) return "-";
    char buf[64];
    std::snprintf(buf, sizeof buf, format, v->get<double>() * scale);
    return buf;
}

/// One line, no pipes (they would split the markdown cell), at most k_reason_width characters.
std::string short_reason(const std::string& reason) {
    std::string s;
    for (char c : reason) s += (c == '\n' || c == '\r' || c == '\t') ? ' ' : (c == '|' ? '/' : c);
    if (s.size() > k_reason_width) s = s.substr(0, k_reason_width - 3) + "...";
    return s;
}

std::string framework_label(const cell_spec& cell) {
    // The bnb 4-bit formats differ by quant type; the table would otherwise show nf4 and fp4 alike.
    if (cell.framework == "bnb" && cell.bits == 4)
        return "bnb " + cell.bnb.quant_type + (cell.bnb.double_quant ? "+dq" : "");
    return cell.framework;
}

}  // namespace

std::string format_cells_table(const std::vector<cell_record>& records) {
    std::vector<std::array<std::string, k_columns>> rows;
    rows.reserve(records.size());
    for (std::size_t i = 0; i < records.size(); ++i) {
        const cell_record& r = records[i];
        rows.push_back({std::to_string(i + 1), r.cell.model, framework_label(r.cell), std::to_string(r.cell.bits),
                        std::to_string(r.cell.beam), r.cell.instance, std::string(to_string(r.outcome)),
                        format_number(figure(r, metric::k_load_time_s), 1, "%.2f"),
                        format_number(figure(r, metric::k_decode_tokens_per_s), 1, "%.1f"),
                        format_number(figure(r, metric::k_vram_peak_bytes), 1.0 / (1024.0 * 1024.0 * 1024.0), "%.2f"),
                        format_number(figure(r, metric::k_bandwidth_utilization), 100, "%.0f%%"),
                        r.reason.empty() ? "" : short_reason(r.reason)});
    }

    std::array<std::size_t, k_columns> width{};
    for (std::size_t c = 0; c < k_columns; ++c) {
        width[c] = std::max<std::size_t>(3, std::string(k_headers[c]).size());  // "---" is the shortest rule
        for (const auto& row : rows) width[c] = std::max(width[c], row[c].size());
    }
    const auto emit = [&](std::string& out, const std::array<std::string, k_columns>& cells) {
        out += '|';
        for (std::size_t c = 0; c < k_columns; ++c) {
            const std::string pad(width[c] - cells[c].size(), ' ');
            out += ' ';
            out += k_numeric[c] ? pad + cells[c] : cells[c] + pad;
            out += " |";
        }
        out += '\n';
    };

    std::string out;
    std::array<std::string, k_columns> header, rule;
    for (std::size_t c = 0; c < k_columns; ++c) {
        header[c] = k_headers[c];
        rule[c] = std::string(width[c] - 1, '-') + (k_numeric[c] ? ':' : '-');
    }
    emit(out, header);
    emit(out, rule);
    for (const auto& row : rows) emit(out, row);
    return out;
}

}  // namespace qbench
