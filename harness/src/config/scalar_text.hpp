#pragma once
/// Strict parsing of scalar text shared by the YAML readers, cell JSON and `--filter` values. Stricter than
/// yaml-cpp's own conversions on purpose: "4.0" is not an integer, "0x10" and "1_000" are not numbers, "inf" and "nan"
/// are not finite numbers, so a typo is an error instead of a surprising value.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace qbench::config_detail {

/// Optional sign and decimal digits, in the int64 range.
std::optional<std::int64_t> parse_integer_text(std::string_view text);
/// A finite decimal number ("0.01", "1e-5", "6", "-.5").
std::optional<double> parse_number_text(std::string_view text);
/// Offset of the first byte that is not part of well-formed UTF-8 (overlong forms, surrogates and code points above
/// U+10FFFF count as malformed), or nullopt when all of `text` is UTF-8.
std::optional<std::size_t> first_invalid_utf8(std::string_view text);

/// YAML 1.1 booleans: true/false, yes/no, on/off, any case.
std::optional<bool> parse_boolean_text(std::string_view text);

}  // namespace qbench::config_detail
