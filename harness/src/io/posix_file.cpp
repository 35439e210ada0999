#include "posix_file.hpp"

#include "qbench/common/errors.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <system_error>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

namespace qbench::io_detail {

std::string errno_text() { return std::strerror(errno); }

posix_file::~posix_file() {
    if (m_fd >= 0) ::close(m_fd);
}

posix_file::posix_file(posix_file&& o) noexcept : m_fd(std::exchange(o.m_fd, -1)), m_path(std::move(o.m_path)) {}

posix_file& posix_file::operator=(posix_file&& o) noexcept {
    if (this != &o) {
        if (m_fd >= 0) ::close(m_fd);
        m_fd = std::exchange(o.m_fd, -1);
        m_path = std::move(o.m_path);
    }
    return *this;
}

posix_file posix_file::open_read(const std::filesystem::path& path) {
    posix_file f;
    f.m_path = path;
    do {
        f.m_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (f.m_fd < 0 && errno == EINTR);
    if (f.m_fd < 0) throw input_error(path.string(), "", "cannot open: " + errno_text());
    struct stat st {};
    if (::fstat(f.m_fd, &st) != 0) throw input_error(path.string(), "", "cannot stat: " + errno_text());
    if (S_ISDIR(st.st_mode)) throw input_error(path.string(), "", "is a directory, not a file");
    return f;
}

posix_file posix_file::create(const std::filesystem::path& path) {
    posix_file f;
    f.m_path = path;
    do {
        f.m_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } while (f.m_fd < 0 && errno == EINTR);
    if (f.m_fd < 0) throw error(path.string() + ": cannot create: " + errno_text());
    return f;
}

std::uint64_t posix_file::size() const {
    struct stat st {};
    if (::fstat(m_fd, &st) != 0) throw input_error(m_path.string(), "", "cannot stat: " + errno_text());
    return static_cast<std::uint64_t>(st.st_size);
}

void posix_file::read_exact(std::span<std::byte> out, std::uint64_t offset, const std::string& place) const {
    std::size_t done = 0;
    while (done < out.size()) {
        const std::size_t want = std::min(out.size() - done, k_io_chunk_bytes);
        const ssize_t got = ::pread(m_fd, out.data() + done, want, static_cast<off_t>(offset + done));
        if (got < 0) {
            if (errno == EINTR) continue;
            throw input_error(m_path.string(), place, "read failed at byte " + std::to_string(offset + done) + ": " +
                                                          errno_text());
        }
        if (got == 0)
            throw input_error(m_path.string(), place,
                              "file ends at byte " + std::to_string(offset + done) + " but " +
                                  std::to_string(out.size() - done) + " more bytes were expected (truncated file?)");
        done += static_cast<std::size_t>(got);
    }
}

void posix_file::write_all(std::span<const std::byte> bytes, std::uint64_t offset) const {
    std::size_t done = 0;
    while (done < bytes.size()) {
        const std::size_t want = std::min(bytes.size() - done, k_io_chunk_bytes);
        const ssize_t put = ::pwrite(m_fd, bytes.data() + done, want, static_cast<off_t>(offset + done));
        if (put < 0) {
            if (errno == EINTR) continue;
            throw error(m_path.string() + ": write failed at byte " + std::to_string(offset + done) + ": " +
                        errno_text());
        }
        done += static_cast<std::size_t>(put);
    }
}

void posix_file::sync_data() const {
    if (::fdatasync(m_fd) != 0) throw error(m_path.string() + ": fdatasync failed: " + errno_text());
}

void posix_file::close() {
    if (m_fd < 0) return;
    const int fd = std::exchange(m_fd, -1);
    // Linux closes the descriptor even when close() fails with EINTR, so it must not be retried.
    if (::close(fd) != 0 && errno != EINTR) throw error(m_path.string() + ": close failed: " + errno_text());
}

void sync_directory(const std::filesystem::path& dir) noexcept {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    (void)::fsync(fd);
    ::close(fd);
}

std::string read_text_file(const std::filesystem::path& path, std::uint64_t max_bytes) {
    const posix_file f = posix_file::open_read(path);
    const std::uint64_t size = f.size();
    if (size > max_bytes)
        throw input_error(path.string(), "", "file of " + std::to_string(size) + " bytes is larger than the limit of " +
                                                 std::to_string(max_bytes) + " bytes for this kind of file");
    std::string text(static_cast<std::size_t>(size), '\0');
    f.read_exact(std::as_writable_bytes(std::span(text.data(), text.size())), 0, "byte 0");
    return text;
}

void write_file_atomic(const std::filesystem::path& path, std::string_view text) {
    const auto temp = temporary_sibling(path);
    try {
        posix_file f = posix_file::create(temp);
        f.write_all(std::as_bytes(std::span(text.data(), text.size())), 0);
        f.sync_data();
        f.close();
        if (::rename(temp.c_str(), path.c_str()) != 0)
            throw error(path.string() + ": cannot rename " + temp.string() + " into place: " + errno_text());
    } catch (...) {
        std::error_code ec;
        std::filesystem::remove(temp, ec);
        throw;
    }
    sync_directory(path.has_parent_path() ? path.parent_path() : std::filesystem::path("."));
}

std::filesystem::path temporary_sibling(const std::filesystem::path& target) {
    // pid + counter keeps threads and processes of one host apart; the random word keeps apart hosts (or
    // containers, whose pids repeat) that share a filesystem.
    static std::atomic<std::uint64_t> counter{0};
    static const std::uint32_t salt = std::random_device{}();
    std::filesystem::path p = target;
    p += ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(salt) + "-" + std::to_string(counter.fetch_add(1));
    return p;
}

}  // namespace qbench::io_detail
