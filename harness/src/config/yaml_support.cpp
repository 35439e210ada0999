#include "yaml_support.hpp"

#include <yaml-cpp/eventhandler.h>

#include "qbench/common/errors.hpp"
#include "scalar_text.hpp"
#include "suggest.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace qbench::config_detail {
namespace {

// A matrix is a few kilobytes; a megabyte is a mistake (a results file or a checkpoint passed by accident).
constexpr std::size_t k_max_yaml_bytes = 1u << 20;
// The text-level estimate below overcounts (a ": " inside a long line counts as a level), so its cut-off is looser
// than k_max_yaml_depth, which the parsed tree must meet exactly.
constexpr int k_max_estimated_nesting = 4 * k_max_yaml_depth;
// yaml_to_json visits aliased nodes once per reference, so a "billion laughs" document must be cut off.
constexpr std::size_t k_max_json_nodes = 200000;

// Nesting of flow collections ("[[[[") and of block collections (indentation and "- - -") as an upper bound, computed
// without parsing: yaml-cpp's own recursion guard allows 2000 levels, deep enough to exhaust a sanitizer build's
// stack, and no matrix needs more than a handful.
int estimated_nesting(std::string_view text) {
    int deepest = 0;
    int flow = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t end = std::min(text.find('\n', pos), text.size());
        const std::string_view line = text.substr(pos, end - pos);
        // Block nesting: every level needs at least one more column of indentation or one more "- " / "? " / ": ".
        int block = 0;
        std::size_t i = 0;
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
        block += static_cast<int>(std::min<std::size_t>(i, 100000));
        for (; i < line.size(); ++i) {
            const char c = line[i];
            if (c == '[' || c == '{') deepest = std::max(deepest, ++flow);
            if ((c == ']' || c == '}') && flow > 0) --flow;
            if ((c == '-' || c == '?' || c == ':') && (i + 1 == line.size() || line[i + 1] == ' ')) ++block;
        }
        // Indentation counts columns, not levels: two columns per level is the narrowest style that nests.
        deepest = std::max(deepest, block / 2 + 1);
        pos = end + 1;
    }
    return deepest;
}

// Records where each document and its first node start, without building anything.
class document_probe final : public YAML::EventHandler {
public:
    void OnDocumentStart(const YAML::Mark& mark) override {
        m_starts.push_back(mark);
        m_first_events.push_back(YAML::Mark::null_mark());
    }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { note(mark); }
    void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { note(mark); }
    void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string&) override { note(mark); }
    void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
        note(mark);
    }
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
        note(mark);
    }
    void OnMapEnd() override {}

    YAML::Mark document_start(std::size_t i) const { return i < m_starts.size() ? m_starts[i] : YAML::Mark::null_mark(); }
    YAML::Mark first_event(std::size_t i) const {
        return i < m_first_events.size() ? m_first_events[i] : YAML::Mark::null_mark();
    }

private:
    void note(const YAML::Mark& mark) {
        if (!m_first_events.empty() && m_first_events.back().is_null()) m_first_events.back() = mark;
    }
    std::vector<YAML::Mark> m_starts, m_first_events;
};

void to_json_into(const YAML::Node& node, nlohmann::json& out, int depth, std::size_t& budget, const std::string& file) {
    if (budget == 0) throw_at(file, node.Mark(), "", "document too large once anchors and aliases are expanded");
    --budget;
    if (depth > k_max_yaml_depth)
        throw_at(file, node.Mark(), "", "nesting deeper than " + std::to_string(k_max_yaml_depth) + " levels");
    switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null: out = nullptr; return;
    case YAML::NodeType::Scalar: {
        const std::string& text = node.Scalar();
        if (!is_plain_scalar(node)) {
            out = text;
        } else if (const auto i = parse_integer_text(text)) {
            out = *i;
        } else if (const auto d = parse_number_text(text)) {
            out = *d;
        } else if (const auto b = parse_boolean_text(text)) {
            out = *b;
        } else {
            out = text;
        }
        return;
    }
    case YAML::NodeType::Sequence: {
        out = nlohmann::json::array();
        for (const YAML::Node& item : node) {
            nlohmann::json element;
            to_json_into(item, element, depth + 1, budget, file);
            out.push_back(std::move(element));
        }
        return;
    }
    case YAML::NodeType::Map: {
        out = nlohmann::json::object();
        for (auto it = node.begin(); it != node.end(); ++it) {
            // Keys are scalars in every file qbench reads; a complex key is kept as its YAML text.
            std::string key = it->first.IsScalar() ? it->first.Scalar() : YAML::Dump(it->first);
            to_json_into(it->second, out[key], depth + 1, budget, file);
        }
        return;
    }
    }
}

}  // namespace

