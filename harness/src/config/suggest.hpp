#pragma once
/// "Did you mean ...?" for unknown keys and catalog names: a typo should cost the user one glance, not a trip to the
/// documentation.
#include <string>
#include <string_view>
#include <vector>

namespace qbench::config_detail {

/// The known name closest to `given` (edit distance, case-insensitive; a known name that extends `given` also
/// counts), or "" when none is close enough to be a plausible typo.
std::string nearest_name(std::string_view given, const std::vector<std::string>& known);

/// "; did you mean 'x'?" or, when nothing is close, "; known: a, b, c" (shortened when long). Empty `known` gives "".
std::string suggestion_suffix(std::string_view given, const std::vector<std::string>& known);

}  // namespace qbench::config_detail
