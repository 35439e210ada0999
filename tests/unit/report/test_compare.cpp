#include "qbench/report/compare.hpp"

#include "results_builder.hpp"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace qbench;
using test::make_cell;
using test::make_record;
using test::ok_record;

namespace {

const std::string k_data = QBENCH_TEST_DATA_DIR "/results/";

const compared_cell& find_cell(const compare_result& r, std::string_view label_start) {
    const auto it = std::find_if(r.cells.begin(), r.cells.end(),
                                 [&](const compared_cell& c) { return c.label.starts_with(label_start); });
    REQUIRE(it != r.cells.end());
    return *it;
}

const metric_row& find_row(const compared_cell& c, std::string_view metric) {
    const auto it = std::find_if(c.metrics.begin(), c.metrics.end(), [&](const metric_row& m) { return m.metric == metric; });
    REQUIRE(it != c.metrics.end());
    return *it;
}

compare_result compare_two(std::vector<cell_record> a, std::vector<cell_record> b, compare_options options = {}) {
    return compare_files({test::make_document(std::move(a), "GPU A"), test::make_document(std::move(b), "GPU B")},
                         options);
}

}  // namespace

TEST_CASE("compare: files from two machines join by cell parameters", "[cpu][report]") {
    const std::vector<results_document> docs = {load_results(k_data + "compare_a.json"),
                                                load_results(k_data + "compare_b.json")};
    compare_options options;
    options.names = {"compare_a.json", "compare_b.json"};
    const compare_result r = compare_files(docs, options);

    // Different GPUs, hosts, timestamps, record order and repetition counts; still one row per cell.
    CHECK(r.provenance[0] != r.provenance[1]);
    CHECK_THAT(r.provenance[1], Catch::Contains("fixture GPU B"));
    REQUIRE(r.cells.size() == 5);
    CHECK(r.warnings.empty());

    const compared_cell& fp16 = find_cell(r, "tiny fp16 16b");
    CHECK(fp16.outcomes[0] == outcome::ok);
    CHECK(fp16.outcomes[1] == outcome::ok);
    const metric_row& fp16_decode = find_row(fp16, "decode_tokens_per_s");
    REQUIRE(fp16_decode.changes[1]);
    CHECK(fp16_decode.changes[1]->ratio == Approx(50.4 / 50.0));
    CHECK(fp16_decode.changes[1]->verdict == change_verdict::same);  // +0.8 %, inside the spread
    CHECK_FALSE(fp16_decode.changes[0]);

    const metric_row& gptq_decode = find_row(find_cell(r, "tiny gptq 4b"), "decode_tokens_per_s");
    CHECK(gptq_decode.changes[1]->ratio == Approx(0.8));
    CHECK(gptq_decode.changes[1]->change_pct == Approx(-20.0));
    CHECK(gptq_decode.changes[1]->verdict == change_verdict::worse);
    CHECK(gptq_decode.figures[1]->count == 5);

    // Outcome change: ok on A, out of VRAM on B; no figure is compared across it.
    const compared_cell& bnb = find_cell(r, "tiny bnb 4b");
    CHECK(bnb.outcomes[0] == outcome::ok);
    CHECK(bnb.outcomes[1] == outcome::oom_vram);
    CHECK(bnb.metrics.empty());

    // One file only.
    CHECK_FALSE(find_cell(r, "tiny gptq 8b").outcomes[1]);
    CHECK_FALSE(find_cell(r, "tiny gptq 3b").outcomes[0]);

    // No threshold: differences are reported, never regressions.
    CHECK(r.regressions.empty());
    CHECK(compare_exit_code(r) == 0);

    const std::string md = format_compare_markdown(r);
    CHECK_THAT(md, Catch::Contains("A (baseline): compare_a.json") && Catch::Contains("### Outcome changes") &&
                       Catch::Contains("### Cells in one file only") && Catch::Contains("worse -20.0%") &&
                       Catch::Contains("100.0 ±0.8 tokens/s"));

    const std::string csv = format_compare_csv(r);
    CHECK_THAT(csv, Catch::StartsWith("cell,model,framework,bits,beam,instance,metric,unit,baseline,"));
    CHECK_THAT(csv, Catch::Contains(",decode_tokens_per_s,tokens/s,compare_a.json,100.0,") && Catch::Contains(",worse,false"));
    CHECK_THAT(csv, Catch::Contains(",outcome,,compare_a.json,ok,,compare_b.json,oom_vram,,,,worse,false"));
    CHECK_THAT(csv, Catch::Contains(",outcome,,compare_a.json,absent,,compare_b.json,ok,,,,differs,false"));

    const nlohmann::ordered_json j = compare_to_json(r);
    CHECK(j["cells"].size() == 5);
    CHECK(j["files"][1]["name"] == "compare_b.json");
    CHECK(j["fail_above_pct"].is_null());
}

