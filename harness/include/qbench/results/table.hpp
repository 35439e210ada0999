#pragma once
/// A short table of a run's cells for the terminal (and for pasting into markdown: it is a pipe table).
#include "qbench/results/record.hpp"

#include <string>
#include <vector>

namespace qbench {

/// One row per record: #, model, framework, bits, beam, instance, outcome, load s, decode tok/s (the median),
/// VRAM GiB (accounting-allocator peak), BW util (bandwidth_utilization in %), reason (shortened).
/// A figure that was not measured shows as "-". Columns are padded to line up.
std::string format_cells_table(const std::vector<cell_record>& records);

}  // namespace qbench
