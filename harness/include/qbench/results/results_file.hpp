#pragma once
/// Reading and writing results files: one JSON document per run, provenance (provenance.hpp) then "cells".
///
/// Writing is crash-safe: every append rewrites the whole file into "<file>.tmp" in the same directory, fsyncs it
/// and renames it over the file, so at any instant the file on disk is either the old or the new complete
/// document. Appends hold an exclusive flock on "<file>.lock" (removed again afterwards) and first reload the file
/// if another process changed it, so two processes appending to one file neither interleave nor lose records.
#include "qbench/results/record.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace qbench {

/// A results file as read.
struct results_document {
    nlohmann::ordered_json provenance;   ///< every top-level key except "cells", in file order
    std::vector<cell_record> cells;      ///< in file order
    std::vector<std::string> warnings;   ///< e.g. a newer minor schema version; the document is still usable
};

/// Parses and validates a results document. Throws input_error(file_name, place, message): place is
/// "line L, column C" for malformed JSON and a JSON pointer ("/cells/3/metrics/prefill_ms/count") otherwise.
/// A different major schema_version is an error; a newer minor one adds a warning and tolerates unknown keys.
results_document parse_results(std::string_view text, const std::string& file_name);
/// parse_results of the file's content; an unreadable file is an input_error too.
results_document load_results(const std::filesystem::path& path);

/// The document as JSON: provenance keys, then "cells" (record_to_json of each).
nlohmann::ordered_json results_to_json(const results_document& document);
/// The text qbench writes: indented like json.dump(2), but arrays of plain values (samples, command_line) stay on
/// one line so files stay short and diff well. Invalid UTF-8 in strings is replaced by U+FFFD.
std::string dump_results_json(const nlohmann::ordered_json& document);

/// An open results file that records are appended to, one cell at a time.
class results_file {
public:
    /// Creates `path` holding `provenance` and no cells. Refuses (input_error) if the file exists, so a finished
    /// run is never overwritten; the directory must exist.
    static results_file create(std::filesystem::path path, nlohmann::ordered_json provenance);
    /// Loads and validates an existing file (for --resume); appends go after its records.
    static results_file open_existing(std::filesystem::path path);

    /// Validates `record` (the same checks as the reader; input_error naming "/cells/<n>") and rewrites the file
    /// atomically with it appended. On any exception the file is as before and the record is not added.
    void append(const cell_record& record);
    /// As append(), but a record with the same config_hash is replaced where it stands (run --retry-failed), so a
    /// file never holds two records of one cell.
    void put(const cell_record& record);
    /// Appends `entry` (who resumed the run: timestamp, qbench version, git commit, host, command line) to the
    /// provenance's "resumed_by" list and rewrites the file, so records made by another build or machine than the
    /// one the top-level provenance names are never passed off as its own.
    void note_resumed(const nlohmann::ordered_json& entry);

    const std::filesystem::path& path() const noexcept { return m_path; }
    const nlohmann::ordered_json& provenance() const noexcept { return m_provenance; }
    /// The records in file order (as of the last load or append).
    const std::vector<cell_record>& records() const noexcept { return m_records; }
    /// Whether some record has this config_hash (--resume skips such cells, whatever their outcome).
    bool has_record_with_hash(std::string_view config_hash) const;
    /// Warnings from loading (newer minor schema version).
    const std::vector<std::string>& warnings() const noexcept { return m_warnings; }

private:
    /// Identity of the file as this object last wrote or read it, to notice another writer.
    struct file_stamp {
        dev_t device = 0;
        ino_t inode = 0;
        off_t size = 0;
        long long mtime_ns = 0;
        bool operator==(const file_stamp&) const = default;
    };

    results_file() = default;
    void reload();
    /// Under the lock: reload() when the file changed since this object last read or wrote it.
    void reload_if_changed();
    void write_out();

    std::filesystem::path m_path;
    nlohmann::ordered_json m_provenance;
    std::vector<cell_record> m_records;
    std::vector<nlohmann::ordered_json> m_record_json;  ///< records as stored: keys a newer minor version added survive
    std::vector<std::string> m_warnings;
    file_stamp m_stamp;
};

}  // namespace qbench
