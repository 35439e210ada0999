// Reading configs/claims.yaml strictly: the same YAML helpers and cell field table as the matrix reader, so a claim
// is checked as carefully as a matrix and names cell keys the same way.
#include "qbench/report/claims.hpp"

#include "config/cell_fields.hpp"
#include "config/suggest.hpp"
#include "config/yaml_support.hpp"
#include "qbench/report/metric_reading.hpp"

#include <limits>
#include <map>
#include <set>

namespace qbench {
namespace cd = config_detail;

namespace {

constexpr int k_claims_version = 1;
constexpr double k_huge = std::numeric_limits<double>::max();

// Option groups of the cell JSON: `vary` may name a whole group ("bnb": all bitsandbytes options).
const std::vector<std::string>& group_names() {
    static const std::vector<std::string> names = {"generation", "gptq", "bnb"};
    return names;
}

// Which keys each kind takes beyond the common ones, and which of those it requires.
struct kind_keys {
    claim_kind kind;
    std::vector<std::string> allowed;
    std::vector<std::string> required;
};

const std::vector<kind_keys>& kinds() {
    static const std::vector<kind_keys> table = {
        {claim_kind::ratio, {"metric", "numerator", "denominator", "vary", "min", "max"},
         {"metric", "numerator", "denominator", "vary"}},
        {claim_kind::ordering, {"metric", "subject", "among", "vary", "best", "tolerance"},
         {"metric", "subject", "vary", "best"}},
        {claim_kind::alike, {"metrics", "first", "second", "vary", "tolerance"},
         {"metrics", "first", "second", "vary", "tolerance"}},
        {claim_kind::fits, {"budget", "cells"}, {"cells"}},
    };
    return table;
}

// Keys every kind takes. A function-local table, like kinds(): claims may be parsed during static initialization.
const std::vector<std::string>& common_keys() {
    static const std::vector<std::string> keys = {"id", "text", "source", "kind", "where"};
    return keys;
}

std::vector<std::string> all_claim_keys() {
    std::vector<std::string> keys = common_keys();
    for (const kind_keys& k : kinds()) keys.insert(keys.end(), k.allowed.begin(), k.allowed.end());
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    return keys;
}

std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const std::string& s : items) out += (out.empty() ? "" : ", ") + s;
    return out;
}

class claims_reader {
public:
    explicit claims_reader(std::string file) : m_file(std::move(file)) {}

    claims_catalog read(std::string_view text) {
        const YAML::Node root = cd::parse_yaml_document(text, m_file);
        if (!root.IsDefined() || root.IsNull()) throw input_error(m_file, "", "empty claims file");
        const YAML::Mark root_mark = root.Mark();
        std::map<std::string, cd::yaml_entry> top;
        for (cd::yaml_entry& e : cd::map_entries(m_file, root, root_mark, "")) {
            if (e.key != "claims_version" && e.key != "source" && e.key != "claims")
                cd::throw_unknown_key(m_file, e, "a claims file", {"claims_version", "source", "claims"});
            top.emplace(e.key, std::move(e));
        }
        for (const char* required : {"claims_version", "claims"})
            if (!top.count(required))
                cd::throw_at(m_file, root_mark, required, std::string("missing key '") + required + "'");

        const cd::yaml_entry& version = top.at("claims_version");
        if (const std::int64_t v = cd::read_integer(m_file, version, 0, 1000000); v != k_claims_version)
            cd::throw_at(m_file, version.value_mark(), version.path,
                         "claims_version " + std::to_string(v) + " is not supported (this qbench reads " +
                             std::to_string(k_claims_version) + ")");
        if (top.count("source")) m_default_source = read_nonempty_text(top.at("source"));

        const cd::yaml_entry& list = top.at("claims");
        if (!list.value.IsSequence() || list.value.size() == 0)
            cd::throw_at(m_file, list.value_mark(), list.path,
                         "expected a list of claims, got " + cd::describe_node(list.value));
        claims_catalog catalog;
        catalog.file = m_file;
        std::set<std::string> ids;
        for (std::size_t i = 0; i < list.value.size(); ++i) {
            const YAML::Node item = list.value[i];
            claim c = read_claim(item, cd::mark_or(item, list.value_mark()), "claims[" + std::to_string(i) + "]");
            if (!ids.insert(c.id).second)
                cd::throw_at(m_file, cd::mark_or(item, list.value_mark()), "claims[" + std::to_string(i) + "].id",
                             "duplicate claim id '" + c.id + "'");
            catalog.claims.push_back(std::move(c));
        }
        return catalog;
    }

private:
    [[noreturn]] void fail(const cd::yaml_entry& e, const std::string& message) const {
        cd::throw_at(m_file, e.value_mark(), e.path, message);
    }

