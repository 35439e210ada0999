#include "qbench/runner/merge.hpp"

#include "qbench/common/errors.hpp"

#include <map>

namespace qbench {

namespace {
nlohmann::ordered_json field_or_null(const nlohmann::ordered_json& j, const char* key) {
    return j.contains(key) ? j.at(key) : nlohmann::ordered_json(nullptr);
}

nlohmann::ordered_json provenance_summary(const std::filesystem::path& file, const nlohmann::ordered_json& p) {
    nlohmann::ordered_json s;
    s["file"] = file.filename().string();
    s["timestamp"] = field_or_null(p, "timestamp");
    s["git_commit"] = field_or_null(p, "git_commit");
    s["hostname"] = p.contains("host") ? field_or_null(p.at("host"), "hostname") : nullptr;
    // The CUDA layer names the device "device_name"; "name" is the key provenance.hpp suggests.
    const auto& gpu = p.contains("gpu") ? p.at("gpu") : nlohmann::ordered_json(nullptr);
    s["gpu_name"] = !gpu.is_object() ? nullptr : gpu.contains("name") ? gpu.at("name") : field_or_null(gpu, "device_name");
    s["command_line"] = field_or_null(p, "command_line");
    // A shard continued by other builds or machines keeps that record with it.
    if (p.contains("resumed_by")) s["resumed_by"] = p.at("resumed_by");
    return s;
}
}  // namespace

results_document merge_results(const std::vector<std::filesystem::path>& inputs) {
    if (inputs.size() < 2) throw input_error("command line", "merge", "give at least two results files to merge");
    results_document merged;
    std::map<std::string, std::string> owner;  // config_hash -> file that holds it
    nlohmann::ordered_json merged_from = nlohmann::ordered_json::array();
    for (const auto& path : inputs) {
        results_document doc = load_results(path);
        if (merged.provenance.is_null() || merged.provenance.empty()) {
            merged.provenance = doc.provenance;
            merged.provenance.erase("merged_from");
            merged.provenance.erase("resumed_by");  // kept per input in merged_from instead
        } else {
            // Shards of one study: the matrix must be the same text, or the union means nothing.
            const auto mine = field_or_null(merged.provenance, "matrix");
            const auto theirs = field_or_null(doc.provenance, "matrix");
            if (mine.contains("yaml") && theirs.contains("yaml") && mine.at("yaml") != theirs.at("yaml"))
                throw input_error(path.string(), "/matrix/yaml",
                                  "this file ran a different matrix than " + inputs.front().string());
        }
        if (doc.provenance.contains("merged_from"))
            for (const auto& m : doc.provenance.at("merged_from")) merged_from.push_back(m);
        else
            merged_from.push_back(provenance_summary(path, doc.provenance));
        for (std::size_t i = 0; i < doc.cells.size(); ++i) {
            auto& record = doc.cells[i];
            const auto [it, fresh] = owner.emplace(record.config_hash, path.string());
            if (!fresh)
                throw input_error(path.string(), "/cells/" + std::to_string(i),
                                  "cell '" + cell_label(record.cell) + "' (config_hash " + record.config_hash +
                                      ") is also recorded in " + it->second + "; refusing to merge duplicates");
            merged.cells.push_back(std::move(record));
        }
        for (auto& w : doc.warnings) merged.warnings.push_back(path.string() + ": " + w);
    }
    merged.provenance["merged_from"] = merged_from;
    return merged;
}

}  // namespace qbench
