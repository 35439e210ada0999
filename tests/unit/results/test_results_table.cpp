// format_cells_table: columns, figures, missing values, reasons kept to one short cell.
#include "qbench/results/table.hpp"
#include "sample_records.hpp"

#include <catch2/catch.hpp>

#include <sstream>

using namespace qbench;

namespace {
std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

/// The cells of one table line, trimmed.
std::vector<std::string> cells_of(const std::string& line) {
    std::vector<std::string> cells;
    std::size_t pos = 1;
    while (pos < line.size()) {
        const std::size_t bar = line.find('|', pos);
        std::string cell = line.substr(pos, bar - pos);
        cell.erase(0, cell.find_first_not_of(' '));
        cell.erase(cell.find_last_not_of(' ') + 1);
        cells.push_back(cell);
        pos = bar + 1;
    }
    return cells;
}
}  // namespace

TEST_CASE("table: one aligned row per record with the headline figures", "[cpu][results]") {
    cell_record ok = test::sample_record(outcome::ok, 1);  // gptq, 4 bits, beam 2, g4dn.xlarge
    ok.metrics = nlohmann::ordered_json::object();
    ok.metrics[metric::k_load_time_s] = 12.345;
    ok.metrics[metric::k_decode_tokens_per_s] = summary_to_json(std::vector<double>{95.0, 101.0, 99.0});
    ok.metrics[metric::k_vram_peak_bytes] = std::uint64_t{3} << 29;  // 1.5 GiB
    ok.metrics[metric::k_bandwidth_utilization] = 0.784;

    cell_record bnb = test::sample_record(outcome::ok, 2);  // bnb fp4
    bnb.metrics = nlohmann::ordered_json::object();

    cell_record oom = test::sample_record(outcome::oom_vram, 3);
    oom.reason = "first line | with a pipe\nsecond line that goes on and on well past the width of the column";

    const std::string table = format_cells_table({ok, bnb, oom});
    const std::vector<std::string> lines = lines_of(table);
    REQUIRE(lines.size() == 5);  // header, rule, three rows
    for (const std::string& line : lines) CHECK(line.size() == lines[0].size());  // padded to line up

    CHECK(cells_of(lines[0]) == std::vector<std::string>{"#", "model", "framework", "bits", "beam", "instance", "outcome",
                                                         "load s", "decode tok/s", "VRAM GiB", "BW util", "reason"});
    CHECK(lines[1].find("---:") != std::string::npos);  // numbers right-aligned in markdown

    const auto row1 = cells_of(lines[2]);
    REQUIRE(row1.size() == 12);
    CHECK(row1[0] == "1");
    CHECK(row1[1] == "vicuna-7b-v0");
    CHECK(row1[2] == "gptq");
    CHECK(row1[3] == "4");
    CHECK(row1[4] == "2");
    CHECK(row1[5] == "g4dn.xlarge");
    CHECK(row1[6] == "ok");
    CHECK(row1[7] == "12.35");
    CHECK(row1[8] == "99.0");  // the median, not the mean (98.3)
    CHECK(row1[9] == "1.50");
    CHECK(row1[10] == "78%");
    CHECK(row1[11].empty());

    const auto row2 = cells_of(lines[3]);
    CHECK(row2[2] == "bnb fp4");
    for (int c : {7, 8, 9, 10}) CHECK(row2[c] == "-");

    const auto row3 = cells_of(lines[4]);
    CHECK(row3[6] == "oom_vram");
    CHECK(row3[11].size() <= 48);
    CHECK(row3[11].rfind("first line / with a pipe second line", 0) == 0);
    CHECK(row3[11].substr(row3[11].size() - 3) == "...");

    CHECK(lines_of(format_cells_table({})).size() == 2);  // just the header
}
