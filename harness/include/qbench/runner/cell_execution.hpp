#pragma once
/// Runs one matrix cell in the current process (the child side of the runner): resolve the backend and model,
/// apply the instance's budgets, make or find the checkpoint/artifact, load, generate with warm-up and repetitions,
/// measure quality against the FP16 model, and turn every ending (including OOM and unsupported) into a result.
#include "qbench/config/catalog.hpp"
#include "qbench/config/cell.hpp"
#include "qbench/results/outcome.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace qbench {

struct cell_environment {
    const catalog* models_and_instances = nullptr;
    std::filesystem::path cache_dir;          ///< checkpoints/, artifacts/, quality/ live below it
    bool use_cuda = false;                    ///< run on the GPU (else the CPU reference)
    bool cold_load = true;                    ///< evict the checkpoint from the page cache before the timed load
    std::uint64_t cache_max_bytes = 0;        ///< cap on checkpoints + artifacts (LRU eviction); 0 = none
    double stream_bandwidth_bytes_per_s = 0;  ///< measured once per run (provenance); 0 = the cell measures it
    /// Called when the cell enters a phase: "prepare", "quantize", "load", "generate", "quality".
    std::function<void(std::string_view phase)> on_phase;
};

struct cell_result {
    qbench::outcome outcome = qbench::outcome::ok;
    std::string reason;
    std::string device = "cpu";
    nlohmann::ordered_json metrics = nlohmann::ordered_json::object();
};

/// Never throws for anything a cell can run into: errors become outcomes.
cell_result execute_cell(const cell_spec& cell, const cell_environment& env);

/// The generation settings a cell implies (mode, beam width, seed, sampling knobs).
struct generation_config;
generation_config generation_config_for(const cell_spec& cell);

}  // namespace qbench
