// Outcome names, timestamps, metric JSON shapes, the metric table against the schema file, provenance.
#include "qbench/results/metrics.hpp"
#include "qbench/results/outcome.hpp"
#include "qbench/results/provenance.hpp"
#include "qbench/results/schema_version.hpp"
#include "qbench/results/timestamp.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <set>

using namespace qbench;

TEST_CASE("outcome: every name round-trips and nothing else parses", "[cpu][results]") {
    std::set<std::string_view> names;
    for (outcome o : k_all_outcomes) {
        const auto back = parse_outcome(to_string(o));
        REQUIRE(back.has_value());
        CHECK(*back == o);
        names.insert(to_string(o));
    }
    CHECK(names == std::set<std::string_view>{"ok", "oom_vram", "oom_host", "unsupported", "error", "timeout"});
    CHECK_FALSE(parse_outcome("OK"));
    CHECK_FALSE(parse_outcome("oom"));
    CHECK_FALSE(parse_outcome(""));
}

TEST_CASE("timestamp: RFC 3339 UTC with milliseconds", "[cpu][results]") {
    using namespace std::chrono;
    CHECK(format_rfc3339_utc(system_clock::time_point{}) == "1970-01-01T00:00:00.000Z");
    const auto t = system_clock::time_point(seconds(1'709'164'800) + milliseconds(42));  // 2024-02-29 (leap day)
    CHECK(format_rfc3339_utc(t) == "2024-02-29T00:00:00.042Z");
    CHECK(format_rfc3339_utc(system_clock::time_point(milliseconds(-1))) == "1969-12-31T23:59:59.999Z");
    CHECK(is_rfc3339(now_rfc3339_utc()));

    CHECK(is_rfc3339("2025-01-31T12:00:00Z"));
    CHECK(is_rfc3339("2025-01-31T12:00:00.123456+05:30"));
    CHECK(is_rfc3339("2025-01-31T23:59:60-08:00"));  // a leap second is valid RFC 3339
    CHECK_FALSE(is_rfc3339("2025-01-31 12:00:00Z"));
    CHECK_FALSE(is_rfc3339("2025-01-31T12:00:00"));
    CHECK_FALSE(is_rfc3339("2025-13-01T12:00:00Z"));
    CHECK_FALSE(is_rfc3339("2025-01-31T24:00:00Z"));
    CHECK_FALSE(is_rfc3339("2025-01-31T12:00:00.Z"));
    CHECK_FALSE(is_rfc3339("2025-01-31T12:00:00Zjunk"));
    CHECK_FALSE(is_rfc3339("2025-01-31T12:00:00+0530"));
    CHECK_FALSE(is_rfc3339(""));
}

TEST_CASE("metrics: summary_to_json writes the documented keys in order, samples as measured", "[cpu][results]") {
    const std::vector<double> samples = {30, 10, 20, 40};
    const nlohmann::ordered_json j = summary_to_json(samples);
    std::vector<std::string> keys;
    for (const auto& item : j.items()) keys.push_back(item.key());
    CHECK(keys == std::vector<std::string>{"median", "p10", "p90", "mean", "stddev", "min", "max", "count", "samples"});
    CHECK(j["median"].get<double>() == Approx(25));
    CHECK(j["p10"].get<double>() == Approx(13));  // linear interpolation: 10 + 0.3 * (20 - 10)
    CHECK(j["p90"].get<double>() == Approx(37));
    CHECK(j["mean"].get<double>() == Approx(25));
    CHECK(j["stddev"].get<double>() == Approx(12.909944));  // Bessel
    CHECK(j["min"] == 10.0);
    CHECK(j["max"] == 40.0);
    CHECK(j["count"] == 4);
    CHECK(j["samples"] == nlohmann::ordered_json({30.0, 10.0, 20.0, 40.0}));

    const nlohmann::ordered_json empty = summary_to_json(std::vector<double>{});
    CHECK(empty["count"] == 0);
    CHECK(empty["samples"].empty());
}

TEST_CASE("metrics: oom_to_json carries the exception's figures and the budget", "[cpu][results]") {
    const out_of_memory vram(memory_kind::vram, 4096, 1024, "no room");
    const nlohmann::ordered_json j = oom_to_json(vram, 16384);
    CHECK(j == nlohmann::ordered_json(
                   {{"requested_bytes", 4096}, {"available_bytes", 1024}, {"budget_bytes", 16384}, {"kind", "vram"}}));
    const nlohmann::ordered_json h = oom_to_json(out_of_memory(memory_kind::host, 5, 2, "x"), 0);
    CHECK_FALSE(h.contains("budget_bytes"));
    CHECK(h["kind"] == "host");
}

TEST_CASE("metrics: names are unique, carry units, and match the JSON Schema exactly", "[cpu][results]") {
    std::set<std::string_view> names;
    for (const metric_info& m : k_metric_table) {
        CHECK(names.insert(m.name).second);
        CHECK(find_metric(m.name) == &m);
        // Ratios and objects have no unit; every other key says its unit in its name.
        const bool names_unit = m.name.ends_with("_s") || m.name.ends_with("_ms") || m.name.find("bytes") != m.name.npos;
        if (m.unit != "1" && !m.unit.empty()) CHECK(names_unit);
    }
    CHECK(find_metric("load_time") == nullptr);

    std::ifstream in(QBENCH_RESULTS_SCHEMA);
    REQUIRE(in.good());
    const nlohmann::json schema = nlohmann::json::parse(in);
    std::set<std::string_view> schema_metrics;
    for (const auto& item : schema["$defs"]["metrics"]["properties"].items()) {
        const std::string& key = item.key();
        const metric_info* m = find_metric(key);
        INFO("schema metric " << key);
        REQUIRE(m != nullptr);
        schema_metrics.insert(m->name);
        const std::string ref = item.value().value("$ref", "");
        switch (m->kind) {
            case metric_kind::number: CHECK((ref == "#/$defs/seconds" || ref == "#/$defs/ratio")); break;
            case metric_kind::integer: CHECK(ref == "#/$defs/bytes"); break;
            case metric_kind::summary: CHECK(ref == "#/$defs/summary"); break;
            case metric_kind::oom: CHECK(ref == "#/$defs/oom"); break;
            case metric_kind::quality: CHECK(ref == "#/$defs/quality"); break;
            case metric_kind::string_map: CHECK(ref == "#/$defs/kernel_paths"); break;
            case metric_kind::string: FAIL("no top-level string metric exists"); break;
        }
    }
    CHECK(schema_metrics == names);

    std::set<std::string> quality_schema, quality_table;
    for (const auto& item : schema["$defs"]["quality"]["properties"].items()) quality_schema.insert(item.key());
    for (const metric_info& f : k_quality_table) quality_table.insert(std::string(f.name));
    CHECK(quality_schema == quality_table);

    CHECK(schema["title"].get<std::string>().find(k_results_schema_version) != std::string::npos);
}

TEST_CASE("provenance: schema_version first, inputs as given, machine facts filled", "[cpu][results]") {
    provenance_inputs in;
    in.command_line = {"qbench", "run", "m.yaml"};
    in.matrix_file = "m.yaml";
    in.matrix_yaml = "models: [tiny]\n";
    in.gpu = {{"name", "NVIDIA H200"}};
    const nlohmann::ordered_json p = capture_provenance(in);

    REQUIRE(p.is_object());
    CHECK(p.begin().key() == "schema_version");
    CHECK(p["schema_version"] == k_results_schema_version);
    std::vector<std::string> keys;
    for (const auto& item : p.items()) keys.push_back(item.key());
    CHECK(keys == std::vector<std::string>{"schema_version", "qbench_version", "git_commit", "git_dirty", "build",
                                           "host", "os", "timestamp", "command_line", "matrix", "gpu"});
    CHECK(p["command_line"] == nlohmann::ordered_json({"qbench", "run", "m.yaml"}));
    CHECK(p["matrix"]["file"] == "m.yaml");
    CHECK(p["matrix"]["yaml"] == "models: [tiny]\n");
    CHECK(p["gpu"]["name"] == "NVIDIA H200");
    CHECK(p["host"]["cores"].get<std::uint64_t>() >= 1);
    CHECK(p["host"]["ram_bytes"].get<std::uint64_t>() > (std::uint64_t{1} << 20));
    CHECK_FALSE(p["os"]["kernel"].get<std::string>().empty());
    CHECK(is_rfc3339(p["timestamp"].get<std::string>()));

    const std::string commit = p["git_commit"];
    const bool hex40 = commit.size() == 40 && commit.find_first_not_of("0123456789abcdef") == std::string::npos;
    CHECK((hex40 || commit == "unknown"));
    CHECK((commit != "unknown" || p["git_dirty"].is_null()));
    CHECK(this_build().git_commit == commit);

    const nlohmann::ordered_json none = capture_provenance({});
    CHECK(none["matrix"]["file"].is_null());
    CHECK(none["matrix"]["yaml"].is_null());
    CHECK(none["gpu"].is_null());
}
