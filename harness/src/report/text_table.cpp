#include "text_table.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace qbench::report_detail {

namespace {

// Display width in a terminal: UTF-8 continuation bytes take no column ("±" is two bytes, one column).
std::size_t display_width(std::string_view text) {
    return static_cast<std::size_t>(
        std::count_if(text.begin(), text.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::string escape_cell(std::string_view text) {
    std::string out;
    for (char c : text) {
        if (c == '|') out += '\\';
        out += c == '\n' ? ' ' : c;
    }
    return out;
}

std::string printf_text(const char* format, double value) {
    char text[64];
    std::snprintf(text, sizeof text, format, value);
    return text;
}

// Decimals for a figure of this size: at least three significant figures, one decimal from 10 up (tokens/s,
// seconds), none from 1000 up; -1 = exponent form, for sizes no everyday figure has.
int decimals_for(double v) {
    const double a = std::fabs(v);
    if (a != 0 && (a < 1e-3 || a >= 1e9)) return -1;
    if (a >= 1000) return 0;
    if (a >= 10) return 1;
    if (a >= 1) return 2;
    return 3;
}

std::string fixed(double v, int decimals) {
    if (decimals < 0) return printf_text("%.3g", v);
    char text[64];
    std::snprintf(text, sizeof text, "%.*f", decimals, v);
    return text;
}

}  // namespace

std::string markdown_table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::vector<std::string>> cells;
    cells.reserve(rows.size() + 1);
    cells.emplace_back();
    for (const std::string& h : header) cells.back().push_back(escape_cell(h));
    for (const auto& row : rows) {
        cells.emplace_back();
        for (std::size_t i = 0; i < header.size(); ++i) cells.back().push_back(i < row.size() ? escape_cell(row[i]) : "");
    }
    std::vector<std::size_t> width(header.size(), 3);  // "---" is the narrowest separator
    for (const auto& row : cells)
        for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], display_width(row[i]));

    const auto line = [&](const std::vector<std::string>& row) {
        std::string out = "|";
        for (std::size_t i = 0; i < row.size(); ++i)
            out += " " + row[i] + std::string(width[i] - display_width(row[i]), ' ') + " |";
        return out + "\n";
    };
    std::string out = line(cells[0]);
    out += "|";
    for (std::size_t w : width) out += " " + std::string(w, '-') + " |";
    out += "\n";
    for (std::size_t r = 1; r < cells.size(); ++r) out += line(cells[r]);
    return out;
}

std::string csv_row(const std::vector<std::string>& fields) {
    std::string out;
    for (std::size_t i = 0; i < fields.size(); ++i) {
        if (i) out += ',';
        const std::string& f = fields[i];
        if (f.find_first_of(",\"\n\r") == std::string::npos) {
            out += f;
            continue;
        }
        out += '"';
        for (char c : f) {
            if (c == '"') out += '"';
            out += c;
        }
        out += '"';
    }
    return out + "\n";
}

std::string format_figure(double value, std::string_view unit) { return format_figure(value, 0.0, unit); }

std::string format_figure(double value, double spread, std::string_view unit) {
    double scale = 1;
    std::string shown_unit(unit);
    if (unit == "bytes") {
        scale = 1024.0 * 1024.0 * 1024.0;
        shown_unit = "GiB";
    } else if (unit == "1") {
        shown_unit.clear();
    }
    // The spread takes the value's decimals, so "41.2 ±0.3" reads as one figure.
    const int decimals = decimals_for(value / scale);
    std::string text = fixed(value / scale, decimals);
    if (spread > 0) text += " ±" + fixed(spread / scale, decimals);
    if (!shown_unit.empty()) text += " " + shown_unit;
    return text;
}

std::string format_ratio(double ratio) { return printf_text("%.3f", ratio); }

std::string format_change_pct(double pct) { return printf_text("%+.1f%%", pct); }

std::string document_letter(std::size_t i) {
    return std::string(1, static_cast<char>('A' + i % 26)) + (i >= 26 ? std::to_string(i / 26) : "");
}

std::string cell_differences(const nlohmann::json& cell, const nlohmann::json& base) {
    // flatten() gives {"/gptq/damp_percent": 0.1, ...}: JSON pointers to every leaf.
    const nlohmann::json mine = cell.flatten(), theirs = base.flatten();
    const auto dotted = [](std::string pointer) {
        pointer.erase(0, 1);
        for (char& c : pointer)
            if (c == '/') c = '.';
        return pointer;
    };
    const auto text = [](const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
    std::string out;
    const auto add = [&](const std::string& key, const std::string& value) {
        out += (out.empty() ? "" : " ") + dotted(key) + "=" + value;
    };
    for (const auto& [key, value] : mine.items())
        if (!theirs.contains(key) || theirs[key] != value) add(key, text(value));
    for (const auto& [key, value] : theirs.items())
        if (!mine.contains(key)) add(key, "-");
    return out;
}

std::string describe_provenance(const nlohmann::ordered_json& provenance) {
    // Files from other tools or older versions may lack any of these: say what is there, skip the rest.
    const auto text_at = [&](std::initializer_list<const char*> path) -> std::string {
        const nlohmann::ordered_json* node = &provenance;
        for (const char* key : path) {
            if (!node->is_object() || !node->contains(key)) return "";
            node = &(*node)[key];
        }
        return node->is_string() ? node->get<std::string>() : "";
    };
    std::vector<std::string> parts;
    const std::string gpu = text_at({"gpu", "name"});
    parts.push_back(gpu.empty() ? "no GPU (CPU run)" : gpu);
    if (const std::string host = text_at({"host", "hostname"}); !host.empty()) parts.push_back("host " + host);
    std::string version = text_at({"qbench_version"});
    if (const std::string commit = text_at({"git_commit"}); !commit.empty() && commit != "unknown")
        version += " @" + commit.substr(0, 7);
    if (!version.empty()) parts.push_back("qbench " + version);
    if (const std::string when = text_at({"timestamp"}); !when.empty()) parts.push_back(when);
    std::string out;
    for (const std::string& p : parts) out += (out.empty() ? "" : ", ") + p;
    return out;
}

}  // namespace qbench::report_detail
