// `--filter KEY=VALUE[,VALUE...]`: a subset of a matrix's cells without editing the file.
#include "cell_fields.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/config/matrix.hpp"
#include "suggest.hpp"

namespace qbench {
namespace cd = config_detail;

namespace {

constexpr std::string_view k_filter_source = "--filter";

struct filter {
    const cd::cell_field* field;
    std::vector<cd::field_value> alternatives;
};

filter parse_filter(const std::string& text) {
    const std::size_t eq = text.find('=');
    if (eq == std::string::npos || eq == 0)
        throw input_error(std::string(k_filter_source), "'" + text + "'", "expected KEY=VALUE (e.g. bits=4 or framework=gptq,bnb)");
    const std::string key = text.substr(0, eq);
    const std::string place = "key '" + key + "'";
    filter f{cd::find_field(key), {}};
    if (!f.field)
        throw input_error(std::string(k_filter_source), place, "unknown key" + cd::suggestion_suffix(key, cd::field_keys()));
    std::string_view rest = std::string_view(text).substr(eq + 1);
    while (true) {
        const std::size_t comma = rest.find(',');
        const std::string_view item = rest.substr(0, comma);
        std::string why;
        // Command-line values are never "quoted YAML", so they parse as plain scalars.
        const std::optional<cd::field_value> value = cd::parse_field_text(*f.field, item, true, why);
        if (!value) throw input_error(std::string(k_filter_source), place, why + ", got '" + std::string(item) + "'");
        if (const std::string bad = cd::check_field_value(*f.field, *value); !bad.empty())
            throw input_error(std::string(k_filter_source), place, bad);
        f.alternatives.push_back(*value);
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
    }
    return f;
}

bool matches(const filter& f, const cell_spec& cell) {
    if (!cd::field_in_json(*f.field, cell.framework)) return false;
    const cd::field_value value = f.field->get(cell);
    return std::find(f.alternatives.begin(), f.alternatives.end(), value) != f.alternatives.end();
}

}  // namespace

std::vector<cell_spec> apply_filters(const std::vector<cell_spec>& cells, const std::vector<std::string>& key_eq_value) {
    std::vector<filter> filters;
    for (const std::string& text : key_eq_value) filters.push_back(parse_filter(text));
    std::vector<cell_spec> kept;
    for (const cell_spec& cell : cells)
        if (std::all_of(filters.begin(), filters.end(), [&](const filter& f) { return matches(f, cell); }))
            kept.push_back(cell);
    return kept;
}

}  // namespace qbench
