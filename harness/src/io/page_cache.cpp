#include "qbench/io/page_cache.hpp"

#include <cerrno>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <vector>

namespace qbench {

namespace {

bool evict_file(const std::filesystem::path& file) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = true;
    // tmpfs and ramfs have no backing store: their pages cannot leave memory, so a "cold" read is impossible there.
    struct statfs fs {};
    if (::fstatfs(fd, &fs) != 0 || fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC) ok = false;
    // Dirty pages are not dropped by DONTNEED; write them back first (fdatasync works on a read-only descriptor).
    if (ok && ::fdatasync(fd) != 0 && errno != EINVAL) ok = false;
    if (ok && ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) ok = false;
    ::close(fd);
    return ok;
}

}  // namespace

bool evict_from_page_cache(const std::filesystem::path& path) {
    std::error_code ec;
    const auto st = std::filesystem::status(path, ec);
    if (ec) return false;
    if (std::filesystem::is_regular_file(st)) return evict_file(path);
    if (!std::filesystem::is_directory(st)) return false;
    bool ok = true;
    std::filesystem::recursive_directory_iterator it(path, ec), end;
    if (ec) return false;
    for (; it != end; it.increment(ec)) {
        if (ec) return false;
        if (it->is_regular_file(ec) && !evict_file(it->path())) ok = false;
    }
    return ok && !ec;
}

std::optional<double> page_cache_resident_fraction(const std::filesystem::path& file) {
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        ::close(fd);
        return std::nullopt;
    }
    if (st.st_size == 0) {
        ::close(fd);
        return 1.0;
    }
    const auto size = static_cast<std::size_t>(st.st_size);
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (map == MAP_FAILED) return std::nullopt;
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    std::vector<unsigned char> vec((size + page - 1) / page);
    std::optional<double> result;
    if (::mincore(map, size, vec.data()) == 0) {
        std::size_t resident = 0;
        for (unsigned char v : vec) resident += v & 1u;
        result = static_cast<double>(resident) / static_cast<double>(vec.size());
    }
    ::munmap(map, size);
    return result;
}

}  // namespace qbench
