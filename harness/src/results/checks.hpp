#pragma once
// Private to qbench_results: the checks shared by the reader (parse_results) and the writer (results_file), so a
// record that append() accepts is exactly one that load_results() will accept later.
#include "json_check.hpp"
#include "qbench/results/outcome.hpp"
#include "qbench/results/record.hpp"
#include "qbench/results/results_file.hpp"

#include <string_view>
#include <sys/stat.h>
#include <vector>

namespace qbench::detail {

/// Checks a `metrics` object (its keys, the shape of each value, oom consistent with the outcome).
void check_metrics(const ojson& metrics, const json_check& check, const std::string& pointer, outcome result);
/// Checks one record at `pointer` and converts it.
cell_record check_record(const ojson& j, const json_check& check, const std::string& pointer);
/// Checks the provenance keys of a top-level document object (everything but "cells", which it ignores).
void check_provenance(const ojson& document, const json_check& check);

/// A parsed document plus each record's JSON as stored (results_file rewrites those, not re-serialized structs).
struct parsed_document {
    results_document document;
    std::vector<ojson> record_json;
};
parsed_document parse_document(std::string_view text, const std::string& file_name);

/// The whole file; `st` (optional) receives fstat of the descriptor read, i.e. of exactly the content returned.
/// An unreadable file is an input_error.
std::string read_file_text(const std::string& name, struct stat* st);

}  // namespace qbench::detail
