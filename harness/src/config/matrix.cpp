#include "qbench/config/matrix.hpp"

#include "cell_fields.hpp"
#include "qbench/common/errors.hpp"
#include "suggest.hpp"
#include "yaml_support.hpp"

#include <algorithm>
#include <array>
#include <optional>
#include <set>

namespace qbench {
namespace cd = config_detail;

namespace {

// Entries an exclude or include list may have; far above any real matrix, low enough that include x combinations
// stays cheap.
constexpr std::size_t k_max_rule_entries = 1000;

// The axes whose order the expansion fixes (first varies slowest); other axes follow in file order.
constexpr std::array<std::string_view, 5> k_main_axes = {"model", "framework", "bits", "instance", "beam"};
// Keys every cell must get from an axis or an include entry (beam and instance have defaults).
constexpr std::array<std::string_view, 3> k_required_keys = {"model", "framework", "bits"};

// A value with the place it was written, so any later check can point at it.
struct located {
    cd::field_value value;
    YAML::Mark mark;
    std::string path;
};

struct axis {
    const cd::cell_field* field;
    std::vector<located> values;
};

struct binding {
    const cd::cell_field* field;
    located value;
    bool original;  ///< from the axes' product (an include may not change it), not added by an include
};

// One combination of the matrix before it becomes a cell.
struct combination {
    std::vector<binding> bindings;
    YAML::Mark anchor;        ///< where errors about the whole combination point: its include entry, or `matrix:`
    std::string anchor_path;

    const binding* find(const cd::cell_field* field) const {
        for (const binding& b : bindings)
            if (b.field == field) return &b;
        return nullptr;
    }
    void set(const cd::cell_field* field, const located& value, bool original) {
        for (binding& b : bindings)
            if (b.field == field) {
                b.value = value;
                b.original = original;
                return;
            }
        bindings.push_back({field, value, original});
    }
};

// A rule of `exclude` or `include`: key/value pairs with the entry's place.
struct rule {
    std::vector<std::pair<const cd::cell_field*, located>> pairs;
    YAML::Mark mark;
    std::string path;
};

class matrix_reader {
public:
    matrix_reader(std::string file, const catalog& catalogs) : m_file(std::move(file)), m_catalogs(catalogs) {}

    matrix read(std::string_view text);

private:
    located read_value(const cd::cell_field& field, const YAML::Node& node, const YAML::Mark& mark,
                       const std::string& path) const;
    void read_section(const cd::yaml_entry& section);
    void read_axes(const cd::yaml_entry& matrix_entry);
    std::vector<rule> read_rules(const cd::yaml_entry& entry, bool axes_only) const;
    std::vector<combination> expand() const;
    cell_spec finish(const combination& c) const;
    [[noreturn]] void fail(const YAML::Mark& mark, std::string_view key, const std::string& message) const {
        cd::throw_at(m_file, mark, key, message);
    }
    const axis* find_axis(const cd::cell_field* field) const {
        for (const axis& a : m_axes)
            if (a.field == field) return &a;
        return nullptr;
    }

