#pragma once
/// The version of the results file format this qbench writes (semver, as nvbench versions its JSON).
///   major: a change an older reader would misread (a key renamed, removed or re-meant). Readers refuse other majors.
///   minor: additions (a new metric, a new provenance field). An older reader warns and keeps what it does not know.
///   patch: the schema file got stricter or clearer; files are unchanged.
/// results/README.md states the policy; results/schema/qbench-results.schema.json carries the same number.

namespace qbench {

inline constexpr int k_results_schema_major = 1;
inline constexpr int k_results_schema_minor = 1;
inline constexpr int k_results_schema_patch = 0;
inline constexpr char k_results_schema_version[] = "1.1.0";

}  // namespace qbench
