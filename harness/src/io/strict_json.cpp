#include "strict_json.hpp"

#include "qbench/common/errors.hpp"

#include <algorithm>
#include <set>
#include <vector>

namespace qbench::io_detail {

namespace {
// Thrown from inside the parser callback, caught around the parse, so the message can be built with the text.
struct duplicate_key {
    std::vector<std::string> path;
};
struct too_deep {};

// Checkpoint JSON is at most four levels deep (header > tensor > shape); a hostile 100 MB header of nested
// brackets would otherwise cost gigabytes of DOM before any check could refuse it.
constexpr int k_max_depth = 64;
// nlohmann quotes the offending input in its messages; that input may be invalid UTF-8 or control bytes, which
// would make the message itself unprintable (and unencodable into a JSON results file). Escape such bytes.
std::string printable(std::string_view s) {
    static constexpr char k_hex[] = "0123456789abcdef";
    std::string out;
    for (char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c >= 0x20 && c < 0x7f) {
            out += ch;
        } else {
            out += "\\x";
            out += k_hex[c >> 4];
            out += k_hex[c & 15];
        }
    }
    return out;
}

// Drops nlohmann's "[json.exception.parse_error.101] parse error at line 1, column 2: " prefix, keeping the reason.
std::string reason_of(const nlohmann::json::exception& e) {
    std::string what = e.what();
    if (auto colon = what.find(": "); colon != std::string::npos && what.rfind("[json.exception.", 0) == 0)
        what = what.substr(colon + 2);
    else if (auto bracket = what.find("] "); bracket != std::string::npos && what.rfind("[json.exception.", 0) == 0)
        what = what.substr(bracket + 2);
    return printable(what);
}

}  // namespace

std::string json_place(std::string_view text, std::size_t pos, std::uint64_t base_offset, json_place_style style) {
    pos = std::min(pos, text.size());
    if (style == json_place_style::file_byte) return "byte " + std::to_string(base_offset + pos);
    std::size_t line = 1, column = 1;
    for (std::size_t i = 0; i < pos; ++i) {
        if (text[i] == '\n') {
            ++line;
            column = 1;
        } else {
            ++column;
        }
    }
    return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

std::string json_kind(const nlohmann::json& v) {
    switch (v.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::object: return "an object";
    case nlohmann::json::value_t::array: return "an array";
    case nlohmann::json::value_t::string: return "a string";
    case nlohmann::json::value_t::boolean: return "a boolean";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return "an integer";
    case nlohmann::json::value_t::number_float: return "a floating-point number";
    default: return "an unsupported JSON value";
    }
}

nlohmann::json parse_json_strict(std::string_view text, const std::string& file, std::uint64_t base_offset,
                                 json_place_style style, std::string_view top_level_noun) {
    // keys_at[d] holds the keys seen so far in the innermost open object whose keys sit at depth d. A new object
    // opening at depth d resets keys_at[d + 1]; siblings at shallower depths keep their sets (see nlohmann's
    // json_sax_dom_callback_parser for the depth each event carries).
    std::vector<std::set<std::string>> keys_at;
    std::vector<std::string> key_path;
    auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        const auto d = static_cast<std::size_t>(depth);
        if ((event == nlohmann::json::parse_event_t::object_start ||
             event == nlohmann::json::parse_event_t::array_start) &&
            depth >= k_max_depth)
            throw too_deep{};
        if (event == nlohmann::json::parse_event_t::object_start) {
            if (keys_at.size() < d + 2) keys_at.resize(d + 2);
            keys_at[d + 1].clear();
        } else if (event == nlohmann::json::parse_event_t::key) {
            const std::string& key = parsed.get_ref<const std::string&>();
            if (keys_at.size() < d + 1) keys_at.resize(d + 1);
            key_path.resize(d);
            if (d > 0) key_path[d - 1] = key;
            if (!keys_at[d].insert(key).second) throw duplicate_key{key_path};
        }
        return true;
    };
    try {
        return nlohmann::json::parse(text.data(), text.data() + text.size(), callback, /*allow_exceptions=*/true);
    } catch (const nlohmann::json::parse_error& e) {
        // e.byte counts characters read, so the offending one is at e.byte - 1.
        const std::size_t pos = e.byte > 0 ? static_cast<std::size_t>(e.byte - 1) : 0;
        throw input_error(file, json_place(text, pos, base_offset, style), "malformed JSON: " + reason_of(e));
    } catch (const nlohmann::json::exception& e) {
        // e.g. out_of_range 406, a number too large even for a double: no position is given.
        throw input_error(file, json_place(text, 0, base_offset, style), "malformed JSON: " + reason_of(e));
    } catch (const too_deep&) {
        throw input_error(file, json_place(text, 0, base_offset, style),
                          "malformed JSON: nested deeper than " + std::to_string(k_max_depth) + " levels");
    } catch (const duplicate_key& dup) {
        if (dup.path.size() <= 1) {
            const std::string name = dup.path.empty() ? std::string() : dup.path.front();
            throw input_error(file, std::string(top_level_noun) + " '" + name + "'",
                              "duplicate " + std::string(top_level_noun) + " '" + name + "'");
        }
        std::string inner;
        for (std::size_t i = 1; i < dup.path.size(); ++i) {
            if (dup.path[i].empty()) continue;  // an array level: no key
            inner += (inner.empty() ? "" : ".") + dup.path[i];
        }
        throw input_error(file, std::string(top_level_noun) + " '" + dup.path.front() + "'",
                          "duplicate key '" + inner + "'");
    }
}

}  // namespace qbench::io_detail
