#include "qbench/runner/cache_cap.hpp"

#include <algorithm>
#include <system_error>

namespace qbench {

namespace fs = std::filesystem;

std::uint64_t directory_bytes(const fs::path& dir) {
    std::error_code ec;
    if (!fs::exists(dir, ec)) return 0;
    if (fs::is_regular_file(dir, ec)) return fs::file_size(dir, ec);
    std::uint64_t total = 0;
    for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (it->is_regular_file(ec)) total += it->file_size(ec);
    }
    return total;
}

void touch_cache_entry(const fs::path& entry) {
    std::error_code ec;
    fs::last_write_time(entry, fs::file_time_type::clock::now(), ec);  // best effort
}

std::uint64_t enforce_cache_cap(const fs::path& cache_dir, std::uint64_t max_bytes, const std::vector<fs::path>& keep) {
    if (max_bytes == 0) return 0;
    struct entry {
        fs::path path;
        fs::file_time_type used;
        std::uint64_t bytes;
    };
    std::vector<entry> entries;
    std::uint64_t total = 0;
    std::error_code ec;
    for (const char* kind : {"checkpoints", "artifacts"}) {
        const fs::path dir = cache_dir / kind;
        if (!fs::is_directory(dir, ec)) continue;
        for (const auto& e : fs::directory_iterator(dir, ec)) {
            const std::uint64_t bytes = directory_bytes(e.path());
            total += bytes;
            entries.push_back({e.path(), fs::last_write_time(e.path(), ec), bytes});
        }
    }
    std::sort(entries.begin(), entries.end(), [](const entry& a, const entry& b) { return a.used < b.used; });
    auto in_use = [&](const fs::path& p) {
        for (const auto& k : keep) {
            const auto kp = fs::weakly_canonical(k, ec), pp = fs::weakly_canonical(p, ec);
            // An entry is in use when it is, or contains, a kept path.
            if (kp == pp || kp.string().rfind(pp.string() + "/", 0) == 0) return true;
        }
        return false;
    };
    std::uint64_t freed = 0;
    for (const auto& e : entries) {
        if (total - freed <= max_bytes) break;
        if (in_use(e.path)) continue;
        fs::remove_all(e.path, ec);
        if (!ec) freed += e.bytes;
    }
    return freed;
}

}  // namespace qbench
