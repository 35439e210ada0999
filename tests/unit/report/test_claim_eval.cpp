#include "qbench/report/claim_report.hpp"

#include "results_builder.hpp"

#include <catch2/catch.hpp>

using namespace qbench;
using test::make_cell;
using test::make_record;
using test::ok_record;

namespace {

// A catalog of one claim: `body` is the claim's kind-specific YAML, indented by four spaces.
claims_catalog one_claim(const std::string& body) {
    return parse_claims("claims_version: 1\nsource: test\nclaims:\n  - id: c\n    text: claim\n" + body, "test.yaml");
}

// bnb 4-bit over fp16 decode speed in [0.55, 0.8].
claims_catalog ratio_claim() {
    return one_claim(R"(    kind: ratio
    metric: decode_tokens_per_s
    numerator: {framework: bnb, bits: 4}
    denominator: {framework: fp16}
    vary: [framework, bits, bnb]
    min: 0.55
    max: 0.8
)");
}

claim_result evaluate_one(const std::vector<cell_record>& cells, const claims_catalog& catalog) {
    const report_result report = evaluate_claims(test::make_document(cells), catalog);
    REQUIRE(report.claims.size() == 1);
    return report.claims[0];
}

}  // namespace

TEST_CASE("claim eval: ratio reproduced, not reproduced, partly", "[cpu][report]") {
    const cell_spec fp16 = make_cell("m7", "fp16", 16);
    const cell_spec nf4 = make_cell("m7", "bnb", 4);

    SECTION("reproduced") {
        const claim_result r = evaluate_one({ok_record(fp16, 30), ok_record(nf4, 20)}, ratio_claim());
        CHECK(r.status == claim_status::reproduced);
        REQUIRE(r.checks.size() == 1);
        CHECK(r.checks[0].holds);
        CHECK_THAT(r.checks[0].figures, Catch::StartsWith("0.667 (20.0 tokens/s / 30.0 tokens/s)"));
        CHECK(r.checks[0].subject == "m7 bnb 4b nf4 beam1 g5.2xlarge / fp16 16b");
        CHECK(r.measured == "ratio 0.667 over 1 pairs");
    }
    SECTION("not reproduced: 4-bit as fast as fp16") {
        const claim_result r = evaluate_one({ok_record(fp16, 30), ok_record(nf4, 29)}, ratio_claim());
        CHECK(r.status == claim_status::not_reproduced);
        CHECK_THAT(r.why, Catch::Contains("holds in 0 of 1") && Catch::Contains("fails for"));
    }
    SECTION("partly: holds on one instance, not on the other") {
        const claim_result r = evaluate_one({ok_record(fp16, 30), ok_record(nf4, 20),
                                             ok_record(make_cell("m7", "fp16", 16, 1, "g4dn.2xlarge"), 18),
                                             ok_record(make_cell("m7", "bnb", 4, 1, "g4dn.2xlarge"), 17)},
                                            ratio_claim());
        CHECK(r.status == claim_status::partly);
        CHECK(r.checks.size() == 2);
        CHECK(r.measured == "ratio 0.667-0.944 over 2 pairs");
        CHECK_THAT(r.why, Catch::Contains("holds in 1 of 2") && Catch::Contains("g4dn.2xlarge"));
    }
    SECTION("cells pair only when equal outside vary") {
        // Different instances: nothing pairs, so nothing is claimed.
        const claim_result r = evaluate_one({ok_record(fp16, 30), ok_record(make_cell("m7", "bnb", 4, 1, "other"), 20)},
                                            ratio_claim());
        CHECK(r.status == claim_status::not_evaluated);
        CHECK_THAT(r.why, Catch::StartsWith("no cells: no two cells agree"));
    }
}

TEST_CASE("claim eval: a claim without usable cells is not evaluated, never reproduced", "[cpu][report]") {
    SECTION("no cells at all") {
        const claim_result r = evaluate_one({}, ratio_claim());
        CHECK(r.status == claim_status::not_evaluated);
        CHECK_THAT(r.why, Catch::Contains("none matches the numerator"));
        CHECK(r.checks.empty());
    }
    SECTION("the denominator ran out of memory") {
        const claim_result r = evaluate_one({make_record(make_cell("m7", "fp16", 16), outcome::oom_vram,
                                                         test::oom_metrics(memory_kind::vram)),
                                             ok_record(make_cell("m7", "bnb", 4), 20)},
                                            ratio_claim());
        CHECK(r.status == claim_status::not_evaluated);
        CHECK_THAT(r.why, Catch::Contains("none of the 1 cells matching the denominator"));
    }
    SECTION("the metric is missing") {
        const claims_catalog quality = one_claim(R"(    kind: ratio
    metric: quality.top1_agreement
    numerator: {bits: 2}
    denominator: {bits: 4}
    vary: [bits]
    max: 0.98
)");
        const claim_result r =
            evaluate_one({ok_record(make_cell("m", "gptq", 2), 5), ok_record(make_cell("m", "gptq", 4), 9)}, quality);
        CHECK(r.status == claim_status::not_evaluated);
    }
}

