// Writes results files for the schema tests: valid.json (through results_file, several records of every outcome,
// every metric) and invalid_*.json, each breaking one rule the schema must enforce.
// Usage: write_sample_results OUT_DIR
#include "qbench/results/results_file.hpp"
#include "sample_records.hpp"

#include <cstdio>
#include <fstream>
#include <functional>

using namespace qbench;
using json = nlohmann::ordered_json;

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
        return 2;
    }
    try {
        const std::filesystem::path dir = argv[1];
        std::filesystem::create_directories(dir);
        const std::filesystem::path valid = dir / "valid.json";
        std::filesystem::remove(valid);
        results_file file = results_file::create(valid, test::sample_provenance());
        int i = 0;
        for (int round = 0; round < 3; ++round)
            for (outcome o : k_all_outcomes) file.append(test::sample_record(o, i++));

        const json good = results_to_json(load_results(valid));
        const std::vector<std::pair<const char*, std::function<void(json&)>>> breakages = {
            {"unknown_metric", [](json& d) { d["cells"][0]["metrics"]["load_time"] = 1.0; }},
            {"unknown_outcome", [](json& d) { d["cells"][1]["outcome"] = "crashed"; }},
            {"summary_without_samples", [](json& d) { d["cells"][0]["metrics"]["prefill_ms"].erase("samples"); }},
            {"fractional_bytes", [](json& d) { d["cells"][0]["metrics"]["weight_bytes"] = 1.5; }},
            {"error_without_reason", [](json& d) { d["cells"][4]["reason"] = ""; }},
            {"oom_kind_mismatch", [](json& d) { d["cells"][2]["metrics"]["oom"]["kind"] = "vram"; }},
            {"bad_timestamp", [](json& d) { d["cells"][0]["started_at"] = "2025-01-01 10:00"; }},
            {"unknown_top_level_key", [](json& d) { d["notes"] = "hand edit"; }},
            {"missing_provenance", [](json& d) { d.erase("host"); }},
            {"other_major_version", [](json& d) { d["schema_version"] = "2.0.0"; }},
            {"gptq_options_on_fp16", [](json& d) { d["cells"][0]["cell"]["gptq"] = d["cells"][1]["cell"]["gptq"]; }},
            {"unknown_cell_key", [](json& d) { d["cells"][0]["cell"]["colour"] = "red"; }},
        };
        for (const auto& [name, mutate] : breakages) {
            json bad = good;
            mutate(bad);
            std::ofstream(dir / (std::string("invalid_") + name + ".json")) << bad.dump(2) << '\n';
        }
        std::printf("wrote %s (%zu cells) and %zu invalid variants\n", valid.c_str(), file.records().size(),
                    breakages.size());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "write_sample_results: %s\n", e.what());
        return 1;
    }
}
