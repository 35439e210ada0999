#pragma once
/// A size cap on the cache of checkpoints and artifacts, so a full matrix (3 models x fp16 checkpoints x GPTQ
/// artifacts of four widths) fits the GPU machine's disk: least recently used entries go first, never one in use.
#include <cstdint>
#include <filesystem>
#include <vector>

namespace qbench {

/// Bytes under `dir` (regular files, recursively; 0 if absent).
std::uint64_t directory_bytes(const std::filesystem::path& dir);

/// Marks a cache entry as just used (its directory's modification time), so LRU order follows use, not creation.
void touch_cache_entry(const std::filesystem::path& entry);

/// Deletes whole entries (the immediate subdirectories/files of cache_dir/checkpoints and cache_dir/artifacts),
/// least recently used first, until the total is at most max_bytes or only `keep` is left. max_bytes 0 = no cap.
/// Returns the bytes freed.
std::uint64_t enforce_cache_cap(const std::filesystem::path& cache_dir, std::uint64_t max_bytes,
                                const std::vector<std::filesystem::path>& keep);

}  // namespace qbench
