#pragma once
/// Provenance: the head of every results file, saying which qbench, built how, on which machine, ran which matrix.
/// A results file is made by qbench on the machine it names; these fields are how a reader knows that machine.
///
/// JSON form (top-level keys of the file, in this order; "cells" follows them):
///   schema_version  "1.0.0" (schema_version.hpp), always the first key
///   qbench_version  project version, "0.1.0"
///   git_commit      40 hex digits of HEAD at build time, or "unknown" (not built from a git checkout)
///   git_dirty       whether tracked or untracked-but-not-ignored files differed from HEAD; null when unknown
///   build           {"type": "Release", "compiler": "GCC 12.2.0", "cuda_compiler": "13.0.48" | null,
///                    "sanitized": false}
///   host            {"hostname", "cpu_model", "cores", "ram_bytes"}
///   os              {"name": "Debian GNU/Linux 12 (bookworm)", "kernel": "6.1.0-18-amd64", "machine": "x86_64"}
///   timestamp       RFC 3339 UTC, when the file was created
///   command_line    ["qbench", "run", "configs/minigpt4.yaml", ...]
///   matrix          {"file": "configs/minigpt4.yaml" | null, "yaml": "<the file's text as given>" | null}
///   gpu             null, or the CUDA layer's description of the device the cells ran on. Keys it should use:
///                   name, compute_capability ("9.0"), sm_count, memory_bytes, driver_version, cuda_runtime_version,
///                   sm_clock_mhz, memory_clock_mhz, memory_bus_width_bits, stream_bandwidth_bytes_per_s
///                   (measured read bandwidth, the denominator of bandwidth_utilization).
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace qbench {

/// What the caller knows and this library cannot find out itself.
struct provenance_inputs {
    std::vector<std::string> command_line;  ///< argv as given
    std::string matrix_file;                ///< the matrix path as given; empty = none (written as null)
    std::string matrix_yaml;                ///< the matrix text as read; empty = none (written as null)
    nlohmann::ordered_json gpu = nullptr;   ///< object from the CUDA layer, or null on a CPU-only run
};

/// How this binary was built (compiled in; git fields come from cmake/git_version.cmake at build time).
struct build_info {
    std::string qbench_version;
    std::string git_commit;                 ///< "unknown" outside a git checkout
    std::optional<bool> git_dirty;          ///< nullopt when unknown
    std::string build_type;                 ///< CMake configuration, e.g. "Release"
    std::string compiler;                   ///< e.g. "GCC 12.2.0", "Clang 14.0.6"
    std::optional<std::string> cuda_compiler;  ///< nvcc version when built with CUDA
    bool sanitized = false;                 ///< built with ASan/UBSan: its timings mean nothing
};

/// This binary's build_info.
const build_info& this_build() noexcept;

/// The provenance object: schema_version first, then everything listed in the file comment, `gpu` as given.
/// Reads /proc/cpuinfo, /proc/meminfo, /etc/os-release and uname(); a field it cannot read becomes "unknown" / 0.
nlohmann::ordered_json capture_provenance(const provenance_inputs& inputs);

}  // namespace qbench
