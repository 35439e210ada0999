#pragma once
/// Asking about the GPU without holding it: the runner's parent process never creates a CUDA context (a context
/// would hold VRAM for the whole run and sit beside every cell's), so it asks a short-lived child instead.
#include <nlohmann/json.hpp>

namespace qbench {

/// A CUDA build and at least one visible device (checked in a child process).
bool cuda_device_available();
/// The device's description and its measured stream bandwidth for provenance (null if there is none). With
/// `isolate` false the probe runs in this process.
nlohmann::ordered_json probe_gpu(bool isolate);
/// Launches a kernel that writes through an invalid pointer and synchronizes (a sticky CUDA error), for the runner's
/// fault-isolation test; without CUDA it raises SIGSEGV instead.
void inject_cuda_fault();
/// The in-process probe (the child's side): gpu_environment() plus stream_bandwidth_bytes_per_s; null without CUDA.
nlohmann::ordered_json probe_gpu_here();

}  // namespace qbench
