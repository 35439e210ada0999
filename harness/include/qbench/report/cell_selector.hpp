#pragma once
/// Choosing cells by their parameters: "the 4-bit bnb cells of the 13B models on a g5". A selector is a list of
/// conditions on dotted keys of the cell JSON (cell_to_json: "bits", "instance", "bnb.quant_type"), all of which
/// must hold. In configs/claims.yaml a selector is written as a map:
///
///   framework: bnb            equal (numbers compare as numbers)
///   instance: "g5.*"          text with wildcards: * any run of characters, ? one character
///   bits: [2, 3]              any of the listed values
///   beam: {min: 2}            a number in a closed range; min, max or both
///
/// A cell that does not carry the key (bnb.quant_type of an fp16 cell) does not match that condition.
#include <nlohmann/json.hpp>

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {

/// One condition of a selector.
struct selector_condition {
    std::string key;                     ///< dotted key of the cell JSON
    std::vector<nlohmann::json> any_of;  ///< numbers, booleans or text patterns; empty when a range is given
    std::optional<double> min;           ///< range bounds (inclusive), only for numeric keys
    std::optional<double> max;

    bool matches(const nlohmann::json& cell) const;
    /// "bits=2|3", "instance=g5.*", "beam>=2", "2<=beam<=4".
    std::string describe() const;
};

/// All conditions must hold; a selector without conditions matches every cell.
struct cell_selector {
    std::vector<selector_condition> conditions;

    bool matches(const nlohmann::json& cell) const;
    /// The conditions joined by spaces, or "any cell".
    std::string describe() const;
};

/// Whether `text` matches `pattern` as a whole, where * stands for any run of characters and ? for one character.
bool glob_match(std::string_view pattern, std::string_view text);

/// The value at a dotted key ("bnb.quant_type", "quality.mean_kl") of a JSON object (nlohmann::json or
/// ordered_json), or nullptr when it is absent.
template <class Json>
const Json* find_dotted(const Json& object, std::string_view key) {
    const Json* node = &object;
    while (true) {
        if (!node->is_object()) return nullptr;
        const std::size_t dot = key.find('.');
        const auto it = node->find(std::string(key.substr(0, dot)));
        if (it == node->end()) return nullptr;
        node = &*it;
        if (dot == std::string_view::npos) return node;
        key.remove_prefix(dot + 1);
    }
}

/// The cell JSON without the dotted `keys`, as canonical text: two cells get the same text exactly when they agree on
/// every parameter outside `keys`. A group name ("bnb") removes the whole group. This is how cells are paired:
/// by everything except what the comparison is about.
std::string cell_key_without(nlohmann::json cell, std::span<const std::string> keys);

}  // namespace qbench