TEST_CASE("claim eval: quality ratio and left-out cells", "[cpu][report]") {
    const claims_catalog quality = one_claim(R"(    kind: ratio
    metric: quality.top1_agreement
    numerator: {framework: gptq, bits: [2, 3]}
    denominator: {framework: gptq, bits: 4}
    vary: [bits]
    max: 0.98
)");
    const auto rec = [](std::int64_t bits, double top1) {
        return make_record(make_cell("m", "gptq", bits), outcome::ok,
                           test::with_quality(test::ok_metrics(10), top1, 0.1));
    };
    const claim_result good = evaluate_one({rec(2, 0.4), rec(3, 0.8), rec(4, 0.95)}, quality);
    CHECK(good.status == claim_status::reproduced);
    CHECK(good.checks.size() == 2);

    const claim_result bad = evaluate_one(
        {rec(3, 0.95), rec(4, 0.95),
         make_record(make_cell("m", "gptq", 2), outcome::error, nlohmann::ordered_json::object())},
        quality);
    CHECK(bad.status == claim_status::not_reproduced);
    CHECK_THAT(bad.why, Catch::Contains("1 matching cell(s) left out"));
}

TEST_CASE("claim eval: ordering", "[cpu][report]") {
    const claims_catalog fastest = one_claim(R"(    kind: ordering
    metric: decode_tokens_per_s
    subject: {framework: gptq, bits: 4}
    vary: [framework, bits, gptq, bnb]
    best: highest
)");
    std::vector<cell_record> cells = {ok_record(make_cell("m", "fp16", 16), 30), ok_record(make_cell("m", "gptq", 4), 40),
                                      ok_record(make_cell("m", "gptq", 3), 33), ok_record(make_cell("m", "bnb", 4), 20)};
    claim_result r = evaluate_one(cells, fastest);
    CHECK(r.status == claim_status::reproduced);
    REQUIRE(r.checks.size() == 1);
    CHECK_THAT(r.checks[0].figures, Catch::Contains("40.0 tokens/s vs best other 33.0 tokens/s"));

    cells.push_back(ok_record(make_cell("m", "gptq", 8), 41));
    r = evaluate_one(cells, fastest);
    CHECK(r.status == claim_status::not_reproduced);
    CHECK_THAT(r.checks[0].figures, Catch::EndsWith("(8b)"));

    // 41 is within 5 % of 40: a tolerance makes it hold again.
    const claims_catalog tolerant = one_claim(R"(    kind: ordering
    metric: decode_tokens_per_s
    subject: {framework: gptq, bits: 4}
    vary: [framework, bits, gptq, bnb]
    best: highest
    tolerance: 0.05
)");
    CHECK(evaluate_one(cells, tolerant).status == claim_status::reproduced);

    // Lowest: load time of fp16 is the lowest among {fp16, bnb}? Here bnb loads faster, so no.
    const claims_catalog lowest = one_claim(R"(    kind: ordering
    metric: load_time_s
    subject: {framework: fp16}
    among: {framework: [fp16, bnb]}
    vary: [framework, bits, bnb]
    best: lowest
)");
    const cell_record fp16 = make_record(make_cell("m", "fp16", 16), outcome::ok, test::ok_metrics(30, 0, 14, 45));
    const cell_record bnb = make_record(make_cell("m", "bnb", 4), outcome::ok, test::ok_metrics(20, 0, 4, 38));
    CHECK(evaluate_one({fp16, bnb}, lowest).status == claim_status::not_reproduced);
    // A group without a subject says nothing.
    CHECK(evaluate_one({bnb}, lowest).status == claim_status::not_evaluated);
}

