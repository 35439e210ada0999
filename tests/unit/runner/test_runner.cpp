// The runner end to end on the CPU reference: cells in child processes, injected crashes and hangs, atomic records,
// shards, and a run killed with SIGKILL then resumed (nothing lost, nothing duplicated).
#include "qbench/common/errors.hpp"
#include "qbench/config/catalog.hpp"
#include "qbench/config/matrix.hpp"
#include "qbench/results/results_file.hpp"
#include "qbench/runner/child_process.hpp"
#include "qbench/runner/runner.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <fcntl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace qbench;

namespace {

std::filesystem::path fresh_dir(const std::string& name) {
    auto d = std::filesystem::temp_directory_path() / ("qbench-test-runner-" + name + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    return d;
}

// A small matrix on the tiny model: 2 frameworks x beams 1, 2, plus a bnb 3-bit cell (unsupported).
const char* k_matrix = R"(name: runner-test
matrix:
  model: tiny
  framework: [fp16, bnb]
  bits: [16, 4]
  beam: [1, 2]
  instance: local
  exclude:
    - {framework: fp16, bits: 4}
    - {framework: bnb, bits: 16}
  include:
    - {model: tiny, framework: bnb, bits: 3, beam: 1, instance: local}
generation:
  prompt_tokens: 6
  max_new_tokens: 4
  warmup: 0
  repetitions: 1
)";

struct fixture {
    std::filesystem::path dir = fresh_dir(Catch::getResultCapture().getCurrentTestName().substr(0, 12));
    catalog cat = load_catalog(default_configs_dir());
    matrix m = parse_matrix(k_matrix, "runner-test.yaml", cat);

    run_options options(const std::string& out_name) const {
        run_options o;
        o.output = dir / out_name;
        o.configs_dir = default_configs_dir();
        o.cache_dir = dir / "cache";
        o.device = "cpu";
        o.child_executable = QBENCH_BINARY;
        o.cell_timeout_s = 60;
        return o;
    }
};

std::map<std::string, int> hash_counts(const results_document& doc) {
    std::map<std::string, int> counts;
    for (const auto& r : doc.cells) ++counts[r.config_hash];
    return counts;
}

}  // namespace

TEST_CASE("runner: every cell gets a record; crashes and hangs stay in their cell", "[cpu][runner]") {
    fixture f;
    REQUIRE(f.m.cells.size() == 5);
    // fp16 beam 2 crashes, bnb nf4 beam 2 hangs; the other three must complete normally.
    ::setenv("QBENCH_FAULT_INJECTION", "fp16 16b beam2=crash;nf4 beam2=hang", 1);
    auto o = f.options("isolation.json");
    o.cell_timeout_s = 20;
    const run_summary s = run_matrix(f.m, f.m.cells, f.cat, o);
    ::unsetenv("QBENCH_FAULT_INJECTION");

    CHECK(s.recorded == 5);
    CHECK(s.failed == 2);
    CHECK_FALSE(s.interrupted);
    const results_document doc = load_results(o.output);
    REQUIRE(doc.cells.size() == 5);
    int ok = 0, unsupported = 0;
    for (const auto& r : doc.cells) {
        const std::string label = cell_label(r.cell);
        INFO(label << ": " << to_string(r.outcome) << " " << r.reason);
        if (label.find("fp16 16b beam2") != std::string::npos) {
            CHECK(r.outcome == outcome::error);
            // SIGSEGV, or SIGABRT where AddressSanitizer catches the fault first and aborts.
            CHECK(r.reason.find("killed by SIG") != std::string::npos);
        } else if (label.find("nf4 beam2") != std::string::npos) {
            CHECK(r.outcome == outcome::timeout);
        } else if (r.cell.bits == 3) {
            CHECK(r.outcome == outcome::unsupported);
            ++unsupported;
        } else {
            CHECK(r.outcome == outcome::ok);
            CHECK(r.metrics.contains("decode_tokens_per_s"));
            CHECK(r.metrics.contains("load_time_s"));
            ++ok;
        }
    }
    CHECK(ok == 2);
    CHECK(unsupported == 1);
}

TEST_CASE("runner: --resume --retry-failed reruns failed cells and replaces their records", "[cpu][runner]") {
    fixture f;
    ::setenv("QBENCH_FAULT_INJECTION", "fp16 16b beam2=crash", 1);
    auto o = f.options("retry.json");
    const run_summary first = run_matrix(f.m, f.m.cells, f.cat, o);
    ::unsetenv("QBENCH_FAULT_INJECTION");
    REQUIRE(first.failed == 1);
    const results_document before = load_results(o.output);
    REQUIRE(before.cells.size() == 5);

    // Plain --resume keeps the failure; --retry-failed runs exactly that cell again, in the same place.
    o.resume = true;
    const run_summary plain = run_matrix(f.m, f.m.cells, f.cat, o);
    CHECK(plain.skipped == 5);
    CHECK(plain.recorded == 0);
    o.retry_failed = true;
    const run_summary retried = run_matrix(f.m, f.m.cells, f.cat, o);
    CHECK(retried.skipped == 4);
    CHECK(retried.recorded == 1);
    CHECK(retried.failed == 0);
    const results_document after = load_results(o.output);
    REQUIRE(after.cells.size() == 5);
    // Each resumption is on record, with the build that did it.
    CHECK_FALSE(before.provenance.contains("resumed_by"));
    REQUIRE(after.provenance.contains("resumed_by"));
    CHECK(after.provenance["resumed_by"].size() == 2);
    CHECK(after.provenance["resumed_by"][1]["git_commit"] == after.provenance["git_commit"]);
    for (const auto& [hash, n] : hash_counts(after)) CHECK(n == 1);
    for (std::size_t i = 0; i < after.cells.size(); ++i) {
        CHECK(after.cells[i].config_hash == before.cells[i].config_hash);
        if (cell_label(after.cells[i].cell).find("fp16 16b beam2") != std::string::npos)
            CHECK(after.cells[i].outcome == outcome::ok);
        else
            CHECK(after.cells[i].started_at == before.cells[i].started_at);  // untouched
    }
}

