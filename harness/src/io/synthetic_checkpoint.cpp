#include "qbench/io/synthetic_checkpoint.hpp"

#include "posix_file.hpp"
#include "strict_json.hpp"

#include "qbench/common/errors.hpp"
#include "qbench/io/hf_config.hpp"
#include "qbench/io/sharded_checkpoint.hpp"

#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <future>
#include <sys/file.h>
#include <unistd.h>

namespace qbench {

namespace {

// An exclusive flock on a lock file beside the cache entry: the second process to arrive waits for the first to
// finish instead of generating the same gigabytes again. The rename below keeps things correct even without it
// (e.g. on a filesystem that ignores flock); the lock only avoids the duplicated work.
class file_lock {
public:
    explicit file_lock(const std::filesystem::path& path) {
        m_fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (m_fd < 0) return;  // best effort: proceed unlocked
        int rc = 0;
        while ((rc = ::flock(m_fd, LOCK_EX)) != 0 && errno == EINTR) {
        }
        if (rc != 0) {
            ::close(m_fd);
            m_fd = -1;
        }
    }
    /// False when locking was not possible (the rename still keeps the result correct).
    bool held() const { return m_fd >= 0; }
    ~file_lock() {
        if (m_fd >= 0) ::close(m_fd);  // closing releases the lock
    }
    file_lock(const file_lock&) = delete;
    file_lock& operator=(const file_lock&) = delete;

private:
    int m_fd = -1;
};

// What the cached tensors depend on. A mismatch means the catalog changed under an existing cache entry.
nlohmann::json marker_json(const model_config& m, std::uint64_t seed, std::uint64_t tensor_bytes) {
    nlohmann::json j;
    j["version"] = k_synthetic_checkpoint_version;
    j["model"] = m.name;
    j["seed"] = seed;
    j["hidden_size"] = m.hidden_size;
    j["intermediate_size"] = m.intermediate_size;
    j["num_layers"] = m.num_layers;
    j["num_heads"] = m.num_heads;
    j["num_kv_heads"] = m.num_kv_heads;
    j["vocab_size"] = m.vocab_size;
    j["tensor_bytes"] = tensor_bytes;
    return j;
}

void check_marker(const std::filesystem::path& dir, const nlohmann::json& expected) {
    const auto marker = dir / k_synthetic_complete_marker;
    const std::string text = io_detail::read_text_file(marker, 1'000'000);
    const auto found = io_detail::parse_json_strict(text, marker.string(), 0,
                                                    io_detail::json_place_style::line_column, "key");
    for (const auto& [key, want] : expected.items()) {
        const auto it = found.is_object() ? found.find(key) : found.end();
        if (!found.is_object() || it == found.end() || *it != want)
            throw input_error(marker.string(), "key '" + key + "'",
                              "the cached synthetic checkpoint was made with " + key + " = " +
                                  (found.is_object() && it != found.end() ? it->dump() : std::string("(absent)")) +
                                  ", but the model now has " + want.dump() + "; delete " + dir.string() +
                                  " to rebuild it");
    }
}

// config.json fields that do not affect the tensors (eps, rope_theta, token ids) may change in the catalog; keep
// the cached copy current rather than forcing a rebuild of gigabytes of identical weights.
void refresh_config(const std::filesystem::path& dir, const model_config& model) {
    const auto file = dir / "config.json";
    const std::string want = hf_config_json(model);
    try {
        if (io_detail::read_text_file(file, 10'000'000) == want) return;
    } catch (const input_error&) {
        // missing or unreadable: rewrite below
    }
    io_detail::write_file_atomic(file, want);
}

void build(const std::filesystem::path& dir, const model_config& model, std::uint64_t seed,
           std::vector<tensor_decl> decls, std::uint64_t max_shard_bytes, const nlohmann::json& marker) {
    const std::map<std::string, std::string> metadata{
        {"format", "pt"}, {"qbench_synthetic", "1"}, {"model", model.name}, {"seed", std::to_string(seed)}};
    sharded_stream_writer writer(dir, std::move(decls), metadata, max_shard_bytes);
    const std::vector<std::string> order = writer.file_order();

    // Two buffers: the next tensor is generated (on all cores) while the current one is written.
    std::vector<std::uint16_t> current, next;
    const auto generate = [&](const std::string& name, std::vector<std::uint16_t>& buf) {
        const tensor_decl& d = writer.decl(name);
        buf.resize(static_cast<std::size_t>(d.byte_size() / sizeof(std::uint16_t)));
        generate_synthetic_tensor(model.name, name, d.shape, seed, buf);
    };
    if (!order.empty()) generate(order.front(), current);
    for (std::size_t i = 0; i < order.size(); ++i) {
        std::future<void> pending;
        if (i + 1 < order.size())
            pending = std::async(std::launch::async, generate, std::cref(order[i + 1]), std::ref(next));
        writer.write(order[i], std::as_bytes(std::span(current)));
        if (pending.valid()) pending.get();
        current.swap(next);
    }
    writer.finish();
    write_hf_config(dir / "config.json", model);
    // Written last: its presence is what "complete" means.
    io_detail::write_file_atomic(dir / k_synthetic_complete_marker, marker.dump(2) + "\n");
    io_detail::sync_directory(dir);
}

}  // namespace

std::filesystem::path ensure_synthetic_checkpoint(const model_config& model, std::uint64_t seed,
                                                  const std::filesystem::path& cache_dir,
                                                  std::uint64_t max_shard_bytes) {
    std::vector<tensor_decl> decls = synthetic_tensor_decls(model);
    if (model.name.find('/') != std::string::npos || model.name.front() == '.')
        throw error("synthetic checkpoint: model name '" + model.name + "' cannot be used as a directory name");
    std::uint64_t tensor_bytes = 0;
    for (const auto& d : decls) tensor_bytes += d.byte_size();
    const auto marker = marker_json(model, seed, tensor_bytes);

    const std::string entry = model.name + "-seed" + std::to_string(seed) + "-v" +
                              std::to_string(k_synthetic_checkpoint_version);
    const std::filesystem::path dir = cache_dir / entry;
    const auto complete = [&] { return std::filesystem::exists(dir / k_synthetic_complete_marker); };
    const auto reuse = [&] {
        check_marker(dir, marker);
        refresh_config(dir, model);
        return dir;
    };
    if (complete()) return reuse();

    std::error_code ec;
    std::filesystem::create_directories(cache_dir, ec);
    if (ec) throw error(cache_dir.string() + ": cannot create the cache directory: " + ec.message());
    const file_lock lock(cache_dir / (entry + ".lock"));
    if (complete()) return reuse();  // another process finished it while we waited
    if (lock.held()) {
        // Holding the lock, no live process is building this entry: temporary directories left for it are
        // remains of a killed build (each can be gigabytes), safe to remove.
        const std::string stale_prefix = entry + ".tmp-";
        for (const auto& e : std::filesystem::directory_iterator(cache_dir, ec)) {
            if (e.path().filename().string().rfind(stale_prefix, 0) == 0) std::filesystem::remove_all(e.path(), ec);
        }
    }
    if (std::filesystem::exists(dir))
        throw input_error(dir.string(), "",
                          "exists but is not a complete synthetic checkpoint (no " +
                              std::string(k_synthetic_complete_marker) + "); delete it to rebuild");

    const std::filesystem::path temp = io_detail::temporary_sibling(dir);
    try {
        std::filesystem::create_directory(temp);
        build(temp, model, seed, std::move(decls), max_shard_bytes, marker);
        if (::rename(temp.c_str(), dir.c_str()) != 0) {
            // Lost a race with a process that could not take the lock: its directory is just as good.
            if ((errno == ENOTEMPTY || errno == EEXIST) && complete()) {
                std::filesystem::remove_all(temp, ec);
                return reuse();
            }
            throw error(dir.string() + ": cannot rename " + temp.string() + " into place: " + io_detail::errno_text());
        }
    } catch (...) {
        std::filesystem::remove_all(temp, ec);
        throw;
    }
    io_detail::sync_directory(cache_dir);
    return dir;
}

}  // namespace qbench
