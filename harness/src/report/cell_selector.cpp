#include "qbench/report/cell_selector.hpp"

#include <cmath>

namespace qbench {

namespace {

// Integers compare exactly (a seed does not survive a round trip through double); mixed number kinds compare as
// doubles, so a claim may write 4 for a key the table stores as a number.
bool values_equal(const nlohmann::json& wanted, const nlohmann::json& actual) {
    if (wanted.is_string()) return actual.is_string() && glob_match(wanted.get_ref<const std::string&>(),
                                                                    actual.get_ref<const std::string&>());
    if (wanted.is_boolean()) return actual.is_boolean() && wanted.get<bool>() == actual.get<bool>();
    if (wanted.is_number() && actual.is_number()) {
        if (wanted.is_number_integer() && actual.is_number_integer()) {
            if (wanted.is_number_unsigned() || actual.is_number_unsigned())
                return wanted.dump() == actual.dump();
            return wanted.get<std::int64_t>() == actual.get<std::int64_t>();
        }
        return wanted.get<double>() == actual.get<double>();
    }
    return false;
}

std::string value_text(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

std::string number_text(double v) {
    // Range bounds are written by people: "2", "0.5"; %g keeps them that way.
    char text[32];
    std::snprintf(text, sizeof text, "%g", v);
    return text;
}

}  // namespace

bool selector_condition::matches(const nlohmann::json& cell) const {
    const nlohmann::json* value = find_dotted(cell, key);
    if (!value) return false;
    if (min || max) {
        if (!value->is_number()) return false;
        const double x = value->get<double>();
        return (!min || x >= *min) && (!max || x <= *max);
    }
    for (const nlohmann::json& wanted : any_of)
        if (values_equal(wanted, *value)) return true;
    return false;
}

std::string selector_condition::describe() const {
    if (min && max) return number_text(*min) + "<=" + key + "<=" + number_text(*max);
    if (min) return key + ">=" + number_text(*min);
    if (max) return key + "<=" + number_text(*max);
    std::string text = key + "=";
    for (std::size_t i = 0; i < any_of.size(); ++i) text += (i ? "|" : "") + value_text(any_of[i]);
    return text;
}

bool cell_selector::matches(const nlohmann::json& cell) const {
    for (const selector_condition& c : conditions)
        if (!c.matches(cell)) return false;
    return true;
}

std::string cell_selector::describe() const {
    if (conditions.empty()) return "any cell";
    std::string text;
    for (const selector_condition& c : conditions) text += (text.empty() ? "" : " ") + c.describe();
    return text;
}

bool glob_match(std::string_view pattern, std::string_view text) {
    // Greedy matching with one backtrack point (the last *), linear in practice for the short names matched here.
    std::size_t p = 0, t = 0;
    std::size_t star = std::string_view::npos, resume = 0;
    while (t < text.size()) {
        if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
            ++p;
            ++t;
        } else if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            resume = t;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            t = ++resume;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

std::string cell_key_without(nlohmann::json cell, std::span<const std::string> keys) {
    for (const std::string& key : keys) {
        // Cell keys are plain words joined by dots, so the dotted key maps one to one onto a JSON pointer. Only the
        // named member goes: its group may carry other parameters that still must agree.
        std::string pointer_text = "/" + key;
        for (char& c : pointer_text)
            if (c == '.') c = '/';
        const nlohmann::json::json_pointer pointer(pointer_text);
        const nlohmann::json::json_pointer parent = pointer.parent_pointer();
        if (cell.contains(parent) && cell.at(parent).is_object()) cell.at(parent).erase(pointer.back());
    }
    // nlohmann::json keeps object keys sorted, so the dump is canonical.
    return cell.dump();
}

}  // namespace qbench
