#include "qbench/runner/gpu_probe.hpp"

#include "qbench/runner/child_process.hpp"
#if QBENCH_RUNNER_CUDA
#include "qbench/runner/cuda_cell.hpp"
#endif

#include <csignal>
#include <fstream>
#include <unistd.h>

namespace qbench {

bool cuda_device_available() {
#if QBENCH_RUNNER_CUDA
    return cuda_device_count() > 0;
#else
    return false;
#endif
}

void inject_cuda_fault() {
#if QBENCH_RUNNER_CUDA
    cuda_fault_now();
#endif
    std::raise(SIGSEGV);
}

nlohmann::ordered_json probe_gpu_here() {
#if QBENCH_RUNNER_CUDA
    return cuda_environment_with_bandwidth();
#else
    return nullptr;
#endif
}

nlohmann::ordered_json probe_gpu(bool isolate) {
    if (!isolate) return probe_gpu_here();
    const auto out = std::filesystem::temp_directory_path() / ("qbench-gpu-probe-" + std::to_string(::getpid()) + ".json");
    child_options options;
    options.timeout = std::chrono::duration<double>(300);
    const auto exit = run_child({self_executable().string(), "__gpu-probe", "--out", out.string()}, options);
    nlohmann::ordered_json j = nullptr;
    if (exit.how == child_exit::kind::exited && exit.exit_code == 0) {
        std::ifstream in(out);
        j = nlohmann::ordered_json::parse(in, nullptr, false);
        if (j.is_discarded()) j = nullptr;
    }
    std::filesystem::remove(out);
    return j;
}

}  // namespace qbench
