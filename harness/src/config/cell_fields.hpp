#pragma once
/// Every parameter of a cell as data: its dotted key ("bits", "gptq.group_size", "generation.max_new_tokens"), its
/// type, its valid range, which cells carry it, and how to read and write it in a cell_spec.
///
/// One table serves the matrix YAML (sections, axes, include/exclude), the cell JSON (cell_to_json/cell_from_json)
/// and `--filter`, so a new option is one row here and is validated the same way everywhere.
#include "qbench/config/cell.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace qbench::config_detail {

enum class field_kind : std::uint8_t { integer, number, boolean, text };

/// A typed field value. Integers stay integers (no double round trip), so equality is exact.
using field_value = std::variant<std::int64_t, double, bool, std::string>;

/// Which cells a field belongs to. JSON carries gptq.* only for gptq cells and bnb.* only for bnb cells; an option
/// axis multiplies only the cells the option means something for (bnb.quant_type: 4-bit bnb cells).
enum class field_scope : std::uint8_t {
    every_cell,
    gptq,      ///< framework gptq
    bnb,       ///< framework bnb, any bits
    bnb_4bit,  ///< framework bnb, 4-bit formats (NF4/FP4)
    bnb_8bit,  ///< framework bnb, LLM.int8()
};

struct cell_field {
    std::string_view key;      ///< dotted key
    field_kind kind;
    field_scope scope;
    std::string_view choices;  ///< closed set of a text field, "|"-separated; empty = free text
    bool has_auto;             ///< accepts `auto`, stored as auto_value
    std::int64_t auto_value;
    /// Empty when the value is valid, else why not ("must be one of 2, 3, 4, 8, 16").
    std::string (*check)(const field_value&);
    void (*set)(cell_spec&, const field_value&);
    field_value (*get)(const cell_spec&);
};

/// All fields, in the order cell_to_json and tables list them.
std::span<const cell_field> cell_fields();
/// The field with this dotted key, or nullptr.
const cell_field* find_field(std::string_view key);
/// All dotted keys (for "did you mean").
std::vector<std::string> field_keys();

/// "gptq" of "gptq.group_size"; "" for a top-level field.
std::string_view field_group(const cell_field& field);
/// "group_size" of "gptq.group_size".
std::string_view field_name(const cell_field& field);

/// Whether a cell of this framework carries the field in its JSON (and so can be filtered on it).
bool field_in_json(const cell_field& field, std::string_view framework);
/// Whether an option axis of this field multiplies a combination with this framework and bits (unknown = nullopt
/// counts as "may apply").
bool field_applies(const cell_field& field, const std::optional<std::string>& framework,
                   const std::optional<std::int64_t>& bits);

/// Parses text as the field's type ("auto" where allowed); `plain` is false for quoted YAML scalars, which only text
/// fields accept. On failure returns nullopt and sets `why` ("expected an integer"). Does not range-check.
std::optional<field_value> parse_field_text(const cell_field& field, std::string_view text, bool plain, std::string& why);
/// Reads a JSON value as the field's type; on failure returns nullopt and sets `why`.
std::optional<field_value> parse_field_json(const cell_field& field, const nlohmann::json& value, std::string& why);

nlohmann::json field_to_json(const cell_field& field, const field_value& value);
std::string field_to_string(const field_value& value);

/// Range and choice check of a parsed value: empty when valid, else why not.
std::string check_field_value(const cell_field& field, const field_value& value);

/// "1, 2, 3" of the choices "1|2|3".
std::string choices_list(const cell_field& field);

/// What `prompt_tokens: auto` means (see cell_fields.cpp for where the number comes from).
inline constexpr std::int64_t k_auto_prompt_tokens = 55;

}  // namespace qbench::config_detail
