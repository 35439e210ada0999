#pragma once
// Internal to qbench_io: JSON parsing for checkpoint files with the checks nlohmann::json leaves out. A JSON object
// with a repeated key is legal to nlohmann (the last value silently wins), but in a safetensors header it means two
// tensors claim one name, and in an index it means a tensor is mapped twice; both must be errors, so duplicate keys
// are detected during parsing, at every depth.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace qbench::io_detail {

/// How a place in the JSON text is named in messages.
enum class json_place_style : std::uint8_t {
    file_byte,    ///< "byte 123": JSON embedded in a binary file (safetensors header) at `base_offset`
    line_column,  ///< "line 3, column 7": a JSON text file
};

/// Parses `text`; syntax errors and duplicate keys throw input_error(file, place, message). A duplicate key at
/// the top level is reported as "<top_level_noun> 'name'" (e.g. "tensor 'x'"), deeper ones with their path.
nlohmann::json parse_json_strict(std::string_view text, const std::string& file, std::uint64_t base_offset,
                                 json_place_style style, std::string_view top_level_noun);

/// Names position `pos` (0-based, within `text`) in the given style.
std::string json_place(std::string_view text, std::size_t pos, std::uint64_t base_offset, json_place_style style);

/// The JSON type of a value in words ("a string", "an array", ...), for "expected X, found Y" messages.
std::string json_kind(const nlohmann::json& v);

}  // namespace qbench::io_detail
