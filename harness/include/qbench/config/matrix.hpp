#pragma once
/// A benchmark matrix: the YAML a user writes, expanded into the cells qbench runs.
///
/// ```yaml
/// name: minigpt4                 # optional; default: the file name
/// description: ...               # optional
/// seed: 0                        # synthetic weights, calibration data and sampling derive from it
/// matrix:                        # axes: each a scalar or a list; the cells are their product
///   model: [vicuna-7b-v0, vicuna-13b-v0]
///   framework: [gptq, bnb]
///   bits: [4, 8]
///   beam: [1, 2, 4]              # default 1
///   instance: [g4dn.2xlarge]     # default local (no budgets)
///   bnb.quant_type: [nf4, fp4]   # any option may be an axis; it multiplies only the cells it applies to
///   exclude: [{framework: gptq, bits: 8}]
///   include: [{framework: bnb, bnb.double_quant: true}]
/// gptq: {group_size: 128, ...}   # option values for every cell of the framework (cell_spec.hpp lists them)
/// bnb: {quant_type: nf4, ...}
/// generation: {prompt: Describe this image, prompt_tokens: auto, image_tokens: auto, max_new_tokens: 64, ...}
/// ```
///
/// Expansion follows a CI job matrix (GitHub Actions):
/// - the product of the axes, in the order model, framework, bits, instance, beam, then the other axes in file order
///   (the first varies slowest); an option axis (gptq.*, bnb.*) multiplies only the cells of its framework, and the
///   4-bit (8-bit) bnb options only the 4-bit (8-bit) bnb cells;
/// - `exclude` removes every combination that matches all keys of one of its entries (keys must be axes);
/// - each `include` entry is added to every original combination none of whose axis values it would change (values
///   earlier includes added may be changed); an entry added to none becomes a new combination of its own. A key a
///   new combination lacks takes the axis value when that axis has exactly one value, else its default (beam 1,
///   instance local); model, framework and bits must end up set;
/// - cells equal to an earlier cell are dropped.
/// A combination a backend cannot run (bnb 3-bit) is a valid cell; the run records it as `unsupported`.
#include "qbench/config/catalog.hpp"
#include "qbench/config/cell.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {

struct matrix {
    std::string file;          ///< where it was read from (as given)
    std::string name;          ///< `name:`, else the file name without extension
    std::string description;
    std::string yaml_text;     ///< the file as given (provenance)
    nlohmann::json as_given;   ///< the same document as JSON (provenance in result files)
    std::vector<cell_spec> cells;  ///< expanded, validated, deduplicated, in expansion order
};

/// Most cells one matrix may expand to (a typo such as a 100-value list should not start a month-long run).
inline constexpr std::size_t k_max_matrix_cells = 20000;

/// Reads and expands a matrix file. Throws input_error ("FILE:LINE:COL (key 'K'): message") on any bad input:
/// YAML syntax, unknown keys, wrong types, values out of range, unknown model or instance names.
matrix load_matrix(const std::filesystem::path& path, const catalog& catalogs);
/// The same from text; `file_name` is used in messages and for the default name.
matrix parse_matrix(std::string_view yaml_text, const std::string& file_name, const catalog& catalogs);

/// Keeps the cells matching every `KEY=VALUE` (`--filter`). KEY is an axis (model, framework, bits, beam, instance,
/// seed) or a dotted option (gptq.group_size, bnb.quant_type, generation.max_new_tokens); VALUE may list
/// alternatives separated by commas (`bits=4,8`). A cell without the option (gptq.* on a bnb cell) does not match.
/// Throws input_error (file "--filter") on an unknown key or a value of the wrong type.
std::vector<cell_spec> apply_filters(const std::vector<cell_spec>& cells, const std::vector<std::string>& key_eq_value);

/// The cells as an aligned text table (one line per cell: index, model, framework, bits, beam, instance, format
/// options, tokens, hash), for `qbench validate` and `qbench run --dry-run`.
std::string describe_cells(const std::vector<cell_spec>& cells);

}  // namespace qbench
