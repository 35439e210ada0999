#include "qbench/report/claims.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <typeinfo>

using namespace qbench;

namespace {

// Line numbers below refer to this text (1-based): line 7 is "metric", line 8 "numerator".
const std::string k_valid = R"(claims_version: 1
source: "default source"
claims:
  - id: bnb-4bit-vs-fp16
    text: "4-bit is about 2/3 of fp16"
    kind: ratio
    metric: decode_tokens_per_s
    numerator: {framework: bnb, bits: 4}
    denominator: {framework: fp16}
    vary: [framework, bits, bnb]
    min: 0.55
    max: 0.8
)";

std::string replace_line(std::string text, int line, const std::string& replacement) {
    std::size_t begin = 0;
    for (int i = 1; i < line; ++i) begin = text.find('\n', begin) + 1;
    const std::size_t end = text.find('\n', begin);
    return text.replace(begin, end - begin, replacement);
}

std::string remove_line(const std::string& text, int line) {
    std::string out = replace_line(text, line, "");
    std::size_t begin = 0;
    for (int i = 1; i < line; ++i) begin = out.find('\n', begin) + 1;
    return out.erase(begin, 1);
}

// Parses and returns the input_error; fails the test when parsing succeeds.
input_error parse_error(const std::string& text) {
    try {
        parse_claims(text, "claims.yaml");
    } catch (const input_error& e) {
        return e;
    }
    FAIL("parse_claims accepted:\n" << text);
    throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("claims yaml: a valid ratio claim", "[cpu][report]") {
    const claims_catalog catalog = parse_claims(k_valid, "claims.yaml");
    REQUIRE(catalog.claims.size() == 1);
    const claim& c = catalog.claims[0];
    CHECK(c.id == "bnb-4bit-vs-fp16");
    CHECK(c.source == "default source");
    CHECK(c.kind == claim_kind::ratio);
    CHECK(c.place == "claims.yaml:4:5");
    CHECK(c.metrics == std::vector<std::string>{"decode_tokens_per_s"});
    CHECK(c.first.describe() == "framework=bnb bits=4");
    CHECK(c.second.describe() == "framework=fp16");
    CHECK(c.vary == std::vector<std::string>{"framework", "bits", "bnb"});
    CHECK(c.min == Approx(0.55));
    CHECK(c.max == Approx(0.8));
    // Values are typed as the cell JSON types them, so they compare equal to real cells.
    CHECK(c.first.conditions[1].any_of[0].is_number_integer());
}

TEST_CASE("claims yaml: every malformed input names file, line and column", "[cpu][report]") {
    SECTION("unknown key, with a suggestion") {
        const input_error e = parse_error(replace_line(k_valid, 7, "    metirc: decode_tokens_per_s"));
        CHECK(e.file() == "claims.yaml");
        CHECK(e.place() == "7:5 (key 'claims[0].metirc')");
        CHECK_THAT(e.message(), Catch::Contains("unknown key 'metirc'") && Catch::Contains("did you mean 'metric'"));
    }
    SECTION("unknown metric") {
        const input_error e = parse_error(replace_line(k_valid, 7, "    metric: decode_token_per_s"));
        CHECK(e.place() == "7:13 (key 'claims[0].metric')");
        CHECK_THAT(e.message(), Catch::Contains("decode_tokens_per_s"));
    }
    SECTION("unknown cell key in a selector") {
        const input_error e = parse_error(replace_line(k_valid, 8, "    numerator: {framework: bnb, bitz: 4}"));
        CHECK(e.place() == "8:33 (key 'claims[0].numerator.bitz')");
        CHECK_THAT(e.message(), Catch::Contains("did you mean 'bits'"));
    }
    SECTION("a value the cell key cannot take") {
        const input_error e = parse_error(replace_line(k_valid, 8, "    numerator: {framework: bnb, bits: 5}"));
        CHECK(e.place() == "8:39 (key 'claims[0].numerator.bits')");
    }
    SECTION("a range on a text key") {
        const input_error e = parse_error(replace_line(k_valid, 8, "    numerator: {model: {min: 1}}"));
        CHECK_THAT(e.place(), Catch::StartsWith("8:"));
        CHECK_THAT(e.message(), Catch::Contains("numeric key"));
    }
    SECTION("YAML syntax error") {
        const input_error e = parse_error(replace_line(k_valid, 8, "    numerator: {framework: bnb, bits: 4"));
        CHECK_THAT(e.place(), Catch::Matches("[0-9]+:[0-9]+.*"));
        CHECK_THAT(e.message(), Catch::Contains("YAML syntax error"));
    }
    SECTION("missing key of the kind") {
        const input_error e = parse_error(remove_line(k_valid, 9));
        CHECK(e.place() == "4:5 (key 'claims[0].denominator')");
        CHECK_THAT(e.message(), Catch::Contains("missing key 'denominator' in a claim of kind 'ratio'"));
    }
    SECTION("a ratio without bounds") {
        const input_error e = parse_error(remove_line(remove_line(k_valid, 12), 11));
        CHECK_THAT(e.message(), Catch::Contains("needs 'min', 'max' or both"));
    }
    SECTION("min above max") {
        const input_error e = parse_error(replace_line(k_valid, 12, "    max: 0.5"));
        CHECK(e.place() == "12:10 (key 'claims[0].max')");
    }
    SECTION("a key of another kind") {
        const input_error e = parse_error(replace_line(k_valid, 12, "    tolerance: 0.1"));
        CHECK(e.place() == "12:5 (key 'claims[0].tolerance')");
        CHECK_THAT(e.message(), Catch::Contains("does not apply to a claim of kind 'ratio'"));
    }
    SECTION("unknown kind") {
        const input_error e = parse_error(replace_line(k_valid, 6, "    kind: ratios"));
        CHECK(e.place() == "6:11 (key 'claims[0].kind')");
    }
    SECTION("unknown vary key") {
        const input_error e = parse_error(replace_line(k_valid, 10, "    vary: [framework, bit]"));
        CHECK(e.place() == "10:23 (key 'claims[0].vary[1]')");
        CHECK_THAT(e.message(), Catch::Contains("did you mean 'bits'"));
    }
    SECTION("unsupported claims_version") {
        const input_error e = parse_error(replace_line(k_valid, 1, "claims_version: 2"));
        CHECK(e.place() == "1:17 (key 'claims_version')");
    }
    SECTION("duplicate id") {
        std::string twice = k_valid;
        twice += k_valid.substr(k_valid.find("  - id:"));
        const input_error e = parse_error(twice);
        CHECK(e.place() == "13:5 (key 'claims[1].id')");
        CHECK_THAT(e.message(), Catch::Contains("duplicate claim id"));
    }
    SECTION("no source anywhere") {
        const input_error e = parse_error(remove_line(k_valid, 2));
        CHECK_THAT(e.message(), Catch::Contains("missing key 'source'"));
    }
    SECTION("an empty file") {
        const input_error e = parse_error("");
        CHECK_THAT(e.message(), Catch::Contains("empty"));
    }
}

TEST_CASE("claims yaml: the other kinds", "[cpu][report]") {
    const std::string text = R"(claims_version: 1
claims:
  - id: fastest
    text: "t"
    source: "s"
    kind: ordering
    metric: decode_tokens_per_s
    subject: {framework: gptq, bits: 4}
    vary: [framework, bits, gptq, bnb]
    best: highest
    tolerance: 0.05
  - id: alike
    text: "t"
    source: "s"
    kind: alike
    metrics: [decode_tokens_per_s, vram_peak_bytes]
    first: {bnb.quant_type: nf4}
    second: {bnb.quant_type: fp4}
    vary: [bnb.quant_type]
    tolerance: 0.1
  - id: fits
    text: "t"
    source: "s"
    kind: fits
    budget: host
    where: {beam: {min: 1, max: 4}}
    cells:
      - {select: {model: "*-13b*", instance: [g4dn.2xlarge, g5.2xlarge]}, expect: oom}
      - {select: {bits: 4}, expect: fits}
)";
    const claims_catalog catalog = parse_claims(text, "c.yaml");
    REQUIRE(catalog.claims.size() == 3);
    CHECK(catalog.claims[0].kind == claim_kind::ordering);
    CHECK(catalog.claims[0].highest);
    CHECK(catalog.claims[0].tolerance == Approx(0.05));
    CHECK(catalog.claims[0].second.conditions.empty());
    CHECK(catalog.claims[1].metrics.size() == 2);
    const claim& fits = catalog.claims[2];
    CHECK(fits.budget == memory_kind::host);
    CHECK(fits.where.describe() == "1<=beam<=4");
    REQUIRE(fits.expectations.size() == 2);
    CHECK_FALSE(fits.expectations[0].fits);
    CHECK(fits.expectations[0].select.describe() == "model=*-13b* instance=g4dn.2xlarge|g5.2xlarge");
    CHECK(fits.expectations[1].fits);

    const input_error e = parse_error(text.substr(0, text.rfind("expect: fits")) + "expect: maybe}\n");
    CHECK_THAT(e.place(), Catch::StartsWith("29:"));
    CHECK_THAT(e.message(), Catch::Contains("expected 'fits' or 'oom'"));
}

