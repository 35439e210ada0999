#pragma once
/// The GPU side of a cell (CUDA builds only): budgeted device context, timed load, generation with CUDA events,
/// memory figures, quality against the FP16 model. Host-only header.
#include "qbench/backend/backend.hpp"
#include "qbench/config/cell.hpp"
#include "qbench/engine/model_config.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string_view>

namespace qbench {

/// cudaGetDeviceCount without creating a context (0 on any error).
int cuda_device_count();
/// gpu_environment() plus the measured stream bandwidth (stream_bandwidth_bytes_per_s), for provenance.
nlohmann::ordered_json cuda_environment_with_bandwidth();
/// Launches a kernel that writes through a wild pointer and synchronizes: a sticky CUDA error (fault injection).
void cuda_fault_now();

struct cuda_cell_inputs {
    const cell_spec& cell;
    const model_config& model;
    const backend& b;
    std::filesystem::path artifact;
    std::uint64_t vram_budget_bytes = 0;      ///< 0 = none
    std::filesystem::path cache_dir;
    bool cold_load = true;
    double stream_bandwidth_bytes_per_s = 0;  ///< from the run's probe; 0 = measure here
    std::function<void(std::string_view)> on_phase;
};

/// Fills `metrics`; throws out_of_memory / unsupported_error / other errors for execute_cell to classify.
void run_cuda_cell(const cuda_cell_inputs& in, nlohmann::ordered_json& metrics);

}  // namespace qbench