    std::string read_nonempty_text(const cd::yaml_entry& e) const {
        std::string text = cd::read_text(m_file, e);
        if (text.empty()) fail(e, "expected text, got an empty string");
        return text;
    }

    claim read_claim(const YAML::Node& node, const YAML::Mark& mark, const std::string& path) {
        std::map<std::string, cd::yaml_entry> keys;
        const std::vector<std::string> known = all_claim_keys();
        for (cd::yaml_entry& e : cd::map_entries(m_file, node, mark, path)) {
            if (std::find(known.begin(), known.end(), e.key) == known.end())
                cd::throw_unknown_key(m_file, e, "a claim", known);
            keys.emplace(e.key, std::move(e));
        }
        const auto require = [&](const std::string& key, const std::string& why) -> const cd::yaml_entry& {
            const auto it = keys.find(key);
            if (it == keys.end()) cd::throw_at(m_file, mark, path + "." + key, "missing key '" + key + "'" + why);
            return it->second;
        };

        claim c;
        c.place = m_file + ":" + cd::yaml_place(mark, "");
        c.id = read_id(require("id", ""));
        c.text = read_nonempty_text(require("text", ""));
        if (keys.count("source"))
            c.source = read_nonempty_text(keys.at("source"));
        else if (!m_default_source.empty())
            c.source = m_default_source;
        else
            require("source", " (or a file-level 'source')");

        const cd::yaml_entry& kind_entry = require("kind", "");
        const std::string kind_text = cd::read_text(m_file, kind_entry);
        const auto kind = std::find_if(kinds().begin(), kinds().end(),
                                       [&](const kind_keys& k) { return to_string(k.kind) == kind_text; });
        if (kind == kinds().end())
            fail(kind_entry, "unknown claim kind '" + kind_text + "' (expected ratio, ordering, alike or fits)");
        c.kind = kind->kind;

        for (const auto& [key, entry] : keys) {
            const bool common = std::find(common_keys().begin(), common_keys().end(), key) != common_keys().end();
            const bool allowed = std::find(kind->allowed.begin(), kind->allowed.end(), key) != kind->allowed.end();
            if (!common && !allowed)
                cd::throw_at(m_file, entry.key_node.Mark(), entry.path,
                             "key '" + key + "' does not apply to a claim of kind '" + kind_text +
                                 "' (it takes " + join(kind->allowed) + ")");
        }
        const std::string of_kind = " in a claim of kind '" + kind_text + "'";
        for (const std::string& key : kind->required) require(key, of_kind);

        if (keys.count("where")) c.where = read_selector(keys.at("where"));
        switch (c.kind) {
        case claim_kind::ratio:
            c.metrics = {read_metric_name(keys.at("metric"))};
            c.first = read_selector(keys.at("numerator"));
            c.second = read_selector(keys.at("denominator"));
            c.vary = read_vary(keys.at("vary"));
            if (keys.count("min")) c.min = cd::read_number(m_file, keys.at("min"), -k_huge, k_huge);
            if (keys.count("max")) c.max = cd::read_number(m_file, keys.at("max"), -k_huge, k_huge);
            if (!c.min && !c.max) cd::throw_at(m_file, mark, path + ".min", "a ratio claim needs 'min', 'max' or both");
            if (c.min && c.max && *c.min > *c.max) fail(keys.at("max"), "'max' is below 'min'");
            break;
        case claim_kind::ordering: {
            c.metrics = {read_metric_name(keys.at("metric"))};
            c.first = read_selector(keys.at("subject"));
            if (keys.count("among")) c.second = read_selector(keys.at("among"));
            c.vary = read_vary(keys.at("vary"));
            const std::string best = cd::read_text(m_file, keys.at("best"));
            if (best != "highest" && best != "lowest")
                fail(keys.at("best"), "expected 'highest' or 'lowest', got '" + best + "'");
            c.highest = best == "highest";
            if (keys.count("tolerance")) c.tolerance = cd::read_number(m_file, keys.at("tolerance"), 0, 1);
            break;
        }
        case claim_kind::alike: {
            const cd::yaml_entry& list = keys.at("metrics");
            if (!list.value.IsSequence() || list.value.size() == 0)
                fail(list, "expected a list of metrics, got " + cd::describe_node(list.value));
            for (std::size_t i = 0; i < list.value.size(); ++i)
                c.metrics.push_back(read_metric_name(item_entry(list, i)));
            c.first = read_selector(keys.at("first"));
            c.second = read_selector(keys.at("second"));
            c.vary = read_vary(keys.at("vary"));
            c.tolerance = cd::read_number(m_file, keys.at("tolerance"), 0, k_huge);
            break;
        }
        case claim_kind::fits:
            if (keys.count("budget")) {
                const std::string budget = cd::read_text(m_file, keys.at("budget"));
                if (budget != "vram" && budget != "host")
                    fail(keys.at("budget"), "expected 'vram' or 'host', got '" + budget + "'");
                c.budget = budget == "vram" ? memory_kind::vram : memory_kind::host;
            }
            c.expectations = read_expectations(keys.at("cells"));
            break;
        }
        return c;
    }

