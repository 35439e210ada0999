#pragma once
// Internal to qbench_io: a file descriptor that closes itself, with positioned reads and writes that loop over
// short transfers and EINTR. Positioned I/O (pread/pwrite) lets several threads share one descriptor without a
// seek position to race on, and big transfers go in bounded chunks so a 300 MB tensor never asks the kernel for
// one huge request (some filesystems cap a single read at 2 GiB anyway).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

namespace qbench::io_detail {

/// Bytes moved per read/write system call.
inline constexpr std::size_t k_io_chunk_bytes = std::size_t{64} << 20;

class posix_file {
public:
    posix_file() = default;
    ~posix_file();
    posix_file(posix_file&& o) noexcept;
    posix_file& operator=(posix_file&& o) noexcept;
    posix_file(const posix_file&) = delete;
    posix_file& operator=(const posix_file&) = delete;

    /// Opens for reading; throws input_error(path, "", reason) when it cannot.
    static posix_file open_read(const std::filesystem::path& path);
    /// Creates (truncating) for writing; throws error when it cannot.
    static posix_file create(const std::filesystem::path& path);

    bool is_open() const noexcept { return m_fd >= 0; }
    int fd() const noexcept { return m_fd; }
    const std::filesystem::path& path() const noexcept { return m_path; }
    std::uint64_t size() const;

    /// Reads exactly out.size() bytes at `offset`; a short file gives input_error(path, place, ...).
    void read_exact(std::span<std::byte> out, std::uint64_t offset, const std::string& place) const;
    /// Writes all of `bytes` at `offset`; throws error on failure (disk full, I/O error).
    void write_all(std::span<const std::byte> bytes, std::uint64_t offset) const;
    /// fdatasync: the data is on disk before a rename publishes the file.
    void sync_data() const;
    /// Closes and reports a failed close (which can carry a deferred write error).
    void close();

private:
    int m_fd = -1;
    std::filesystem::path m_path;
};

/// fsync of a directory, so a rename inside it survives a crash. Best effort: some filesystems refuse it.
void sync_directory(const std::filesystem::path& dir) noexcept;

/// Reads a whole (small) file; input_error when it cannot be read or exceeds `max_bytes`.
std::string read_text_file(const std::filesystem::path& path, std::uint64_t max_bytes);

/// Writes a small file (JSON, a marker) atomically: temporary sibling, fdatasync, rename.
void write_file_atomic(const std::filesystem::path& path, std::string_view text);

/// "path: strerror(errno)" style text for the current errno.
std::string errno_text();

/// A name for a temporary sibling of `target` that no other process or thread picks: target + ".tmp-PID-N".
std::filesystem::path temporary_sibling(const std::filesystem::path& target);

}  // namespace qbench::io_detail