TEST_CASE("claims yaml: mangled files give input_error, nothing else", "[cpu][report]") {
    // A small deterministic fuzz of the shipped file: every mutation either parses or is an input_error with a
    // place; no other exception, no crash (the sanitizer build runs this too).
    std::ifstream in(QBENCH_SOURCE_DIR "/configs/claims.yaml");
    std::stringstream buffer;
    buffer << in.rdbuf();
    const std::string original = buffer.str();
    REQUIRE(original.size() > 1000);

    std::uint64_t state = 0x9E3779B97F4A7C15ull;
    const auto next = [&](std::uint64_t bound) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;  // PCG multiplier, LCG step
        return (state >> 33) % bound;
    };
    const std::string specials = ":-[]{},#&*!|>'\"%@` \n\t0123456789.";
    int parsed = 0, rejected = 0;
    for (int round = 0; round < 300; ++round) {
        std::string text = original;
        for (std::uint64_t edits = 1 + next(4); edits > 0; --edits) {
            const std::size_t at = next(text.size());
            switch (next(3)) {
            case 0: text[at] = specials[next(specials.size())]; break;
            case 1: text.erase(at, 1 + next(8)); break;
            default: text.insert(at, 1, specials[next(specials.size())]); break;
            }
        }
        try {
            parse_claims(text, "mangled.yaml");
            ++parsed;
        } catch (const input_error& e) {
            CHECK(e.file() == "mangled.yaml");
            ++rejected;
        } catch (const std::exception& e) {
            FAIL("round " << round << ": " << typeid(e).name() << ": " << e.what());
        }
    }
    CHECK(rejected > 100);  // most mutations break something
    CHECK(parsed + rejected == 300);
}
