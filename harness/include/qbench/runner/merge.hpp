#pragma once
/// `qbench merge`: joins the result files of a sharded run (`--shard I/N` on several machines or job-array tasks)
/// into one file. The first file's provenance heads the result, and `merged_from` lists every input's own
/// provenance summary (file, host, GPU, git commit, timestamp), so no machine's identity is lost. A cell recorded in
/// two inputs (same config_hash) is refused: merging must never pick a figure silently.
#include "qbench/results/results_file.hpp"

#include <filesystem>
#include <vector>

namespace qbench {

results_document merge_results(const std::vector<std::filesystem::path>& inputs);

}  // namespace qbench