    std::string read_id(const cd::yaml_entry& e) const {
        const std::string id = read_nonempty_text(e);
        for (char ch : id)
            if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.'))
                fail(e, "a claim id uses lower-case letters, digits, '-', '_' and '.' only; got '" + id + "'");
        return id;
    }

    // A list item as an entry, so the typed readers can point at it: path "claims[0].metrics[1]".
    static cd::yaml_entry item_entry(const cd::yaml_entry& list, std::size_t i) {
        cd::yaml_entry e;
        e.key = list.key;
        e.path = list.path + "[" + std::to_string(i) + "]";
        e.key_node = list.key_node;
        e.value = list.value[i];
        return e;
    }

    std::string read_metric_name(const cd::yaml_entry& e) const {
        const std::string name = read_nonempty_text(e);
        if (!is_numeric_metric(name))
            fail(e, "unknown or non-numeric metric '" + name + "'" + cd::suggestion_suffix(name, numeric_metric_paths()));
        return name;
    }

    std::vector<std::string> read_vary(const cd::yaml_entry& list) const {
        if (!list.value.IsSequence() || list.value.size() == 0)
            fail(list, "expected a list of cell keys, got " + cd::describe_node(list.value));
        std::vector<std::string> keys;
        for (std::size_t i = 0; i < list.value.size(); ++i) {
            const cd::yaml_entry item = item_entry(list, i);
            const std::string key = read_nonempty_text(item);
            const auto& groups = group_names();
            if (!cd::find_field(key) && std::find(groups.begin(), groups.end(), key) == groups.end()) {
                std::vector<std::string> known = cd::field_keys();
                known.insert(known.end(), groups.begin(), groups.end());
                fail(item, "unknown cell key '" + key + "'" + cd::suggestion_suffix(key, known));
            }
            keys.push_back(key);
        }
        return keys;
    }

    // One value of a selector condition, typed as the cell JSON types the field.
    nlohmann::json read_selector_value(const cd::cell_field& field, const cd::yaml_entry& e) const {
        if (!e.value.IsScalar()) fail(e, "expected a value, got " + cd::describe_node(e.value));
        const nlohmann::json value = cd::yaml_to_json(e.value, m_file);
        const bool pattern = value.is_string() && value.get<std::string>().find_first_of("*?") != std::string::npos;
        std::string why;
        const std::optional<cd::field_value> parsed = cd::parse_field_json(field, value, why);
        if (!parsed) fail(e, why);
        // A pattern is checked when it is matched; a plain value must be one the key can take (a typo such as
        // "bits: 5" would otherwise select nothing and the claim would silently go unevaluated).
        if (!pattern)
            if (const std::string bad = cd::check_field_value(field, *parsed); !bad.empty()) fail(e, bad);
        return cd::field_to_json(field, *parsed);
    }

