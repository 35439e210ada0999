// Reading results files: parse, check against the schema (json_check mirrors it), convert.
#include "checks.hpp"
#include "qbench/results/results_file.hpp"
#include "qbench/results/schema_version.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace qbench {

namespace detail {

namespace {

constexpr char k_schema_version_key[] = "schema_version";
constexpr char k_cells_key[] = "cells";
// Deeper documents are refused before anything recurses over them (nlohmann's dump and conversions recurse);
// a real results file is 5 levels deep, a gpu object from the CUDA layer a few more.
constexpr int k_max_depth = 32;

struct semver {
    long major = 0, minor = 0, patch = 0;
};

/// "MAJOR.MINOR.PATCH" with plain decimal numbers, nothing before or after.
bool parse_semver(const std::string& text, semver& out) {
    long parts[3] = {0, 0, 0};
    std::size_t pos = 0;
    for (int i = 0; i < 3; ++i) {
        const std::size_t start = pos;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9' && pos - start < 9)
            parts[i] = parts[i] * 10 + (text[pos++] - '0');
        if (pos == start) return false;
        if (i < 2) {
            if (pos >= text.size() || text[pos] != '.') return false;
            ++pos;
        }
    }
    if (pos != text.size()) return false;
    out = {parts[0], parts[1], parts[2]};
    return true;
}

/// "line L, column C" of the 1-based byte offset nlohmann reports for a parse error.
std::string line_column(std::string_view text, std::size_t byte) {
    const std::size_t end = std::min(byte == 0 ? 0 : byte - 1, text.size());
    std::size_t line = 1, column = 1;
    for (std::size_t i = 0; i < end; ++i) {
        if (text[i] == '\n') {
            ++line;
            column = 1;
        } else {
            ++column;
        }
    }
    return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

/// nlohmann's message without its "[json.exception.parse_error.101] parse error at line 1, column 2: " prefix.
std::string parse_error_message(const std::string& what) {
    const std::size_t column = what.find("column ");
    const std::size_t colon = column == std::string::npos ? std::string::npos : what.find(": ", column);
    return colon == std::string::npos ? what : what.substr(colon + 2);
}

void check_nullable_string(const ojson& object, std::string_view key, const json_check& check,
                           const std::string& ptr) {
    const ojson& v = check.member(object, key, ptr);
    if (!v.is_null()) check.string_value(v, json_check::child(ptr, key));
}

}  // namespace

void check_provenance(const ojson& doc, const json_check& check) {
    const std::string root;
    const auto at = [](std::string_view key) { return json_check::child("", key); };
    check.allowed_keys(doc, root,
                       {k_schema_version_key, "qbench_version", "git_commit", "git_dirty", "build", "host", "os",
                        "timestamp", "command_line", "matrix", "gpu", "merged_from", "resumed_by", k_cells_key});
    check.string_value(check.member(doc, k_schema_version_key, root), at(k_schema_version_key));
    check.string_value(check.member(doc, "qbench_version", root), at("qbench_version"));
    if (check.string_value(check.member(doc, "git_commit", root), at("git_commit")).empty())
        check.fail(at("git_commit"), "expected a commit hash or \"unknown\"");
    const ojson& dirty = check.member(doc, "git_dirty", root);
    if (!dirty.is_null()) check.boolean_value(dirty, at("git_dirty"));

    // Optional: written by `qbench merge`, one summary object per merged input (runner/merge.hpp).
    if (doc.contains("merged_from")) {
        const ojson& merged = doc.at("merged_from");
        check.expect_array(merged, at("merged_from"));
        for (std::size_t i = 0; i < merged.size(); ++i) check.expect_object(merged[i], json_check::child(at("merged_from"), i));
    }

    // Optional: written by `qbench run --resume`, one entry per resumption (results_file::note_resumed).
    if (doc.contains("resumed_by")) {
        const ojson& resumed = doc.at("resumed_by");
        check.expect_array(resumed, at("resumed_by"));
        for (std::size_t i = 0; i < resumed.size(); ++i) {
            const std::string place = json_check::child(at("resumed_by"), i);
            check.expect_object(resumed[i], place);
            check.allowed_keys(resumed[i], place, {"timestamp", "qbench_version", "git_commit", "git_dirty", "hostname", "command_line"});
        }
    }

    const ojson& build = check.member(doc, "build", root);
    check.expect_object(build, at("build"));
    check.allowed_keys(build, at("build"), {"type", "compiler", "cuda_compiler", "sanitized"});
    check.string_value(check.member(build, "type", at("build")), json_check::child(at("build"), "type"));
    check.string_value(check.member(build, "compiler", at("build")), json_check::child(at("build"), "compiler"));
    check_nullable_string(build, "cuda_compiler", check, at("build"));
    check.boolean_value(check.member(build, "sanitized", at("build")), json_check::child(at("build"), "sanitized"));

    const ojson& host = check.member(doc, "host", root);
    check.expect_object(host, at("host"));
    check.allowed_keys(host, at("host"), {"hostname", "cpu_model", "cores", "ram_bytes"});
    for (const char* key : {"hostname", "cpu_model"})
        check.string_value(check.member(host, key, at("host")), json_check::child(at("host"), key));
    for (const char* key : {"cores", "ram_bytes"})
        check.non_negative_integer(check.member(host, key, at("host")), json_check::child(at("host"), key));

    const ojson& os = check.member(doc, "os", root);
    check.expect_object(os, at("os"));
    check.allowed_keys(os, at("os"), {"name", "kernel", "machine"});
    for (const char* key : {"name", "kernel", "machine"})
        check.string_value(check.member(os, key, at("os")), json_check::child(at("os"), key));

    check.timestamp_value(check.member(doc, "timestamp", root), at("timestamp"));

    const ojson& argv = check.member(doc, "command_line", root);
    check.expect_array(argv, at("command_line"));
    for (std::size_t i = 0; i < argv.size(); ++i) check.string_value(argv[i], json_check::child(at("command_line"), i));

    const ojson& matrix = check.member(doc, "matrix", root);
    check.expect_object(matrix, at("matrix"));
    check.allowed_keys(matrix, at("matrix"), {"file", "yaml"});
    check_nullable_string(matrix, "file", check, at("matrix"));
    check_nullable_string(matrix, "yaml", check, at("matrix"));

    // The gpu object's keys belong to the CUDA layer (provenance.hpp lists them); only its type is ours.
    const ojson& gpu = check.member(doc, "gpu", root);
    if (!gpu.is_null()) check.expect_object(gpu, at("gpu"));
}

parsed_document parse_document(std::string_view text, const std::string& file_name) {
    ojson root;
    try {
        root = ojson::parse(text.begin(), text.end(), [&](int depth, ojson::parse_event_t event, ojson&) {
            if ((event == ojson::parse_event_t::object_start || event == ojson::parse_event_t::array_start) &&
                depth >= k_max_depth)
                throw input_error(file_name, "", "JSON nested deeper than " + std::to_string(k_max_depth) + " levels");
            return true;
        });
    } catch (const ojson::parse_error& e) {
        throw input_error(file_name, line_column(text, e.byte), "malformed JSON: " + parse_error_message(e.what()));
    } catch (const ojson::exception& e) {
        // e.g. out_of_range 406 for a number beyond double ("1e400"); nlohmann gives no position for those.
        const std::string what = e.what();
        const std::size_t end = what.find("] ");
        throw input_error(file_name, "", "malformed JSON: " + (end == std::string::npos ? what : what.substr(end + 2)));
    }

    const json_check strict(file_name, true);
    strict.expect_object(root, "");
    parsed_document out;

    // The version first: a file of another major version may differ anywhere, so nothing else is checked then.
    const std::string version_ptr = json_check::child("", k_schema_version_key);
    const std::string& version = strict.string_value(strict.member(root, k_schema_version_key, ""), version_ptr);
    semver v;
    if (!parse_semver(version, v)) strict.fail(version_ptr, "expected a version MAJOR.MINOR.PATCH, found '" + version + "'");
    if (v.major != k_results_schema_major)
        strict.fail(version_ptr, "schema version " + version + " is not readable by this qbench, which reads " +
                                     std::to_string(k_results_schema_major) + ".x (writes " +
                                     k_results_schema_version + ")");
    const bool newer_minor = v.minor > k_results_schema_minor;
    if (newer_minor)
        out.document.warnings.push_back(file_name + ": schema version " + version + " is newer than this qbench's " +
                                        k_results_schema_version + "; keys it does not know are kept unchecked");
    const json_check check(file_name, !newer_minor);

    check_provenance(root, check);
    const std::string cells_ptr = json_check::child("", k_cells_key);
    const ojson& cells = check.member(root, k_cells_key, "");
    check.expect_array(cells, cells_ptr);
    out.document.cells.reserve(cells.size());
    out.record_json.reserve(cells.size());
    for (std::size_t i = 0; i < cells.size(); ++i) {
        out.document.cells.push_back(check_record(cells[i], check, json_check::child(cells_ptr, i)));
        out.record_json.push_back(cells[i]);
    }

    out.document.provenance = ojson::object();
    for (const auto& item : root.items())
        if (item.key() != k_cells_key) out.document.provenance[item.key()] = item.value();
    return out;
}

std::string read_file_text(const std::string& name, struct stat* st) {
    const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw input_error(name, "", std::string("cannot open: ") + std::strerror(errno));
    struct stat own {};
    struct stat& info = st ? *st : own;
    if (::fstat(fd, &info) != 0 || S_ISDIR(info.st_mode)) {
        ::close(fd);
        throw input_error(name, "", "not a readable results file");
    }
    std::string text;
    char buf[1 << 16];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const int err = errno;
            ::close(fd);
            throw input_error(name, "", std::string("cannot read: ") + std::strerror(err));
        }
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return text;
}

}  // namespace detail

results_document parse_results(std::string_view text, const std::string& file_name) {
    return detail::parse_document(text, file_name).document;
}

results_document load_results(const std::filesystem::path& path) {
    return parse_results(detail::read_file_text(path.string(), nullptr), path.string());
}

}  // namespace qbench
