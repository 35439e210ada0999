// The shipped claims (configs/claims.yaml) against the seed-like fixture, whose invented figures were chosen so that
// every claim has a known verdict (tests/data/results/make_fixtures.py).
#include "qbench/report/claim_report.hpp"

#include <catch2/catch.hpp>

#include <map>

using namespace qbench;

TEST_CASE("claims catalog: configs/claims.yaml against the seed fixture", "[cpu][report]") {
    const claims_catalog catalog = load_claims(QBENCH_SOURCE_DIR "/configs/claims.yaml");
    const results_document results = load_results(QBENCH_TEST_DATA_DIR "/results/seed_matrix.json");
    const report_result report = evaluate_claims(results, catalog);

    std::map<std::string, claim_status> status;
    for (const claim_result& c : report.claims) status[c.id] = c.status;
    const std::map<std::string, claim_status> expected = {
        {"bnb-fp16-fastest-in-family", claim_status::reproduced},
        {"bnb-4bit-two-thirds-of-fp16", claim_status::reproduced},
        {"gptq-4bit-fastest-overall", claim_status::reproduced},
        {"gptq-4bit-faster-than-fp16", claim_status::reproduced},
        {"gptq-2-3bit-slower-than-4bit", claim_status::reproduced},
        {"gptq-2-3bit-degraded", claim_status::reproduced},
        {"beam-search-no-speedup", claim_status::reproduced},
        {"bnb-int8-much-slower", claim_status::reproduced},
        {"nf4-fp4-alike", claim_status::reproduced},
        {"fits-7b-fp16-g5-not-g4dn", claim_status::reproduced},
        {"fits-13b-g5-4-and-8-bit", claim_status::reproduced},
        {"fits-13b-g4dn-only-4-bit", claim_status::reproduced},
        {"fits-13b-fp16-not-g5", claim_status::reproduced},
        // The fixture's GPTQ cells use the streaming memory plan: no cell to say whether AutoGPTQ's plan runs out.
        {"gptq-13b-quantize-needs-more-ram", claim_status::not_evaluated},
        // The 7B int8 load (47 s) is slower than the FP16 load (45 s); every other quantized load is faster.
        {"bnb-fp16-loads-slower", claim_status::partly},
    };
    CHECK(status == expected);

    for (const claim_result& c : report.claims) {
        INFO(c.id << ": " << c.why);
        CHECK_FALSE(c.text.empty());
        CHECK_FALSE(c.source.empty());
        CHECK_FALSE(c.why.empty());
        if (c.status != claim_status::not_evaluated) CHECK_FALSE(c.checks.empty());
    }
    CHECK(report.cells.size() == results.cells.size());
    CHECK_THAT(format_report_markdown(report), Catch::Contains("15 claims: 13 reproduced, 1 partly, 0 not reproduced, "
                                                               "1 not evaluated."));
}