std::string yaml_place(const YAML::Mark& mark, std::string_view key) {
    std::string place;
    if (!mark.is_null() && mark.line >= 0 && mark.column >= 0)
        place = std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
    if (!key.empty()) {
        if (!place.empty()) place += " ";
        place += "(key '" + std::string(key) + "')";
    }
    return place;
}

void throw_at(const std::string& file, const YAML::Mark& mark, std::string_view key, const std::string& message) {
    throw input_error(file, yaml_place(mark, key), message);
}

std::string read_config_file(const std::filesystem::path& path) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) throw input_error(path.string(), "", "file not found");
    if (!std::filesystem::is_regular_file(status)) throw input_error(path.string(), "", "not a regular file");
    const auto size = std::filesystem::file_size(path, ec);
    if (!ec && size > k_max_yaml_bytes)
        throw input_error(path.string(), "", "file too large for a YAML configuration (" + std::to_string(size) +
                                                 " bytes, limit " + std::to_string(k_max_yaml_bytes) + ")");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw input_error(path.string(), "", std::string("cannot open: ") + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw input_error(path.string(), "", "read error");
    return std::move(text).str();
}

YAML::Node parse_yaml_document(std::string_view text, const std::string& file) {
    if (text.size() > k_max_yaml_bytes)
        throw input_error(file, "", "file too large for a YAML configuration (" + std::to_string(text.size()) +
                                        " bytes, limit " + std::to_string(k_max_yaml_bytes) + ")");
    if (text.find('\0') != std::string_view::npos) throw input_error(file, "", "binary data (a NUL byte) in a YAML file");
    // Everything read ends up in JSON (cells, provenance), which is UTF-8; so must the file be.
    if (const auto bad = first_invalid_utf8(text)) {
        const std::size_t line_start = text.rfind('\n', *bad == 0 ? 0 : *bad - 1);
        const std::size_t line = static_cast<std::size_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(*bad), '\n'));
        const std::size_t column = line_start == std::string_view::npos || *bad == 0 ? *bad : *bad - line_start - 1;
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned char>(text[*bad]));
        throw input_error(file, std::to_string(line + 1) + ":" + std::to_string(column + 1),
                          std::string("not UTF-8 text (byte ") + hex + "); configuration files are UTF-8");
    }
    if (estimated_nesting(text) > k_max_estimated_nesting)
        throw input_error(file, "", "nesting deeper than " + std::to_string(k_max_yaml_depth) + " levels");
    try {
        // Count the documents first, with at most two parser steps. yaml-cpp 0.7's LoadAll never returns on input
        // such as "," (a token no node starts with is reported as an empty document without being consumed, again
        // and again: jbeder/yaml-cpp#1040, fixed upstream after 0.7 by PR #1319), so LoadAll is not used at all.
        std::istringstream stream{std::string(text)};
        YAML::Parser parser(stream);
        document_probe probe;
        int documents = 0;
        while (documents < 2 && parser.HandleNextDocument(probe)) ++documents;
        if (documents == 2) {
            const YAML::Mark first = probe.first_event(0), second = probe.first_event(1);
            if (first.pos == second.pos) {
                const char c = first.pos >= 0 && static_cast<std::size_t>(first.pos) < text.size() ? text[first.pos] : '?';
                throw input_error(file, yaml_place(first, ""),
                                  std::string("YAML syntax error: unexpected '") + c + "' where a value should start");
            }
            throw_at(file, probe.document_start(1), "", "more than one YAML document ('---'); a configuration file holds one");
        }
        return YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
        throw input_error(file, yaml_place(e.mark, ""), "YAML syntax error: " + e.msg);
    }
}

YAML::Mark yaml_entry::value_mark() const {
    if (value.IsDefined() && !value.IsNull()) return value.Mark();
    return key_node.Mark();
}

