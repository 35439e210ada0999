// Writing results files: create, append atomically (temp file + fsync + rename under a flock), reload on change.
#include "qbench/results/results_file.hpp"

#include "checks.hpp"
#include "qbench/results/schema_version.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace qbench {

namespace {

[[noreturn]] void fail_io(const std::string& file, const std::string& what, int err) {
    throw error(file + ": " + what + ": " + std::strerror(err));
}

/// An exclusive flock on `path`, created on demand and removed again before it is released, so no stray lock
/// files stay beside the results. Removing it is safe because a locker checks, after locking, that the file it
/// holds is still the one at `path`; if not (it was removed meanwhile), it locks the new one instead.
class lock_file {
public:
    explicit lock_file(std::string path) : m_path(std::move(path)) {
        for (;;) {
            m_fd = ::open(m_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
            if (m_fd < 0) fail_io(m_path, "cannot create lock file", errno);
            while (::flock(m_fd, LOCK_EX) != 0) {
                if (errno == EINTR) continue;
                const int err = errno;
                ::close(m_fd);
                fail_io(m_path, "cannot lock", err);
            }
            struct stat held {}, current {};
            if (::fstat(m_fd, &held) == 0 && ::stat(m_path.c_str(), &current) == 0 && held.st_ino == current.st_ino &&
                held.st_dev == current.st_dev)
                return;
            ::close(m_fd);
        }
    }
    ~lock_file() {
        ::unlink(m_path.c_str());  // while still holding the lock, see above
        ::close(m_fd);
    }
    lock_file(const lock_file&) = delete;
    lock_file& operator=(const lock_file&) = delete;

private:
    std::string m_path;
    int m_fd = -1;
};

/// Replaces `path` by `text` so that a crash at any moment leaves the old or the new content, never a mix:
/// the text goes to "<path>.tmp" in the same directory (rename is atomic only within a file system), is fsynced,
/// renamed over `path`, and the directory is fsynced so the rename itself survives a power cut.
void write_atomically(const std::filesystem::path& path, const std::string& text) {
    const std::string name = path.string();
    const std::string tmp = name + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail_io(tmp, "cannot create", errno);
    const auto give_up = [&](const char* what) {
        const int err = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        fail_io(tmp, what, err);
    };
    std::size_t done = 0;
    while (done < text.size()) {
        const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) give_up("cannot write");
        done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0) give_up("cannot fsync");
    if (::close(fd) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        fail_io(tmp, "cannot close", err);
    }
    if (::rename(tmp.c_str(), name.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        fail_io(name, "cannot rename the new version into place", err);
    }
    const std::filesystem::path parent = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    const int dir = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        ::fsync(dir);  // best effort: some file systems refuse fsync on directories
        ::close(dir);
    }
}

std::string lock_path(const std::filesystem::path& path) { return path.string() + ".lock"; }

/// The identity fields of `st` (a template only because results_file::file_stamp is private).
template <class Stamp>
Stamp stamp_of(const struct stat& st) {
    return {st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec};
}

}  // namespace

results_file results_file::create(std::filesystem::path path, nlohmann::ordered_json provenance) {
    const std::string name = path.string();
    const detail::json_check check(name, true);
    check.expect_object(provenance, "");
    if (provenance.contains("cells")) check.fail("/cells", "provenance must not contain cells");
    detail::check_provenance(provenance, check);
    const std::string& version = provenance["schema_version"].get_ref<const std::string&>();
    if (version != k_results_schema_version)
        check.fail("/schema_version", "this qbench writes schema version " + std::string(k_results_schema_version) +
                                          ", not " + version);

    results_file file;
    file.m_path = std::move(path);
    // schema_version leads the file whatever order the caller built the object in.
    file.m_provenance = nlohmann::ordered_json::object();
    file.m_provenance["schema_version"] = version;
    for (const auto& item : provenance.items())
        if (item.key() != "schema_version") file.m_provenance[item.key()] = item.value();

    lock_file lock(lock_path(file.m_path));
    // Checked under the lock, so of two runs started on one name exactly one gets it.
    struct stat existing {};
    if (::stat(name.c_str(), &existing) == 0)
        throw input_error(name, "", "already exists; resume it or choose another file name");
    file.write_out();
    return file;
}

results_file results_file::open_existing(std::filesystem::path path) {
    results_file file;
    file.m_path = std::move(path);
    file.reload();
    return file;
}

void results_file::reload_if_changed() {
    // Another process appended since we last read or wrote: keep its records. A file removed behind our back is
    // written again from memory, so nothing recorded is lost.
    struct stat st {};
    if (::stat(m_path.c_str(), &st) == 0 && stamp_of<file_stamp>(st) != m_stamp) reload();
}

