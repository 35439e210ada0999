#pragma once
/// Runs a command in its own process group with a wall-clock timeout, so a crashing, hanging or CUDA-faulting cell
/// cannot take the run down: the parent sees how the child ended and records it.
#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace qbench {

struct child_exit {
    enum class kind { exited, signaled, timed_out, interrupted };
    kind how = kind::exited;
    int exit_code = 0;      ///< when exited
    int signal = 0;         ///< when signaled (the terminating signal)
    double wall_s = 0;
    std::string describe() const;  ///< "exit code 3", "killed by SIGSEGV (Segmentation fault)", "timed out after 60 s"
};

struct child_options {
    std::filesystem::path log_file;                 ///< child's stdout+stderr go here (appended); empty = inherit
    std::optional<std::chrono::duration<double>> timeout;
    /// Called about every poll interval while the child runs (progress display); may be empty.
    std::function<void(double elapsed_s)> on_tick;
    /// Polled: when it returns true the child is stopped (SIGTERM, then SIGKILL after a grace period).
    std::function<bool()> should_stop;
    std::chrono::milliseconds poll_interval{100};
    std::chrono::milliseconds kill_grace{3000};
};

/// Starts argv[0] (a path) with argv, waits under the options, and reports how it ended. Throws qbench::error if
/// the process cannot be started.
child_exit run_child(const std::vector<std::string>& argv, const child_options& options);

/// The path of the running executable (/proc/self/exe), for re-invoking qbench as a cell child.
std::filesystem::path self_executable();

}  // namespace qbench