TEST_CASE("compare: --fail-above decides regressions", "[cpu][report]") {
    const std::vector<results_document> docs = {load_results(k_data + "compare_a.json"),
                                                load_results(k_data + "compare_b.json")};
    compare_options options;
    options.fail_above_pct = 10;
    compare_result r = compare_files(docs, options);
    CHECK(compare_exit_code(r) == k_compare_regression_exit_code);
    const auto has = [&](std::string_view text) {
        return std::any_of(r.regressions.begin(), r.regressions.end(),
                           [&](const std::string& line) { return line.find(text) != std::string::npos; });
    };
    CHECK(has("decode_tokens_per_s -20.0% in B"));
    CHECK(has("outcome ok -> oom_vram in B"));
    CHECK_FALSE(has("tiny fp16"));
    CHECK_THAT(format_compare_markdown(r), Catch::Contains("### Regressions beyond 10%"));

    // 20 % is below a 25 % threshold; the cell that stopped running still fails the gate.
    options.fail_above_pct = 25;
    r = compare_files(docs, options);
    CHECK_FALSE(has("decode_tokens_per_s"));
    CHECK(has("outcome ok -> oom_vram"));

    // A run against itself: nothing to report.
    r = compare_files({docs[0], docs[0]}, options);
    CHECK(r.regressions.empty());
    CHECK(compare_exit_code(r) == 0);
    CHECK_THAT(format_compare_markdown(r), Catch::Contains("No regression beyond 25%"));
}

TEST_CASE("compare: a difference counts only beyond the spread and the noise floor", "[cpu][report]") {
    const cell_spec c = make_cell("m", "gptq", 4);
    const auto decode_verdict = [&](double a, double a_spread, double b, double b_spread) {
        const compare_result r = compare_two({ok_record(c, a, a_spread)}, {ok_record(c, b, b_spread)});
        return find_row(r.cells.at(0), "decode_tokens_per_s").changes[1]->verdict;
    };
    CHECK(decode_verdict(100, 5, 93, 5) == change_verdict::same);    // 7 < 5 + 5
    CHECK(decode_verdict(100, 5, 89, 5) == change_verdict::worse);   // 11 > 10
    CHECK(decode_verdict(100, 5, 111, 5) == change_verdict::better);
    CHECK(decode_verdict(100, 0, 100.5, 0) == change_verdict::same); // no spread, but under the 1 % floor
    CHECK(decode_verdict(100, 0, 102, 0) == change_verdict::better);

    // Lower is better for bytes and seconds.
    const auto row_of = [&](double vram_b, double load_b, std::string_view metric) {
        const compare_result r = compare_two({make_record(c, outcome::ok, test::ok_metrics(10, 0, 4.0, 10))},
                                             {make_record(c, outcome::ok, test::ok_metrics(10, 0, vram_b, load_b))});
        return find_row(r.cells.at(0), metric).changes[1]->verdict;
    };
    CHECK(row_of(4.4, 10, "vram_peak_bytes") == change_verdict::worse);
    CHECK(row_of(4.02, 10, "vram_peak_bytes") == change_verdict::same);
    CHECK(row_of(4.0, 8, "load_time_s") == change_verdict::better);

    // A metric with no better direction only "differs".
    compare_options counts;
    counts.metrics = {"quality.compared_positions"};
    auto with_positions = [&](int n) {
        nlohmann::ordered_json m = test::ok_metrics(10);
        m["quality"] = {{"compared_positions", n}};
        return make_record(c, outcome::ok, m);
    };
    const compare_result r = compare_two({with_positions(32)}, {with_positions(64)}, counts);
    CHECK(r.cells.at(0).metrics.at(0).changes[1]->verdict == change_verdict::differs);
}

TEST_CASE("compare: duplicates, colliding labels, bad input", "[cpu][report]") {
    const cell_spec c = make_cell("m", "gptq", 4);
    cell_spec damped = c;
    damped.gptq.damp_percent = 0.1;

    const compare_result r = compare_two({ok_record(c, 10), ok_record(c, 12), ok_record(damped, 11)},
                                         {ok_record(c, 12), ok_record(damped, 11)});
    REQUIRE(r.warnings.size() == 1);
    CHECK_THAT(r.warnings[0], Catch::Contains("recorded more than once"));
    REQUIRE(r.cells.size() == 2);
    // The last record of a duplicated cell counts: 12 against 12.
    CHECK(find_row(r.cells[0], "decode_tokens_per_s").changes[1]->ratio == Approx(1.0));
    CHECK_THAT(r.cells[0].label, Catch::EndsWith("[gptq.damp_percent=0.01]"));
    CHECK_THAT(r.cells[1].label, Catch::EndsWith("[gptq.damp_percent=0.1]"));

    CHECK_THROWS_AS(compare_files({test::make_document({})}, {}), input_error);
    compare_options bad;
    bad.metrics = {"decode_tokens_per_second"};
    CHECK_THROWS_WITH(compare_two({}, {}, bad), Catch::Contains("did you mean 'decode_tokens_per_s'"));
    compare_options names;
    names.names = {"only one"};
    CHECK_THROWS_AS(compare_two({}, {}, names), input_error);
}

TEST_CASE("compare: three files, each against the first", "[cpu][report]") {
    const cell_spec c = make_cell("m", "fp16", 16);
    const compare_result r =
        compare_files({test::make_document({ok_record(c, 10)}), test::make_document({ok_record(c, 20)}),
                       test::make_document({ok_record(c, 5)})},
                      {});
    const metric_row& row = find_row(r.cells.at(0), "decode_tokens_per_s");
    CHECK(row.changes[1]->ratio == Approx(2.0));
    CHECK(row.changes[2]->ratio == Approx(0.5));
    CHECK_THAT(format_compare_markdown(r), Catch::Contains("| C/A") && Catch::Contains("C verdict"));
}
