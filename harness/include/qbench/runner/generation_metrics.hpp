#pragma once
/// Timed generation: warm-up runs, then repetitions, turned into the speed metrics of a cell record.
#include "qbench/config/cell.hpp"
#include "qbench/engine/generation.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>

namespace qbench {

/// Runs cell.generation.warmup untimed and cell.generation.repetitions timed generations and writes prefill_ms,
/// decode_tokens_per_s, e2e_tokens_per_s, beam_tokens_per_s, token_latency_ms and, when both byte count and
/// bandwidth are known (> 0), bytes_per_decode_step and bandwidth_utilization into `metrics`.
/// Tokens: the first new token comes out of the prefill; the remaining max_new_tokens - 1 are decode steps.
void measure_generation(executor& exec, const prompt& p, const generation_config& g, const cell_spec& cell,
                        std::uint64_t bytes_per_decode_step, double stream_bandwidth_bytes_per_s,
                        nlohmann::ordered_json& metrics);

}  // namespace qbench
