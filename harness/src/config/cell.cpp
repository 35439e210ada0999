#include "qbench/config/cell.hpp"

#include "cell_fields.hpp"
#include "qbench/common/errors.hpp"
#include "suggest.hpp"

#include <cstdio>
#include <set>

namespace qbench {
namespace cd = config_detail;

nlohmann::json cell_to_json(const cell_spec& cell) {
    nlohmann::json j = nlohmann::json::object();
    for (const cd::cell_field& field : cd::cell_fields()) {
        if (!cd::field_in_json(field, cell.framework)) continue;
        const nlohmann::json value = cd::field_to_json(field, field.get(cell));
        const std::string_view group = cd::field_group(field);
        if (group.empty())
            j[std::string(field.key)] = value;
        else
            j[std::string(group)][std::string(cd::field_name(field))] = value;
    }
    // The seed is unsigned in the cell; the table carries it as a non-negative int64 (YAML and JSON integers).
    j["seed"] = cell.seed;
    return j;
}

namespace {

// The groups a cell JSON may have, and which framework each belongs to ("" = every cell).
struct json_group {
    std::string_view name;
    std::string_view framework;
};
constexpr json_group groups[] = {{"generation", ""}, {"gptq", "gptq"}, {"bnb", "bnb"}};

void read_field(const cd::cell_field& field, const nlohmann::json& value, cell_spec& cell, const std::string& where) {
    std::string why;
    const std::optional<cd::field_value> parsed = cd::parse_field_json(field, value, why);
    if (!parsed) throw input_error(where, "key '" + std::string(field.key) + "'", why);
    if (const std::string bad = cd::check_field_value(field, *parsed); !bad.empty())
        throw input_error(where, "key '" + std::string(field.key) + "'", bad);
    field.set(cell, *parsed);
}

std::vector<std::string> keys_of_group(std::string_view group) {
    std::vector<std::string> keys;
    for (const cd::cell_field& f : cd::cell_fields())
        if (cd::field_group(f) == group) keys.emplace_back(group.empty() ? f.key : cd::field_name(f));
    if (group.empty())
        for (const json_group& g : groups) keys.emplace_back(g.name);
    return keys;
}

}  // namespace

cell_spec cell_from_json(const nlohmann::json& j, const std::string& where) {
    if (!j.is_object()) throw input_error(where, "", std::string("a cell must be a JSON object, got ") + j.type_name());
    cell_spec cell;
    // The framework decides which option groups may appear, so it is read first.
    for (const std::string_view required : {"model", "framework", "bits"})
        if (!j.contains(required))
            throw input_error(where, "key '" + std::string(required) + "'", "missing key in cell");
    read_field(*cd::find_field("framework"), j.at("framework"), cell, where);

    const std::vector<std::string> top_keys = keys_of_group("");
    for (const auto& [key, value] : j.items()) {
        if (key == "framework") continue;
        if (const cd::cell_field* field = cd::find_field(key); field && cd::field_group(*field).empty()) {
            read_field(*field, value, cell, where);
            continue;
        }
        const json_group* group = nullptr;
        for (const json_group& g : groups)
            if (g.name == key) group = &g;
        if (!group)
            throw input_error(where, "key '" + key + "'", "unknown key in cell" + cd::suggestion_suffix(key, top_keys));
        if (!group->framework.empty() && group->framework != cell.framework)
            throw input_error(where, "key '" + key + "'",
                              "'" + key + "' options in a cell of framework '" + cell.framework + "'");
        if (!value.is_object())
            throw input_error(where, "key '" + key + "'", std::string("expected an object, got ") + value.type_name());
        const std::vector<std::string> known = keys_of_group(group->name);
        for (const auto& [name, option] : value.items()) {
            const cd::cell_field* field = cd::find_field(key + "." + name);
            if (!field)
                throw input_error(where, "key '" + key + "." + name + "'",
                                  "unknown key in cell" + cd::suggestion_suffix(name, known));
            read_field(*field, option, cell, where);
        }
    }
    return cell;
}

std::string cell_hash(const cell_spec& cell) {
    // nlohmann::json objects keep their keys sorted and dump numbers in shortest round-trip form, so the dump is a
    // canonical text: the same cell gives the same bytes, and so the same hash, on every machine.
    // Text from the YAML and JSON readers is UTF-8; `replace` only keeps a hand-made cell with stray bytes from
    // throwing here.
    const std::string canonical =
        cell_to_json(cell).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64 offset basis
    for (const char c : canonical) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ull;  // FNV-1a 64 prime
    }
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
    return text;
}

std::string cell_label(const cell_spec& cell) {
    std::string label = cell.model + " " + cell.framework + " " + std::to_string(cell.bits) + "b";
    if (cell.framework == "gptq") {
        label += cell.gptq.group_size < 0 ? " g-1" : " g" + std::to_string(cell.gptq.group_size);
        if (cell.gptq.desc_act) label += "-act";
    } else if (cell.framework == "bnb" && cell.bits == 4) {
        label += " " + cell.bnb.quant_type;
        if (cell.bnb.double_quant) label += "-dq";
    }
    label += " beam" + std::to_string(cell.beam) + " " + cell.instance;
    return label;
}

}  // namespace qbench
