#pragma once
/// Page-cache control for cold-load timing: a "cold" load must read the checkpoint from the disk, not from RAM.
#include <filesystem>
#include <optional>

namespace qbench {

/// Flushes (fdatasync) and drops from the page cache (posix_fadvise DONTNEED) every regular file under
/// `file_or_dir` (recursively). Returns true only if every file was dropped; false when something could not be
/// opened, or the filesystem keeps file data only in memory (tmpfs, ramfs), where eviction is impossible.
/// Never throws.
bool evict_from_page_cache(const std::filesystem::path& file_or_dir);

/// Fraction (0..1) of a file's pages resident in the page cache (mmap + mincore); nullopt when it cannot be
/// measured. An empty file counts as fully resident.
std::optional<double> page_cache_resident_fraction(const std::filesystem::path& file);

}  // namespace qbench