    cell_selector read_selector(const cd::yaml_entry& owner) const {
        cell_selector selector;
        for (const cd::yaml_entry& e : cd::map_entries(m_file, owner.value, owner.value_mark(), owner.path)) {
            const cd::cell_field* field = cd::find_field(e.key);
            if (!field) cd::throw_unknown_key(m_file, e, "a cell selector", cd::field_keys());
            selector_condition condition;
            condition.key = e.key;
            if (e.value.IsMap()) {
                if (field->kind != cd::field_kind::integer && field->kind != cd::field_kind::number)
                    fail(e, "a {min, max} range needs a numeric key; '" + e.key + "' is not one");
                for (const cd::yaml_entry& bound : cd::map_entries(m_file, e.value, e.value_mark(), e.path)) {
                    if (bound.key == "min")
                        condition.min = cd::read_number(m_file, bound, -k_huge, k_huge);
                    else if (bound.key == "max")
                        condition.max = cd::read_number(m_file, bound, -k_huge, k_huge);
                    else
                        cd::throw_unknown_key(m_file, bound, "a range", {"min", "max"});
                }
                if (!condition.min && !condition.max) fail(e, "a range needs 'min', 'max' or both");
            } else if (e.value.IsSequence()) {
                if (e.value.size() == 0) fail(e, "an empty list selects nothing");
                for (std::size_t i = 0; i < e.value.size(); ++i)
                    condition.any_of.push_back(read_selector_value(*field, item_entry(e, i)));
            } else {
                condition.any_of.push_back(read_selector_value(*field, e));
            }
            selector.conditions.push_back(std::move(condition));
        }
        return selector;
    }

    std::vector<fits_expectation> read_expectations(const cd::yaml_entry& list) const {
        if (!list.value.IsSequence() || list.value.size() == 0)
            fail(list, "expected a list of {select, expect}, got " + cd::describe_node(list.value));
        std::vector<fits_expectation> out;
        for (std::size_t i = 0; i < list.value.size(); ++i) {
            const cd::yaml_entry item = item_entry(list, i);
            std::map<std::string, cd::yaml_entry> keys;
            for (cd::yaml_entry& e : cd::map_entries(m_file, item.value, item.value_mark(), item.path)) {
                if (e.key != "select" && e.key != "expect")
                    cd::throw_unknown_key(m_file, e, "a fits row", {"select", "expect"});
                keys.emplace(e.key, std::move(e));
            }
            for (const char* required : {"select", "expect"})
                if (!keys.count(required))
                    cd::throw_at(m_file, item.value_mark(), item.path + "." + required,
                                 std::string("missing key '") + required + "'");
            fits_expectation row;
            row.select = read_selector(keys.at("select"));
            const std::string expect = cd::read_text(m_file, keys.at("expect"));
            if (expect != "fits" && expect != "oom")
                fail(keys.at("expect"), "expected 'fits' or 'oom', got '" + expect + "'");
            row.fits = expect == "fits";
            out.push_back(std::move(row));
        }
        return out;
    }

    std::string m_file;
    std::string m_default_source;
};

}  // namespace

std::string_view to_string(claim_kind kind) noexcept {
    switch (kind) {
    case claim_kind::ratio: return "ratio";
    case claim_kind::ordering: return "ordering";
    case claim_kind::alike: return "alike";
    case claim_kind::fits: return "fits";
    }
    return "?";
}

claims_catalog parse_claims(std::string_view yaml_text, const std::string& file_name) {
    return claims_reader(file_name).read(yaml_text);
}

claims_catalog load_claims(const std::filesystem::path& path) {
    return parse_claims(cd::read_config_file(path), path.string());
}

}  // namespace qbench
