#pragma once
/// Strict YAML reading for matrices and catalogs: every error names the file, the 1-based line:column and the key.
///
/// yaml-cpp is permissive (duplicate keys are kept, unknown keys are simply never read, "4" and 4 look alike); these
/// helpers make the reading strict in one place so the matrix and catalog readers stay short.
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace qbench::config_detail {

/// "12:5 (key 'bits')": 1-based line and column (yaml-cpp marks are 0-based); parts that are unknown are left out.
std::string yaml_place(const YAML::Mark& mark, std::string_view key);

/// Throws input_error(file, yaml_place(mark, key), message).
[[noreturn]] void throw_at(const std::string& file, const YAML::Mark& mark, std::string_view key,
                           const std::string& message);

/// The whole file as text; input_error (file, no place) when it cannot be read or is not a regular file.
std::string read_config_file(const std::filesystem::path& path);

/// Parses a single YAML document. Syntax errors (with yaml-cpp's mark), a second document, input nested deeper than
/// k_max_yaml_depth and input too large all become input_error; nothing yaml-cpp throws escapes.
YAML::Node parse_yaml_document(std::string_view text, const std::string& file);

/// Deepest block or flow nesting accepted (real matrices nest 4 deep).
inline constexpr int k_max_yaml_depth = 64;

/// One `key: value` of a map, with the dotted path used in messages ("gptq.group_size", "matrix.exclude[2].bits").
struct yaml_entry {
    std::string key;
    std::string path;
    YAML::Node key_node;
    YAML::Node value;
    /// The value's mark, or the key's where the value is empty (yaml-cpp marks an empty value at the next line).
    YAML::Mark value_mark() const;
};

/// The entries of `map` in file order. Throws when `map` is not a map (at `owner_mark`, key `path`), when a key is
/// not a scalar, and on a duplicate key.
std::vector<yaml_entry> map_entries(const std::string& file, const YAML::Node& map, const YAML::Mark& owner_mark,
                                    std::string_view path);

/// The mark of a node, or `fallback` where yaml-cpp has none (an absent or empty node).
YAML::Mark mark_or(const YAML::Node& node, const YAML::Mark& fallback);

/// Throws "unknown key 'x' in <where>; did you mean 'y'?" at the key.
[[noreturn]] void throw_unknown_key(const std::string& file, const yaml_entry& entry, std::string_view where,
                                    const std::vector<std::string>& known);

/// "a list", "a map", "an empty value", "'text'": what a node is, for "expected X, got Y".
std::string describe_node(const YAML::Node& node);
/// A scalar written without quotes or tag (yaml-cpp tag "?"): the only kind read as a number or boolean.
bool is_plain_scalar(const YAML::Node& node);

/// Typed readers of a map entry's value; each throws input_error at the value on a wrong type or a value outside
/// [lo, hi].
std::int64_t read_integer(const std::string& file, const yaml_entry& entry, std::int64_t lo, std::int64_t hi);
double read_number(const std::string& file, const yaml_entry& entry, double lo, double hi);
bool read_boolean(const std::string& file, const yaml_entry& entry);
/// Any scalar (quoted or not) as text; a list, a map or an empty value is an error.
std::string read_text(const std::string& file, const yaml_entry& entry);

/// The document as JSON, for provenance ("the matrix as given"): plain scalars typed as YAML types them (integer,
/// number, boolean, null), quoted ones as strings. Alias-heavy input that would expand past a node budget is an error.
nlohmann::json yaml_to_json(const YAML::Node& node, const std::string& file);

}  // namespace qbench::config_detail
