#pragma once
/// One cell record: what a matrix cell was, how it ended, and what it measured. A results file holds one per cell,
/// in the order the cells finished.
///
/// JSON form (keys in this order; see results/schema/qbench-results.schema.json):
///   {"cell": {cell_to_json}, "config_hash": "<cell_hash>", "outcome": "ok", "reason": "",
///    "started_at": "<RFC 3339>", "finished_at": "<RFC 3339>", "wall_s": 12.5, "device": "cuda",
///    "metrics": {<metrics.hpp keys>}}
#include "qbench/config/cell.hpp"
#include "qbench/results/outcome.hpp"

#include <nlohmann/json.hpp>

#include <string>

namespace qbench {

struct cell_record {
    cell_spec cell;
    std::string config_hash;                         ///< cell_hash(cell): what --resume matches on
    qbench::outcome outcome = qbench::outcome::error;  ///< error until the runner says otherwise
    std::string reason;                              ///< empty for ok; for any other outcome, why (one line)
    std::string started_at;                          ///< RFC 3339 UTC (timestamp.hpp), when the child started
    std::string finished_at;                         ///< RFC 3339 UTC, when its outcome was known
    double wall_s = 0;                               ///< wall time of the whole cell, child start to record
    std::string device = "cpu";                      ///< where it ran: "cuda" | "cpu"
    nlohmann::ordered_json metrics = nlohmann::ordered_json::object();  ///< keys from metrics.hpp only
};

/// The record as JSON (keys in the documented order).
nlohmann::ordered_json record_to_json(const cell_record& record);
/// Checks `j` against the record schema and converts it. Throws input_error(file, pointer of the bad value,
/// message), where `pointer` is the JSON pointer of `j` itself (e.g. "/cells/3").
cell_record record_from_json(const nlohmann::ordered_json& j, const std::string& file, const std::string& pointer);

}  // namespace qbench
