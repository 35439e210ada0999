// results_file: round trip, create/resume, append validation, crash safety, two writers.
#include "qbench/results/results_file.hpp"
#include "qbench/results/schema_version.hpp"
#include "sample_records.hpp"
#include "temp_dir.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <fstream>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

using namespace qbench;
using qbench::test::sample_provenance;
using qbench::test::sample_record;

namespace {

std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

/// Every outcome, several times each, in a fixed order.
std::vector<cell_record> every_outcome(int repeats) {
    std::vector<cell_record> records;
    int i = 0;
    for (int r = 0; r < repeats; ++r)
        for (outcome o : k_all_outcomes) records.push_back(sample_record(o, i++));
    return records;
}

void check_same(const cell_record& a, const cell_record& b) {
    CHECK(cell_to_json(a.cell) == cell_to_json(b.cell));
    CHECK(a.config_hash == b.config_hash);
    CHECK(a.outcome == b.outcome);
    CHECK(a.reason == b.reason);
    CHECK(a.started_at == b.started_at);
    CHECK(a.finished_at == b.finished_at);
    CHECK(a.wall_s == b.wall_s);
    CHECK(a.device == b.device);
    CHECK(a.metrics == b.metrics);
}

/// A child process that appends `count` records (seeded by `first`) to `path`, then exits without unwinding.
pid_t spawn_appender(const std::filesystem::path& path, int first, int count) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        int status = 0;
        try {
            results_file file = results_file::open_existing(path);
            for (int i = first; i < first + count; ++i) file.append(sample_record(outcome::ok, i));
        } catch (...) {
            status = 1;
        }
        ::_exit(status);
    }
    return pid;
}

}  // namespace

TEST_CASE("results_file: records round-trip through the file in order", "[cpu][results]") {
    test::temp_dir dir;
    const auto path = dir / "run.json";
    const std::vector<cell_record> records = every_outcome(2);
    const nlohmann::ordered_json provenance = sample_provenance();
    {
        results_file file = results_file::create(path, provenance);
        for (const cell_record& r : records) file.append(r);
        CHECK(file.records().size() == records.size());
    }
    const std::string text = slurp(path);
    CHECK(text.rfind("{\n  \"schema_version\": \"1.1.0\",\n", 0) == 0);  // the first key of the file
    CHECK(text.find("\"samples\": [") != std::string::npos);              // arrays of numbers stay on one line
    CHECK_FALSE(std::filesystem::exists(path.string() + ".tmp"));
    CHECK_FALSE(std::filesystem::exists(path.string() + ".lock"));

    const results_document doc = load_results(path);
    CHECK(doc.warnings.empty());
    CHECK(doc.provenance == provenance);
    REQUIRE(doc.cells.size() == records.size());
    for (std::size_t i = 0; i < records.size(); ++i) {
        INFO("record " << i);
        check_same(doc.cells[i], records[i]);
    }

    // The writer's text is a fixed point: parse, serialize, and get the same bytes.
    CHECK(dump_results_json(results_to_json(doc)) == text);
    CHECK(dump_results_json(results_to_json(parse_results(text, "again"))) == text);
}

TEST_CASE("results_file: create refuses an existing file and a foreign schema version", "[cpu][results]") {
    test::temp_dir dir;
    const auto path = dir / "run.json";
    results_file::create(path, sample_provenance()).append(sample_record(outcome::ok, 0));
    const std::string before = slurp(path);
    try {
        results_file::create(path, sample_provenance());
        FAIL("create overwrote an existing file");
    } catch (const input_error& e) {
        CHECK(e.file() == path.string());
        CHECK(e.message().find("already exists") != std::string::npos);
    }
    CHECK(slurp(path) == before);

    nlohmann::ordered_json old = sample_provenance();
    old["schema_version"] = "0.9.0";
    CHECK_THROWS_AS(results_file::create(dir / "other.json", old), input_error);
    nlohmann::ordered_json broken = sample_provenance();
    broken.erase("host");
    CHECK_THROWS_AS(results_file::create(dir / "other.json", broken), input_error);
    CHECK_FALSE(std::filesystem::exists(dir / "other.json"));
    CHECK_THROWS_AS(results_file::create(dir / "missing-dir" / "x.json", sample_provenance()), qbench::error);
}

TEST_CASE("results_file: resume finds recorded cells by config hash", "[cpu][results]") {
    test::temp_dir dir;
    const auto path = dir / "run.json";
    const cell_record a = sample_record(outcome::ok, 1);
    const cell_record b = sample_record(outcome::oom_vram, 2);
    const cell_record c = sample_record(outcome::ok, 3);
    REQUIRE(a.config_hash != c.config_hash);
    {
        results_file file = results_file::create(path, sample_provenance());
        CHECK_FALSE(file.has_record_with_hash(a.config_hash));
        file.append(a);
        file.append(b);
        CHECK(file.has_record_with_hash(a.config_hash));
    }
    results_file resumed = results_file::open_existing(path);
    CHECK(resumed.has_record_with_hash(a.config_hash));
    CHECK(resumed.has_record_with_hash(b.config_hash));  // any outcome counts as done
    CHECK_FALSE(resumed.has_record_with_hash(c.config_hash));
    CHECK_FALSE(resumed.has_record_with_hash(""));
    resumed.append(c);
    const results_document doc = load_results(path);
    REQUIRE(doc.cells.size() == 3);
    CHECK(doc.cells[2].config_hash == c.config_hash);
    CHECK(resumed.provenance() == doc.provenance);
}