void results_file::reload() {
    struct stat st {};
    const std::string name = m_path.string();
    detail::parsed_document parsed = detail::parse_document(detail::read_file_text(name, &st), name);
    m_provenance = std::move(parsed.document.provenance);
    m_records = std::move(parsed.document.cells);
    m_record_json = std::move(parsed.record_json);
    m_warnings = std::move(parsed.document.warnings);
    m_stamp = stamp_of<file_stamp>(st);
}

void results_file::write_out() {
    nlohmann::ordered_json doc = m_provenance;
    doc["cells"] = nlohmann::ordered_json::array();
    for (const auto& j : m_record_json) doc["cells"].push_back(j);
    write_atomically(m_path, dump_results_json(doc));
    struct stat st {};
    if (::stat(m_path.c_str(), &st) == 0)
        m_stamp = stamp_of<file_stamp>(st);
}

void results_file::append(const cell_record& record) {
    const std::string name = m_path.string();
    nlohmann::ordered_json j = record_to_json(record);
    // Checked before anything is touched: a record the reader would refuse must not reach the file.
    cell_record checked =
        detail::check_record(j, detail::json_check(name, true), "/cells/" + std::to_string(m_records.size()));

    lock_file lock(lock_path(m_path));
    reload_if_changed();
    // A file removed behind our back is written again from memory: nothing recorded is lost.
    m_record_json.push_back(std::move(j));
    m_records.push_back(std::move(checked));
    try {
        write_out();
    } catch (...) {
        m_record_json.pop_back();
        m_records.pop_back();
        throw;
    }
}

void results_file::put(const cell_record& record) {
    {
        lock_file lock(lock_path(m_path));
        reload_if_changed();
        const auto it = std::find_if(m_records.begin(), m_records.end(),
                                     [&](const cell_record& r) { return r.config_hash == record.config_hash; });
        if (it != m_records.end()) {
            const auto index = static_cast<std::size_t>(it - m_records.begin());
            nlohmann::ordered_json j = record_to_json(record);
            cell_record checked =
                detail::check_record(j, detail::json_check(m_path.string(), true), "/cells/" + std::to_string(index));
            std::swap(m_record_json[index], j);
            std::swap(m_records[index], checked);
            try {
                write_out();
            } catch (...) {
                std::swap(m_record_json[index], j);
                std::swap(m_records[index], checked);
                throw;
            }
            return;
        }
    }
    append(record);
}

void results_file::note_resumed(const nlohmann::ordered_json& entry) {
    lock_file lock(lock_path(m_path));
    reload_if_changed();
    const nlohmann::ordered_json before = m_provenance;
    if (!m_provenance.contains("resumed_by")) m_provenance["resumed_by"] = nlohmann::ordered_json::array();
    m_provenance["resumed_by"].push_back(entry);
    try {
        detail::check_provenance(m_provenance, detail::json_check(m_path.string(), true));
        write_out();
    } catch (...) {
        m_provenance = before;
        throw;
    }
}

bool results_file::has_record_with_hash(std::string_view config_hash) const {
    return std::any_of(m_records.begin(), m_records.end(),
                       [&](const cell_record& r) { return r.config_hash == config_hash; });
}

nlohmann::ordered_json results_to_json(const results_document& document) {
    nlohmann::ordered_json j = document.provenance;
    nlohmann::ordered_json cells = nlohmann::ordered_json::array();
    for (const cell_record& r : document.cells) cells.push_back(record_to_json(r));
    j["cells"] = std::move(cells);
    return j;
}

namespace {

bool all_scalars(const nlohmann::ordered_json& array) {
    for (const auto& v : array)
        if (v.is_structured()) return false;
    return true;
}

std::string scalar_text(const nlohmann::ordered_json& j) {
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

void dump_value(std::string& out, const nlohmann::ordered_json& j, std::size_t indent) {
    if (j.is_object() && !j.empty()) {
        out += "{\n";
        bool first = true;
        for (const auto& item : j.items()) {
            if (!first) out += ",\n";
            first = false;
            out.append(indent + 2, ' ');
            out += scalar_text(nlohmann::ordered_json(item.key()));
            out += ": ";
            dump_value(out, item.value(), indent + 2);
        }
        out += '\n';
        out.append(indent, ' ');
        out += '}';
    } else if (j.is_array() && !j.empty() && !all_scalars(j)) {
        out += "[\n";
        bool first = true;
        for (const auto& v : j) {
            if (!first) out += ",\n";
            first = false;
            out.append(indent + 2, ' ');
            dump_value(out, v, indent + 2);
        }
        out += '\n';
        out.append(indent, ' ');
        out += ']';
    } else if (j.is_array() && !j.empty()) {
        out += '[';
        bool first = true;
        for (const auto& v : j) {
            if (!first) out += ", ";
            first = false;
            out += scalar_text(v);
        }
        out += ']';
    } else {
        out += scalar_text(j);
    }
}

}  // namespace

std::string dump_results_json(const nlohmann::ordered_json& document) {
    std::string out;
    dump_value(out, document, 0);
    out += '\n';
    return out;
}

}  // namespace qbench
