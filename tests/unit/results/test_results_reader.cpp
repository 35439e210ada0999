// The reader on malformed files: each problem is one input_error naming the file and the JSON pointer (or the
// line and column of a syntax error).
#include "qbench/results/results_file.hpp"
#include "qbench/results/schema_version.hpp"
#include "sample_records.hpp"
#include "temp_dir.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <functional>

using namespace qbench;
using qbench::test::sample_record;

namespace {

/// A valid document: one record of every outcome.
nlohmann::ordered_json valid_document() {
    results_document doc;
    doc.provenance = test::sample_provenance();
    int i = 0;
    for (outcome o : k_all_outcomes) doc.cells.push_back(sample_record(o, i++));
    return results_to_json(doc);
}

struct failure {
    std::string place;
    std::string message;
};

/// The input_error parse_results throws for `text` (the test fails if none is thrown).
failure parse_failure(const std::string& text) {
    try {
        parse_results(text, "bad.json");
    } catch (const input_error& e) {
        CHECK(e.file() == "bad.json");
        CHECK(std::string(e.what()).rfind("bad.json", 0) == 0);
        return {e.place(), e.message()};
    }
    FAIL("parse_results accepted the document");
    return {};
}

failure mutated_failure(const std::function<void(nlohmann::ordered_json&)>& mutate) {
    nlohmann::ordered_json doc = valid_document();
    mutate(doc);
    return parse_failure(doc.dump(2));
}

}  // namespace

TEST_CASE("reader: a valid document parses with every record", "[cpu][results]") {
    const results_document doc = parse_results(valid_document().dump(), "good.json");
    CHECK(doc.cells.size() == k_all_outcomes.size());
    CHECK(doc.warnings.empty());
    CHECK(doc.provenance.begin().key() == "schema_version");
    CHECK_FALSE(doc.provenance.contains("cells"));
}

TEST_CASE("reader: malformed JSON names the line and column", "[cpu][results]") {
    const failure f = parse_failure("{\n  \"schema_version\": \"1.0.0\",\n  \"cells\": [,]\n}");
    CHECK(f.place == "line 3, column 13");
    CHECK(f.message.find("malformed JSON") != std::string::npos);
    CHECK(parse_failure("").message.find("malformed JSON") != std::string::npos);
    CHECK(parse_failure("{\"a\": 1} trailing").place.rfind("line 1, column", 0) == 0);
    CHECK(parse_failure("{\"schema_version\": 1e400}").message.find("overflow") != std::string::npos);
}

TEST_CASE("reader: structural problems name the JSON pointer", "[cpu][results]") {
    using j = nlohmann::ordered_json;
    CHECK(parse_failure("[]").message.find("expected an object") != std::string::npos);

    failure f = mutated_failure([](j& d) { d.erase("cells"); });
    CHECK(f.place.empty());
    CHECK(f.message == "missing required key 'cells'");

    f = mutated_failure([](j& d) { d["cells"][3].erase("outcome"); });
    CHECK(f.place == "/cells/3");
    CHECK(f.message == "missing required key 'outcome'");

    f = mutated_failure([](j& d) { d["cells"][0]["metrics"]["prefill_ms"]["count"] = "4"; });
    CHECK(f.place == "/cells/0/metrics/prefill_ms/count");
    CHECK(f.message.find("expected an integer >= 0") != std::string::npos);

    f = mutated_failure([](j& d) { d["cells"][0]["metrics"]["prefill_ms"]["count"] = 5; });
    CHECK(f.place == "/cells/0/metrics/prefill_ms/count");
    CHECK(f.message.find("samples holds 4") != std::string::npos);

    f = mutated_failure([](j& d) { d["cells"][0]["metrics"]["decode_tokens_per_s"]["samples"][2] = "fast"; });
    CHECK(f.place == "/cells/0/metrics/decode_tokens_per_s/samples/2");

    f = mutated_failure([](j& d) { d["cells"][0]["metrics"]["weight_bytes"] = 1.5; });
    CHECK(f.place == "/cells/0/metrics/weight_bytes");

    f = mutated_failure([](j& d) { d["cells"][0]["metrics"] = j::array(); });
    CHECK(f.place == "/cells/0/metrics");

    f = mutated_failure([](j& d) { d["cells"][0]["metrics"]["tokens/s"] = 1; });
    CHECK(f.place == "/cells/0/metrics/tokens~1s");  // RFC 6901 escaping
    CHECK(f.message.find("unknown metric") != std::string::npos);

    f = mutated_failure([](j& d) { d["cells"][0]["metrics"]["quality"]["top1_agreement"] = 1.5; });
    CHECK(f.place == "/cells/0/metrics/quality/top1_agreement");

    f = mutated_failure([](j& d) { d["cells"][0]["metrics"]["kernel_paths"]["decode"] = 3; });
    CHECK(f.place == "/cells/0/metrics/kernel_paths/decode");

    f = mutated_failure([](j& d) { d["cells"][2]["metrics"]["oom"].erase("requested_bytes"); });
    CHECK(f.place == "/cells/2/metrics/oom");

    f = mutated_failure([](j& d) { d["cells"][1]["outcome"] = "crashed"; });
    CHECK(f.place == "/cells/1/outcome");

    f = mutated_failure([](j& d) { d["cells"][1]["wall_s"] = -1; });
    CHECK(f.place == "/cells/1/wall_s");

    f = mutated_failure([](j& d) { d["cells"][1]["surprise"] = true; });
    CHECK(f.place == "/cells/1/surprise");

    f = mutated_failure([](j& d) { d["host"]["cores"] = "many"; });
    CHECK(f.place == "/host/cores");

    f = mutated_failure([](j& d) { d["gpu"] = "H200"; });
    CHECK(f.place == "/gpu");

    f = mutated_failure([](j& d) { d["command_line"][1] = 7; });
    CHECK(f.place == "/command_line/1");

    f = mutated_failure([](j& d) { d["extra"] = 1; });
    CHECK(f.place == "/extra");

    // The cell's own checks (qbench_config) are anchored under the record's pointer.
    f = mutated_failure([](j& d) { d["cells"][4]["cell"]["bits"] = 5; });
    CHECK(f.place.rfind("/cells/4/cell", 0) == 0);
    f = mutated_failure([](j& d) { d["cells"][4]["cell"] = "fp16"; });
    CHECK(f.place == "/cells/4/cell");

    // Nesting that would make recursive code overflow its stack is refused up front.
    CHECK(parse_failure(std::string(100000, '[') + std::string(100000, ']')).message.find("nested deeper") !=
          std::string::npos);
}

