// qbench merge (shards joined, duplicates refused, provenance of every input kept) and the cache size cap.
#include "qbench/common/errors.hpp"
#include "qbench/config/catalog.hpp"
#include "qbench/config/matrix.hpp"
#include "qbench/results/provenance.hpp"
#include "qbench/results/results_file.hpp"
#include "qbench/results/timestamp.hpp"
#include "qbench/runner/cache_cap.hpp"
#include "qbench/runner/merge.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <thread>
#include <unistd.h>

using namespace qbench;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
    auto d = fs::temp_directory_path() / ("qbench-test-merge-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

cell_record unsupported_record(const cell_spec& cell) {
    cell_record r;
    r.cell = cell;
    r.config_hash = cell_hash(cell);
    r.outcome = outcome::unsupported;
    r.reason = "test record";
    r.started_at = r.finished_at = now_rfc3339_utc();
    return r;
}

std::vector<cell_spec> four_cells() {
    const catalog cat = load_catalog(default_configs_dir());
    return parse_matrix("matrix:\n  model: tiny\n  framework: bnb\n  bits: [4, 8]\n  beam: [1, 2]\n", "m.yaml", cat).cells;
}

fs::path write_shard(const fs::path& dir, const std::string& name, const std::vector<cell_spec>& cells,
                     const std::string& matrix_yaml = "m") {
    provenance_inputs in;
    in.command_line = {"qbench", "run", name};
    in.matrix_file = "m.yaml";
    in.matrix_yaml = matrix_yaml;
    auto file = results_file::create(dir / name, capture_provenance(in));
    for (const auto& c : cells) file.append(unsupported_record(c));
    return dir / name;
}

}  // namespace

TEST_CASE("merge: shards join into one file that keeps every input's provenance", "[cpu][runner]") {
    const auto dir = fresh_dir("join");
    const auto cells = four_cells();
    REQUIRE(cells.size() == 4);
    const auto a = write_shard(dir, "a.json", {cells[0], cells[2]});
    const auto b = write_shard(dir, "b.json", {cells[1], cells[3]});
    {
        // b was continued once (qbench run --resume): that stays attached to b's summary, not to the merged file.
        auto file = results_file::open_existing(b);
        file.note_resumed({{"timestamp", now_rfc3339_utc()}, {"git_commit", "abc123"}, {"hostname", "elsewhere"}});
    }
    const results_document merged = merge_results({a, b});
    CHECK_FALSE(merged.provenance.contains("resumed_by"));
    CHECK_FALSE(merged.provenance.at("merged_from")[0].contains("resumed_by"));
    REQUIRE(merged.provenance.at("merged_from")[1].contains("resumed_by"));
    CHECK(merged.provenance.at("merged_from")[1].at("resumed_by")[0].at("hostname") == "elsewhere");
    CHECK(merged.cells.size() == 4);
    REQUIRE(merged.provenance.contains("merged_from"));
    CHECK(merged.provenance.at("merged_from").size() == 2);
    CHECK(merged.provenance.at("merged_from")[1].at("file") == "b.json");
    // The merged document is itself a valid results file.
    const auto out = dir / "merged.json";
    std::ofstream(out) << dump_results_json(results_to_json(merged));
    CHECK(load_results(out).cells.size() == 4);
}

TEST_CASE("merge: a cell recorded in two inputs is refused, naming both files", "[cpu][runner]") {
    const auto dir = fresh_dir("dup");
    const auto cells = four_cells();
    const auto a = write_shard(dir, "a.json", {cells[0], cells[1]});
    const auto b = write_shard(dir, "b.json", {cells[1], cells[2]});
    try {
        merge_results({a, b});
        FAIL("duplicate accepted");
    } catch (const input_error& e) {
        CHECK(std::string(e.what()).find("b.json") != std::string::npos);
        CHECK(std::string(e.what()).find("a.json") != std::string::npos);
    }
}

TEST_CASE("merge: shards of different matrices are refused", "[cpu][runner]") {
    const auto dir = fresh_dir("matrix");
    const auto cells = four_cells();
    const auto a = write_shard(dir, "a.json", {cells[0]}, "one");
    const auto b = write_shard(dir, "b.json", {cells[1]}, "two");
    CHECK_THROWS_AS(merge_results({a, b}), input_error);
    CHECK_THROWS_AS(merge_results({a}), input_error);
}

TEST_CASE("cache cap: least recently used entries go first, entries in use stay", "[cpu][runner]") {
    const auto dir = fresh_dir("cache");
    auto make_entry = [&](const std::string& kind, const std::string& name, std::size_t bytes) {
        const auto e = dir / kind / name;
        fs::create_directories(e);
        std::ofstream(e / "data.bin", std::ios::binary) << std::string(bytes, 'x');
        return e;
    };
    const auto old_ckpt = make_entry("checkpoints", "old", 4000);
    const auto mid_art = make_entry("artifacts", "mid", 4000);
    const auto new_ckpt = make_entry("checkpoints", "new", 4000);
    // Order of use: old, mid, new (file times have coarse resolution on some file systems: space them out).
    fs::last_write_time(old_ckpt, fs::file_time_type::clock::now() - std::chrono::hours(3));
    fs::last_write_time(mid_art, fs::file_time_type::clock::now() - std::chrono::hours(2));
    fs::last_write_time(new_ckpt, fs::file_time_type::clock::now() - std::chrono::hours(1));
    CHECK(directory_bytes(dir) == 12000);

    CHECK(enforce_cache_cap(dir, 0, {}) == 0);  // no cap
    // Cap 9000 with `old` in use: `old` stays, `mid` (the least recently used of the rest) goes.
    CHECK(enforce_cache_cap(dir, 9000, {old_ckpt / "data.bin"}) == 4000);
    CHECK(fs::exists(old_ckpt));
    CHECK_FALSE(fs::exists(mid_art));
    CHECK(fs::exists(new_ckpt));
    // Touching `old` makes `new` the least recently used.
    touch_cache_entry(old_ckpt);
    CHECK(enforce_cache_cap(dir, 5000, {}) == 4000);
    CHECK(fs::exists(old_ckpt));
    CHECK_FALSE(fs::exists(new_ckpt));
}