    std::string m_file;
    const catalog& m_catalogs;
    cell_spec m_base;                              ///< sections' values over cell_spec defaults
    std::map<std::string_view, located> m_origin;  ///< where each section value was written
    std::vector<axis> m_axes;
    std::vector<rule> m_excludes, m_includes;
    YAML::Mark m_matrix_mark;
};

located matrix_reader::read_value(const cd::cell_field& field, const YAML::Node& node, const YAML::Mark& mark,
                                  const std::string& path) const {
    std::string why;
    std::optional<cd::field_value> value;
    if (node.IsScalar()) value = cd::parse_field_text(field, node.Scalar(), cd::is_plain_scalar(node), why);
    else why = field.kind == cd::field_kind::text ? "expected text" : "expected a single value";
    if (!value) fail(mark, path, why + ", got " + cd::describe_node(node));
    if (const std::string bad = cd::check_field_value(field, *value); !bad.empty()) fail(mark, path, bad);
    if (field.key == "model" && !m_catalogs.find_model(std::get<std::string>(*value))) {
        const std::string& name = std::get<std::string>(*value);
        fail(mark, path, "unknown model '" + name + "'" + cd::suggestion_suffix(name, m_catalogs.model_names()));
    }
    if (field.key == "instance" && !m_catalogs.find_instance(std::get<std::string>(*value))) {
        const std::string& name = std::get<std::string>(*value);
        fail(mark, path, "unknown instance '" + name + "'" + cd::suggestion_suffix(name, m_catalogs.instance_names()));
    }
    return {std::move(*value), mark, path};
}

void matrix_reader::read_section(const cd::yaml_entry& section) {
    std::vector<std::string> known;
    for (const cd::cell_field& f : cd::cell_fields())
        if (cd::field_group(f) == section.key) known.emplace_back(cd::field_name(f));
    for (const cd::yaml_entry& e : cd::map_entries(m_file, section.value, section.key_node.Mark(), section.key)) {
        const cd::cell_field* field = cd::find_field(e.path);
        if (!field) cd::throw_unknown_key(m_file, e, "'" + section.key + "'", known);
        if (e.value.IsSequence())
            fail(e.value_mark(), e.path,
                 "a list is not a value here; to sweep an option, make it an axis: 'matrix: {" + e.path + ": [...]}'");
        located v = read_value(*field, e.value, e.value_mark(), e.path);
        field->set(m_base, v.value);
        m_origin[field->key] = std::move(v);
    }
}

void matrix_reader::read_axes(const cd::yaml_entry& matrix_entry) {
    std::vector<std::string> known = cd::field_keys();
    known.push_back("exclude");
    known.push_back("include");
    const cd::yaml_entry* exclude = nullptr;
    const cd::yaml_entry* include = nullptr;
    const std::vector<cd::yaml_entry> entries = cd::map_entries(m_file, matrix_entry.value, m_matrix_mark, "matrix");
    for (const cd::yaml_entry& e : entries) {
        if (e.key == "exclude") {
            exclude = &e;
            continue;
        }
        if (e.key == "include") {
            include = &e;
            continue;
        }
        const cd::cell_field* field = cd::find_field(e.key);
        if (!field) cd::throw_unknown_key(m_file, e, "'matrix' (axes are cell keys)", known);
        axis a{field, {}};
        if (e.value.IsSequence()) {
            if (e.value.size() == 0) fail(e.value_mark(), e.path, "empty list: an axis needs at least one value");
            for (const YAML::Node& item : e.value) {
                located v = read_value(*field, item, cd::mark_or(item, e.value_mark()), e.path);
                for (const located& earlier : a.values)
                    if (earlier.value == v.value)
                        fail(v.mark, e.path, "duplicate value '" + cd::field_to_string(v.value) + "' in the axis");
                a.values.push_back(std::move(v));
            }
        } else if (e.value.IsMap()) {
            fail(e.value_mark(), e.path, "expected a value or a list of values, got a map");
        } else {
            a.values.push_back(read_value(*field, e.value, e.value_mark(), e.path));
        }
        m_axes.push_back(std::move(a));
    }
    // Fixed order for the main axes, file order for the rest (stable sort keeps it).
    const auto rank = [](const axis& a) {
        const auto it = std::find(k_main_axes.begin(), k_main_axes.end(), a.field->key);
        return static_cast<std::size_t>(it - k_main_axes.begin());
    };
    std::stable_sort(m_axes.begin(), m_axes.end(), [&](const axis& x, const axis& y) { return rank(x) < rank(y); });
    // Rules are read after all axes, since exclude keys are checked against them.
    if (exclude) m_excludes = read_rules(*exclude, true);
    if (include) m_includes = read_rules(*include, false);
    if (m_axes.empty() && m_includes.empty())
        fail(m_matrix_mark, "matrix", "no axes: give at least model, framework and bits (or include entries)");
}

std::vector<rule> matrix_reader::read_rules(const cd::yaml_entry& entry, bool axes_only) const {
    if (!entry.value.IsSequence())
        fail(entry.value_mark(), entry.path, "expected a list of maps ('- {key: value, ...}'), got " + cd::describe_node(entry.value));
    if (entry.value.size() > k_max_rule_entries)
        fail(entry.value_mark(), entry.path, "more than " + std::to_string(k_max_rule_entries) + " entries");
    std::vector<std::string> known;
    if (axes_only)
        for (const axis& a : m_axes) known.emplace_back(a.field->key);
    else
        known = cd::field_keys();
    std::vector<rule> rules;
    std::size_t index = 0;
    for (const YAML::Node& item : entry.value) {
        rule r;
        r.mark = cd::mark_or(item, entry.value_mark());
        r.path = entry.path + "[" + std::to_string(index++) + "]";
        for (const cd::yaml_entry& e : cd::map_entries(m_file, item, r.mark, r.path)) {
            const cd::cell_field* field = cd::find_field(e.key);
            if (!field) cd::throw_unknown_key(m_file, e, "'" + entry.path + "'", known);
            if (axes_only && !find_axis(field))
                fail(e.key_node.Mark(), e.path,
                     "'" + e.key + "' is not an axis of this matrix, so no combination can match it" +
                         cd::suggestion_suffix(e.key, known));
            if (e.value.IsSequence())
                fail(e.value_mark(), e.path, "an " + entry.key + " entry takes one value per key, got a list");
            r.pairs.emplace_back(field, read_value(*field, e.value, e.value_mark(), e.path));
        }
        if (r.pairs.empty()) fail(r.mark, r.path, "empty " + entry.key + " entry");
        rules.push_back(std::move(r));
    }
    return rules;
}

std::vector<combination> matrix_reader::expand() const {
    const cd::cell_field* framework_field = cd::find_field("framework");
    const cd::cell_field* bits_field = cd::find_field("bits");

    // 1. The product of the axes. An option axis multiplies only the combinations it applies to.
    std::vector<combination> originals;
    if (!m_axes.empty()) originals.push_back({{}, m_matrix_mark, "matrix"});
    for (const axis& a : m_axes) {
        std::vector<combination> next;
        for (const combination& c : originals) {
            std::optional<std::string> framework;
            std::optional<std::int64_t> bits;
            if (const binding* b = c.find(framework_field)) framework = std::get<std::string>(b->value.value);
            if (const binding* b = c.find(bits_field)) bits = std::get<std::int64_t>(b->value.value);
            if (!cd::field_applies(*a.field, framework, bits)) {
                next.push_back(c);
                continue;
            }
            for (const located& v : a.values) {
                next.push_back(c);
                next.back().bindings.push_back({a.field, v, true});
            }
            if (next.size() > k_max_matrix_cells)
                fail(m_matrix_mark, "matrix",
                     "the axes expand to more than " + std::to_string(k_max_matrix_cells) + " combinations");
        }
        originals = std::move(next);
    }

    // 2. exclude: drop each combination matching every key of some entry.
    const auto matches = [](const combination& c, const rule& r) {
        return std::all_of(r.pairs.begin(), r.pairs.end(), [&](const auto& pair) {
            const binding* b = c.find(pair.first);
            return b && b->value.value == pair.second.value;
        });
    };
    std::erase_if(originals, [&](const combination& c) {
        return std::any_of(m_excludes.begin(), m_excludes.end(), [&](const rule& r) { return matches(c, r); });
    });

    // 3. include: extend the original combinations whose axis values the entry leaves alone; else add the entry.
    std::vector<combination> added;
    for (const rule& r : m_includes) {
        bool used = false;
        for (combination& c : originals) {
            const bool compatible = std::all_of(r.pairs.begin(), r.pairs.end(), [&](const auto& pair) {
                const binding* b = c.find(pair.first);
                return !b || !b->original || b->value.value == pair.second.value;
            });
            if (!compatible) continue;
            used = true;
            for (const auto& [field, value] : r.pairs) {
                const binding* b = c.find(field);
                if (!(b && b->original)) c.set(field, value, false);
            }
        }
        if (!used) {
            combination c{{}, r.mark, r.path};
            for (const auto& [field, value] : r.pairs) c.set(field, value, false);
            // What the entry leaves open comes from single-valued axes (`model: tiny` holds for every cell).
            for (const axis& a : m_axes)
                if (!c.find(a.field) && a.values.size() == 1) c.set(a.field, a.values.front(), false);
            added.push_back(std::move(c));
        }
        if (originals.size() + added.size() > k_max_matrix_cells)
            fail(r.mark, r.path, "the matrix expands to more than " + std::to_string(k_max_matrix_cells) + " cells");
    }
    originals.insert(originals.end(), std::make_move_iterator(added.begin()), std::make_move_iterator(added.end()));
    return originals;
}

cell_spec matrix_reader::finish(const combination& c) const {
    cell_spec cell = m_base;
    std::map<std::string_view, located> origin = m_origin;
    for (const binding& b : c.bindings) {
        b.field->set(cell, b.value.value);
        origin[b.field->key] = b.value;
    }
    for (const std::string_view key : k_required_keys)
        if (!c.find(cd::find_field(key)))
            fail(c.anchor, c.anchor_path,
                 "combination without '" + std::string(key) + "': give a '" + std::string(key) +
                     "' axis, or set it in this include entry");

    // Checks that need the model. Each points at the value that broke it, else at the model.
    const model_config& model = *m_catalogs.find_model(cell.model);
    const located& model_origin = origin.at("model");
    const auto where = [&](std::string_view key) -> const located& {
        const auto it = origin.find(key);
        return it != origin.end() ? it->second : model_origin;
    };
    if (cell.generation.image_tokens < 0) cell.generation.image_tokens = model.minigpt4_image_tokens;
    const std::int64_t context =
        cell.generation.image_tokens + cell.generation.prompt_tokens + cell.generation.max_new_tokens;
    if (context > model.max_position) {
        const located& at = where("generation.max_new_tokens");
        fail(at.mark, at.path,
             "image_tokens " + std::to_string(cell.generation.image_tokens) + " + prompt_tokens " +
                 std::to_string(cell.generation.prompt_tokens) + " + max_new_tokens " +
                 std::to_string(cell.generation.max_new_tokens) + " = " + std::to_string(context) +
                 " exceed the max_position " + std::to_string(model.max_position) + " of model '" + model.name + "'");
    }
    if (cell.framework == "gptq" && cell.gptq.calibration_seq_len > model.max_position) {
        // The default (2048, the GPTQ paper's) shrinks to a shorter context: a calibration sequence cannot have
        // more positions than the model. A length the user wrote is kept, and checked below.
        if (!origin.count("gptq.calibration_seq_len")) cell.gptq.calibration_seq_len = model.max_position;
    }
    if (cell.framework == "gptq" && cell.gptq.calibration_seq_len > model.max_position) {
        const located& at = where("gptq.calibration_seq_len");
        fail(at.mark, at.path,
             "calibration_seq_len " + std::to_string(cell.gptq.calibration_seq_len) + " exceeds the max_position " +
                 std::to_string(model.max_position) + " of model '" + model.name + "'");
    }
    return cell;
}

matrix matrix_reader::read(std::string_view text) {
    matrix m;
    m.file = m_file;
    m.yaml_text = std::string(text);
    m.name = std::filesystem::path(m_file).stem().string();
    const YAML::Node doc = cd::parse_yaml_document(text, m_file);
    if (!doc.IsDefined() || doc.IsNull()) throw input_error(m_file, "", "empty matrix file");
    // First, as it is also the bounded walk that turns alias-bomb documents away before anything iterates them.
    m.as_given = cd::yaml_to_json(doc, m_file);

    static const std::vector<std::string> top_keys = {"name", "description", "seed", "matrix", "gptq", "bnb",
                                                      "generation"};
    const cd::yaml_entry* matrix_entry = nullptr;
    const std::vector<cd::yaml_entry> entries = cd::map_entries(m_file, doc, YAML::Mark(), "");
    for (const cd::yaml_entry& e : entries) {
        if (e.key == "name") {
            m.name = cd::read_text(m_file, e);
        } else if (e.key == "description") {
            m.description = cd::read_text(m_file, e);
        } else if (e.key == "seed") {
            const cd::cell_field& field = *cd::find_field("seed");
            located v = read_value(field, e.value, e.value_mark(), e.path);
            field.set(m_base, v.value);
            m_origin[field.key] = std::move(v);
        } else if (e.key == "matrix") {
            matrix_entry = &e;
        } else if (e.key == "gptq" || e.key == "bnb" || e.key == "generation") {
            read_section(e);
        } else {
            cd::throw_unknown_key(m_file, e, "the matrix file", top_keys);
        }
    }
    if (!matrix_entry) throw input_error(m_file, "", "missing key 'matrix' (the axes: model, framework, bits, ...)");
    m_matrix_mark = matrix_entry->key_node.Mark();
    read_axes(*matrix_entry);

    std::set<std::string> seen;
    for (const combination& c : expand()) {
        cell_spec cell = finish(c);
        if (seen.insert(cell_hash(cell)).second) m.cells.push_back(std::move(cell));
    }
    return m;
}

}  // namespace

matrix parse_matrix(std::string_view yaml_text, const std::string& file_name, const catalog& catalogs) {
    return matrix_reader(file_name, catalogs).read(yaml_text);
}

matrix load_matrix(const std::filesystem::path& path, const catalog& catalogs) {
    return parse_matrix(cd::read_config_file(path), path.string(), catalogs);
}

}  // namespace qbench