TEST_CASE("reader: schema versions: other major refused, newer minor warns and tolerates additions",
          "[cpu][results]") {
    using j = nlohmann::ordered_json;
    failure f = mutated_failure([](j& d) { d["schema_version"] = "2.0.0"; });
    CHECK(f.place == "/schema_version");
    CHECK(f.message.find("2.0.0") != std::string::npos);
    // Nothing else is checked in a file of another major version: its error is about the version.
    f = mutated_failure([](j& d) {
        d["schema_version"] = "2.0.0";
        d.erase("cells");
    });
    CHECK(f.place == "/schema_version");
    f = mutated_failure([](j& d) { d["schema_version"] = "0.9.0"; });
    CHECK(f.place == "/schema_version");
    f = mutated_failure([](j& d) { d["schema_version"] = "1.0"; });
    CHECK(f.place == "/schema_version");
    f = mutated_failure([](j& d) { d["schema_version"] = 1; });
    CHECK(f.place == "/schema_version");
    f = mutated_failure([](j& d) { d.erase("schema_version"); });
    CHECK(f.message == "missing required key 'schema_version'");

    j doc = valid_document();
    doc["schema_version"] = "1." + std::to_string(k_results_schema_minor + 1) + ".0";
    doc["energy"] = {{"joules", 3}};
    doc["cells"][0]["metrics"]["energy_j"] = 12.5;
    const results_document newer = parse_results(doc.dump(), "newer.json");
    REQUIRE(newer.warnings.size() == 1);
    CHECK(newer.warnings[0].find("newer") != std::string::npos);
    CHECK(newer.cells[0].metrics["energy_j"] == 12.5);  // kept, unchecked
    CHECK(newer.provenance["energy"]["joules"] == 3);
    // Known keys are still checked in a newer minor file.
    doc["cells"][0]["metrics"]["vram_peak_bytes"] = "big";
    CHECK_THROWS_AS(parse_results(doc.dump(), "newer.json"), input_error);

    doc = valid_document();
    doc["schema_version"] = "1.0.7";  // patch versions change nothing in files
    CHECK(parse_results(doc.dump(), "patch.json").warnings.empty());
}

TEST_CASE("reader: files that cannot be read are input errors naming them", "[cpu][results]") {
    test::temp_dir dir;
    try {
        load_results(dir / "absent.json");
        FAIL("no error");
    } catch (const input_error& e) {
        CHECK(e.file() == (dir / "absent.json").string());
        CHECK(e.message().find("cannot open") != std::string::npos);
    }
    CHECK_THROWS_AS(load_results(dir.path()), input_error);  // a directory
}

TEST_CASE("results_file: open_existing of a newer minor keeps unknown keys when appending", "[cpu][results]") {
    test::temp_dir dir;
    const auto path = dir / "newer.json";
    nlohmann::ordered_json doc = valid_document();
    doc["schema_version"] = "1." + std::to_string(k_results_schema_minor + 1) + ".0";
    doc["cells"][0]["metrics"]["energy_j"] = 12.5;
    {
        std::ofstream out(path);
        out << doc.dump(2);
    }
    results_file file = results_file::open_existing(path);
    CHECK(file.warnings().size() == 1);
    file.append(sample_record(outcome::ok, 42));
    const results_document back = parse_results(dump_results_json(doc), "x");  // still readable as written
    const results_document now = load_results(path);
    CHECK(now.cells.size() == back.cells.size() + 1);
    CHECK(now.cells[0].metrics["energy_j"] == 12.5);
}