YAML::Mark mark_or(const YAML::Node& node, const YAML::Mark& fallback) {
    if (!node.IsDefined()) return fallback;
    const YAML::Mark m = node.Mark();
    return m.is_null() ? fallback : m;
}

std::vector<yaml_entry> map_entries(const std::string& file, const YAML::Node& map, const YAML::Mark& owner_mark,
                                    std::string_view path) {
    if (!map.IsMap())
        throw_at(file, mark_or(map, owner_mark), path, "expected a map of 'key: value', got " + describe_node(map));
    std::vector<yaml_entry> entries;
    std::set<std::string> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
        const YAML::Node key_node = it->first;
        if (!key_node.IsScalar())
            throw_at(file, mark_or(key_node, owner_mark), path, "a key must be plain text, got " + describe_node(key_node));
        yaml_entry entry;
        entry.key = key_node.Scalar();
        entry.path = path.empty() ? entry.key : std::string(path) + "." + entry.key;
        entry.key_node = key_node;
        entry.value = it->second;
        if (!seen.insert(entry.key).second) throw_at(file, key_node.Mark(), entry.path, "duplicate key");
        entries.push_back(std::move(entry));
    }
    return entries;
}

void throw_unknown_key(const std::string& file, const yaml_entry& entry, std::string_view where,
                       const std::vector<std::string>& known) {
    throw_at(file, entry.key_node.Mark(), entry.path,
             "unknown key '" + entry.key + "' in " + std::string(where) + suggestion_suffix(entry.key, known));
}

std::string describe_node(const YAML::Node& node) {
    switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null: return "an empty value";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Scalar: break;
    }
    std::string text = node.Scalar();
    if (text.size() > 40) text = text.substr(0, 37) + "...";
    return (is_plain_scalar(node) ? "'" : "quoted '") + text + "'";
}

bool is_plain_scalar(const YAML::Node& node) { return node.IsScalar() && node.Tag() == "?"; }

std::int64_t read_integer(const std::string& file, const yaml_entry& entry, std::int64_t lo, std::int64_t hi) {
    std::optional<std::int64_t> value;
    if (is_plain_scalar(entry.value)) value = parse_integer_text(entry.value.Scalar());
    if (!value) throw_at(file, entry.value_mark(), entry.path, "expected an integer, got " + describe_node(entry.value));
    if (*value < lo || *value > hi)
        throw_at(file, entry.value_mark(), entry.path,
                 "value " + std::to_string(*value) + " out of range [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
    return *value;
}

double read_number(const std::string& file, const yaml_entry& entry, double lo, double hi) {
    std::optional<double> value;
    if (is_plain_scalar(entry.value)) value = parse_number_text(entry.value.Scalar());
    if (!value) throw_at(file, entry.value_mark(), entry.path, "expected a number, got " + describe_node(entry.value));
    if (!(*value >= lo && *value <= hi)) {
        nlohmann::json range = nlohmann::json::array({lo, hi});
        throw_at(file, entry.value_mark(), entry.path,
                 "value " + entry.value.Scalar() + " out of range " + range.dump());
    }
    return *value;
}

bool read_boolean(const std::string& file, const yaml_entry& entry) {
    std::optional<bool> value;
    if (is_plain_scalar(entry.value)) value = parse_boolean_text(entry.value.Scalar());
    if (!value) throw_at(file, entry.value_mark(), entry.path, "expected true or false, got " + describe_node(entry.value));
    return *value;
}

std::string read_text(const std::string& file, const yaml_entry& entry) {
    if (!entry.value.IsScalar()) throw_at(file, entry.value_mark(), entry.path, "expected text, got " + describe_node(entry.value));
    // See parse_field_text: yaml-cpp 0.7 can unescape to invalid UTF-8.
    if (first_invalid_utf8(entry.value.Scalar()))
        throw_at(file, entry.value_mark(), entry.path, "text that is not UTF-8 after YAML unescaping (write the character itself)");
    return entry.value.Scalar();
}

nlohmann::json yaml_to_json(const YAML::Node& node, const std::string& file) {
    nlohmann::json out;
    std::size_t budget = k_max_json_nodes;
    to_json_into(node, out, 0, budget, file);
    return out;
}

}  // namespace qbench::config_detail
