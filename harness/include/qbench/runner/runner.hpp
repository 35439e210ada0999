#pragma once
/// The parent side of a run: select the cells (filters, shard), skip the ones already recorded (--resume), run each
/// in its own child process under a timeout, record every ending atomically, show progress, stop cleanly on Ctrl-C.
#include "qbench/config/catalog.hpp"
#include "qbench/config/matrix.hpp"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace qbench {

struct shard_spec {
    std::int64_t index = 0;  ///< 0-based, < count
    std::int64_t count = 1;
};
/// Parses "I/N" (0 <= I < N); throws input_error naming `flag` otherwise.
shard_spec parse_shard(const std::string& text, const std::string& flag);
/// Cells that share an artifact (same model, framework, bits, framework options and seed; any beam, instance or
/// generation setting) have the same key: one GPTQ quantization serves them all.
std::string artifact_group_key(const cell_spec& cell);
/// The deterministic slice of `cells` for a shard. Whole artifact groups are dealt out, in order of first
/// appearance, each to the shard with the fewest cells so far (lowest index on ties), so no two machines quantize
/// the same artifact; the slice keeps the matrix order. Disjoint over index 0..count-1, and together they cover.
std::vector<cell_spec> select_shard(const std::vector<cell_spec>& cells, const shard_spec& shard);

struct run_options {
    std::filesystem::path output;              ///< results file
    std::filesystem::path configs_dir;         ///< catalogs
    std::filesystem::path cache_dir;           ///< checkpoints, artifacts, quality references
    std::string device = "auto";               ///< "auto" | "cuda" | "cpu"
    bool resume = false;
    /// With resume: cells recorded as error or timeout run again and their record is replaced (not duplicated).
    bool retry_failed = false;
    bool isolate = true;                       ///< one child process per cell (default); false = in-process
    bool cold_load = true;
    double cell_timeout_s = 3600;
    shard_spec shard;
    std::vector<std::string> command_line;
    /// Per-cell files (cell JSON, result, phase, log); empty = "<output>.work".
    std::filesystem::path work_dir;
    /// The qbench binary that runs a cell (`qbench __cell`); empty = this executable.
    std::filesystem::path child_executable;
};

/// What happened to the run as a whole.
struct run_summary {
    std::size_t recorded = 0;   ///< cells recorded by this invocation
    std::size_t skipped = 0;    ///< already in the file (--resume)
    std::size_t failed = 0;     ///< recorded with outcome error or timeout
    bool interrupted = false;   ///< stopped by SIGINT/SIGTERM
};

/// Runs the cells of `m` (already filtered by the caller) into options.output.
run_summary run_matrix(const matrix& m, const std::vector<cell_spec>& cells, const catalog& cat,
                       const run_options& options);

/// Whether "auto" resolves to the GPU here (a CUDA build and a visible device).
bool resolve_use_cuda(const std::string& device);

/// The child entry point (`qbench __cell ...`): reads the cell JSON, runs it, writes the result JSON.
/// Returns the process exit code (0 whenever a result was written, whatever the outcome).
///
/// Testing hook: QBENCH_FAULT_INJECTION="SUBSTRING=crash|hang|abort|cuda_fault[;...]" makes a child whose cell label
/// contains SUBSTRING crash (SIGSEGV), hang, abort, or launch a kernel that faults, so tests can show that the other
/// cells of a matrix complete. Never set outside tests.
int run_cell_child(const std::filesystem::path& cell_file, const std::filesystem::path& result_file,
                   const std::filesystem::path& phase_file, const std::filesystem::path& configs_dir,
                   const std::filesystem::path& cache_dir, bool use_cuda, bool cold_load,
                   double stream_bandwidth_bytes_per_s);

}  // namespace qbench