TEST_CASE("results_file: append refuses a record the reader would refuse, leaving the file alone", "[cpu][results]") {
    test::temp_dir dir;
    const auto path = dir / "run.json";
    results_file file = results_file::create(path, sample_provenance());
    file.append(sample_record(outcome::ok, 0));
    const std::string before = slurp(path);

    struct bad_case {
        const char* name;
        cell_record record;
        const char* place;
    };
    std::vector<bad_case> cases;
    cell_record r = sample_record(outcome::ok, 1);
    r.metrics[metric::k_prefill_ms]["mean"] = std::nan("");
    cases.push_back({"NaN in a summary", r, "/cells/1/metrics/prefill_ms/mean"});
    r = sample_record(outcome::ok, 1);
    r.metrics["load_time"] = 1.0;
    cases.push_back({"metric without unit", r, "/cells/1/metrics/load_time"});
    r = sample_record(outcome::ok, 1);
    r.metrics[metric::k_vram_peak_bytes] = -5;
    cases.push_back({"negative bytes", r, "/cells/1/metrics/vram_peak_bytes"});
    r = sample_record(outcome::error, 1);
    r.reason.clear();
    cases.push_back({"error without reason", r, "/cells/1/reason"});
    r = sample_record(outcome::ok, 1);
    r.started_at = "yesterday";
    cases.push_back({"bad timestamp", r, "/cells/1/started_at"});
    r = sample_record(outcome::ok, 1);
    r.config_hash.clear();
    cases.push_back({"no config hash", r, "/cells/1/config_hash"});
    r = sample_record(outcome::oom_host, 1);
    r.metrics[metric::k_oom][metric::k_kind] = "vram";
    cases.push_back({"oom kind against outcome", r, "/cells/1/metrics/oom"});
    r = sample_record(outcome::ok, 1);
    r.device = "tpu";
    cases.push_back({"unknown device", r, "/cells/1/device"});

    for (const bad_case& c : cases) {
        INFO(c.name);
        try {
            file.append(c.record);
            FAIL("accepted");
        } catch (const input_error& e) {
            CHECK(e.file() == path.string());
            CHECK(e.place() == c.place);
        }
        CHECK(file.records().size() == 1);
    }
    CHECK(slurp(path) == before);
}

TEST_CASE("results_file: a writer killed at any moment leaves a valid file with a prefix of its records",
          "[cpu][results]") {
    test::temp_dir dir;
    const auto path = dir / "run.json";
    results_file::create(path, sample_provenance());
    // Kill the appender at staggered instants: early ones hit it mid-write of some append.
    std::size_t last = 0;
    for (int round = 0; round < 6; ++round) {
        const pid_t pid = spawn_appender(path, 1000 * round, 400);
        REQUIRE(pid > 0);
        ::usleep(static_cast<useconds_t>(3000 + 7000 * round));
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);

        const results_document doc = load_results(path);  // must not throw: old or new file, never a torn one
        CHECK(doc.cells.size() >= last);
        last = doc.cells.size();
        // Each round's records follow the previous rounds' records, in order.
        for (std::size_t i = 1; i < doc.cells.size(); ++i)
            CHECK(doc.cells[i].cell.seed > doc.cells[i - 1].cell.seed);
    }
    // A later writer takes over the lock the killed one held.
    results_file again = results_file::open_existing(path);
    again.append(sample_record(outcome::ok, 99999));
    CHECK(load_results(path).cells.size() == last + 1);
}

TEST_CASE("results_file: two processes appending to one file keep every record", "[cpu][results]") {
    test::temp_dir dir;
    const auto path = dir / "run.json";
    results_file::create(path, sample_provenance());
    constexpr int n = 25;
    const pid_t a = spawn_appender(path, 0, n);
    const pid_t b = spawn_appender(path, 10000, n);
    REQUIRE(a > 0);
    REQUIRE(b > 0);
    int status_a = 0, status_b = 0;
    ::waitpid(a, &status_a, 0);
    ::waitpid(b, &status_b, 0);
    CHECK((WIFEXITED(status_a) && WEXITSTATUS(status_a) == 0));
    CHECK((WIFEXITED(status_b) && WEXITSTATUS(status_b) == 0));

    const results_document doc = load_results(path);
    REQUIRE(doc.cells.size() == 2 * n);
    std::vector<std::uint64_t> from_a, from_b;
    for (const cell_record& r : doc.cells) (r.cell.seed < 10000 ? from_a : from_b).push_back(r.cell.seed);
    REQUIRE(from_a.size() == n);
    REQUIRE(from_b.size() == n);
    for (int i = 0; i < n; ++i) {
        CHECK(from_a[i] == static_cast<std::uint64_t>(i));
        CHECK(from_b[i] == static_cast<std::uint64_t>(10000 + i));
    }
}