TEST_CASE("claim eval: alike", "[cpu][report]") {
    const claims_catalog alike = one_claim(R"(    kind: alike
    metrics: [decode_tokens_per_s, vram_peak_bytes]
    first: {bnb.quant_type: nf4}
    second: {bnb.quant_type: fp4}
    vary: [bnb.quant_type]
    tolerance: 0.1
)");
    const cell_spec nf4 = make_cell("m", "bnb", 4);
    const cell_spec fp4 = test::with_quant_type(make_cell("m", "bnb", 4), "fp4");
    const auto rec = [](const cell_spec& c, double tps, double vram) {
        return make_record(c, outcome::ok, test::ok_metrics(tps, 0, vram));
    };
    claim_result r = evaluate_one({rec(nf4, 20, 4.0), rec(fp4, 19.5, 4.1)}, alike);
    CHECK(r.status == claim_status::reproduced);
    CHECK_THAT(r.checks[0].figures, Catch::Contains("decode_tokens_per_s 1.026") && Catch::Contains("vram_peak_bytes"));
    CHECK(r.measured == "largest difference 2.6% over 1 pairs");

    // Speed alike but memory 25 % apart: not alike.
    r = evaluate_one({rec(nf4, 20, 5.0), rec(fp4, 19.5, 4.0)}, alike);
    CHECK(r.status == claim_status::not_reproduced);
}

TEST_CASE("claim eval: fits", "[cpu][report]") {
    const claims_catalog table = one_claim(R"(    kind: fits
    cells:
      - {select: {model: "*-7b*", framework: fp16, instance: "g5.*"}, expect: fits}
      - {select: {model: "*-7b*", framework: fp16, instance: "g4dn.*"}, expect: oom}
)");
    const cell_spec g5 = make_cell("vicuna-7b-v0", "fp16", 16, 1, "g5.2xlarge");
    const cell_spec g4dn = make_cell("vicuna-7b-v0", "fp16", 16, 1, "g4dn.2xlarge");
    const cell_record g4dn_oom = make_record(g4dn, outcome::oom_vram, test::oom_metrics(memory_kind::vram));

    claim_result r = evaluate_one({ok_record(g5, 30), g4dn_oom}, table);
    CHECK(r.status == claim_status::reproduced);
    REQUIRE(r.checks.size() == 2);
    CHECK_THAT(r.checks[1].figures,
               Catch::Contains("expected oom; oom_vram: 1.00 GiB requested, 0.250 GiB available of 16.0 GiB"));
    CHECK(r.measured == "1 ran, 1 oom_vram over 2 cells");

    // It ran on the g4dn after all: the table is wrong there.
    r = evaluate_one({ok_record(g5, 30), ok_record(g4dn, 12)}, table);
    CHECK(r.status == claim_status::partly);

    // Running out of host RAM says nothing about VRAM: left out, and with nothing else the claim is not evaluated.
    r = evaluate_one({make_record(g4dn, outcome::oom_host, test::oom_metrics(memory_kind::host)),
                      make_record(g5, outcome::unsupported, nlohmann::ordered_json::object())},
                     table);
    CHECK(r.status == claim_status::not_evaluated);
    CHECK_THAT(r.why, Catch::Contains("none of the 2 matching cells"));
}

TEST_CASE("claim eval: where restricts every side", "[cpu][report]") {
    const claims_catalog beam1 = one_claim(R"(    where: {beam: 1}
    kind: ratio
    metric: decode_tokens_per_s
    numerator: {framework: bnb, bits: 4}
    denominator: {framework: fp16}
    vary: [framework, bits, bnb]
    max: 0.8
)");
    const claim_result r = evaluate_one({ok_record(make_cell("m", "fp16", 16, 1), 30), ok_record(make_cell("m", "bnb", 4, 1), 20),
                                         ok_record(make_cell("m", "fp16", 16, 2), 30), ok_record(make_cell("m", "bnb", 4, 2), 29)},
                                        beam1);
    CHECK(r.status == claim_status::reproduced);
    CHECK(r.checks.size() == 1);
}

TEST_CASE("claim eval: the report as markdown and JSON", "[cpu][report]") {
    const results_document doc = test::make_document(
        {ok_record(make_cell("m7", "fp16", 16), 30),
         make_record(make_cell("m7", "bnb", 4), outcome::ok, test::with_quality(test::ok_metrics(20), 0.94, 0.03))});
    const report_result report = evaluate_claims(doc, ratio_claim());
    const std::string md = format_report_markdown(report);
    CHECK_THAT(md, Catch::Contains("| claim") && Catch::Contains("| measured") && Catch::Contains("| verdict") &&
                       Catch::Contains("reproduced") && Catch::Contains("claim (c)"));
    CHECK_THAT(md, Catch::Contains("Speed and quality by cell") && Catch::Contains("0.940") &&
                       Catch::Contains("0.030 nats"));

    const nlohmann::ordered_json j = report_to_json(report);
    CHECK(j["claims"][0]["status"] == "reproduced");
    CHECK(j["claims"][0]["checks"].size() == 1);
    CHECK(j["cells"].size() == 2);
    CHECK(j["cells"][0]["top1_agreement"].is_null());
    CHECK(j["cells"][1]["top1_agreement"] == Approx(0.94));
}