TEST_CASE("runner: shards are deterministic, disjoint and cover the matrix", "[cpu][runner]") {
    fixture f;
    std::map<std::string, int> seen;
    for (std::int64_t i = 0; i < 3; ++i)
        for (const auto& c : select_shard(f.m.cells, {i, 3})) ++seen[cell_hash(c)];
    CHECK(seen.size() == f.m.cells.size());
    for (const auto& [hash, n] : seen) CHECK(n == 1);
    CHECK(select_shard(f.m.cells, {1, 3}).size() == select_shard(f.m.cells, {1, 3}).size());
    // The seed study in 8 shards: every artifact (e.g. one GPTQ quantization) is made on exactly one shard.
    const matrix study = load_matrix(default_configs_dir() / "minigpt4.yaml", f.cat);
    std::map<std::string, std::set<std::int64_t>> shards_of_group;
    std::size_t total = 0;
    for (std::int64_t i = 0; i < 8; ++i) {
        const auto slice = select_shard(study.cells, {i, 8});
        total += slice.size();
        CHECK(slice.size() >= 18);  // 21 groups of 9 cells dealt over 8 shards: 2 or 3 groups each
        for (const auto& c : slice) shards_of_group[artifact_group_key(c)].insert(i);
    }
    CHECK(total == study.cells.size());
    CHECK(shards_of_group.size() == 21);
    for (const auto& [key, where] : shards_of_group) CHECK(where.size() == 1);
    CHECK_THROWS_AS(parse_shard("3/3", "--shard"), input_error);
    CHECK_THROWS_AS(parse_shard("x", "--shard"), input_error);
    CHECK(parse_shard("2/5", "--shard").index == 2);
}

TEST_CASE("runner: a run killed with SIGKILL and resumed loses and duplicates no cell", "[cpu][runner]") {
    fixture f;
    const auto out = f.dir / "killed.json";
    const auto matrix_file = f.dir / "matrix.yaml";
    std::ofstream(matrix_file) << k_matrix;
    const std::vector<std::string> args = {QBENCH_BINARY, "run", matrix_file.string(), "-o", out.string(),
                                           "--device", "cpu", "--cache-dir", (f.dir / "cache").string()};

    // Start a run, wait until it has recorded two cells, then kill it outright.
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        std::vector<char*> argv;
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        const int devnull = ::open("/dev/null", O_WRONLY);
        ::dup2(devnull, STDERR_FILENO);
        ::dup2(devnull, STDOUT_FILENO);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    std::size_t recorded = 0;
    for (int i = 0; i < 1200 && recorded < 2; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (std::filesystem::exists(out)) {
            try {
                recorded = load_results(out).cells.size();
            } catch (const input_error&) {
                FAIL("results file was invalid while the run was writing it");
            }
        }
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    REQUIRE(recorded >= 2);
    const auto before = load_results(out);  // still valid after SIGKILL
    REQUIRE(before.cells.size() < f.m.cells.size());

    auto o = f.options("killed.json");
    o.resume = true;
    const run_summary s = run_matrix(f.m, f.m.cells, f.cat, o);
    CHECK(s.skipped == before.cells.size());
    const auto after = load_results(out);
    CHECK(after.cells.size() == f.m.cells.size());
    for (const auto& [hash, n] : hash_counts(after)) CHECK(n == 1);
    for (const auto& c : f.m.cells) CHECK(hash_counts(after).count(cell_hash(c)) == 1);
}

TEST_CASE("runner: SIGINT stops the run, leaves a valid file and a resumable state", "[cpu][runner]") {
    fixture f;
    ::setenv("QBENCH_FAULT_INJECTION", "nf4 beam1=hang", 1);
    auto o = f.options("interrupted.json");
    // Interrupt from another thread once the hanging cell is running: the runner must stop it and return.
    std::thread interrupter([&] {
        for (int i = 0; i < 1200; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            if (std::filesystem::exists(o.output) && !load_results(o.output).cells.empty()) break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        ::kill(::getpid(), SIGINT);
    });
    const run_summary s = run_matrix(f.m, f.m.cells, f.cat, o);
    interrupter.join();
    ::unsetenv("QBENCH_FAULT_INJECTION");
    CHECK(s.interrupted);
    const auto doc = load_results(o.output);
    CHECK(doc.cells.size() < f.m.cells.size());
    for (const auto& r : doc.cells) CHECK(cell_label(r.cell).find("nf4 beam1") == std::string::npos);
}
