#include "qbench/report/cell_selector.hpp"

#include "qbench/config/cell.hpp"
#include "results_builder.hpp"

#include <catch2/catch.hpp>

using namespace qbench;

TEST_CASE("cell_selector: glob patterns match whole names", "[cpu][report]") {
    CHECK(glob_match("g5.*", "g5.2xlarge"));
    CHECK_FALSE(glob_match("g5.*", "g4dn.2xlarge"));
    CHECK(glob_match("*-7b*", "vicuna-7b-v0"));
    CHECK(glob_match("*-7b*", "llama-2-7b-chat"));
    CHECK_FALSE(glob_match("*-7b*", "vicuna-13b-v0"));
    CHECK(glob_match("g?dn*", "g4dn.xlarge"));
    CHECK(glob_match("*", ""));
    CHECK_FALSE(glob_match("abc", "abcd"));
    CHECK_FALSE(glob_match("a*c", "abcb"));
    CHECK(glob_match("a*b*c", "aXbYbZc"));
}

TEST_CASE("cell_selector: equality, lists, ranges and missing keys", "[cpu][report]") {
    const nlohmann::json bnb = cell_to_json(test::with_quant_type(test::make_cell("vicuna-13b-v0", "bnb", 4, 2), "fp4"));
    const nlohmann::json fp16 = cell_to_json(test::make_cell("vicuna-13b-v0", "fp16", 16, 1));

    cell_selector s;
    s.conditions.push_back({"bits", {4}, {}, {}});
    CHECK(s.matches(bnb));
    CHECK_FALSE(s.matches(fp16));

    s.conditions = {{"bits", {8, 16}, {}, {}}};
    CHECK(s.matches(fp16));
    CHECK_FALSE(s.matches(bnb));

    s.conditions = {{"beam", {}, 2.0, {}}};
    CHECK(s.matches(bnb));
    CHECK_FALSE(s.matches(fp16));
    CHECK(s.conditions[0].describe() == "beam>=2");

    // An fp16 cell carries no bnb options, so it cannot match a condition on them.
    s.conditions = {{"bnb.quant_type", {"fp4"}, {}, {}}};
    CHECK(s.matches(bnb));
    CHECK_FALSE(s.matches(fp16));

    s.conditions = {{"model", {"*-13b*"}, {}, {}}, {"framework", {"fp16"}, {}, {}}};
    CHECK(s.matches(fp16));
    CHECK_FALSE(s.matches(bnb));
    CHECK(s.describe() == "model=*-13b* framework=fp16");
    CHECK(cell_selector{}.matches(bnb));
}

TEST_CASE("cell_selector: keys without the varied parameters pair cells", "[cpu][report]") {
    const nlohmann::json nf4 = cell_to_json(test::make_cell("m", "bnb", 4, 1));
    const nlohmann::json fp4 = cell_to_json(test::with_quant_type(test::make_cell("m", "bnb", 4, 1), "fp4"));
    const nlohmann::json fp16 = cell_to_json(test::make_cell("m", "fp16", 16, 1));
    const nlohmann::json fp16_beam2 = cell_to_json(test::make_cell("m", "fp16", 16, 2));

    const std::vector<std::string> by_type = {"bnb.quant_type"};
    CHECK(cell_key_without(nf4, by_type) == cell_key_without(fp4, by_type));
    CHECK(cell_key_without(nf4, std::vector<std::string>{}) != cell_key_without(fp4, std::vector<std::string>{}));

    const std::vector<std::string> by_format = {"framework", "bits", "bnb"};
    CHECK(cell_key_without(nf4, by_format) == cell_key_without(fp16, by_format));
    CHECK(cell_key_without(fp16_beam2, by_format) != cell_key_without(fp16, by_format));
    // Removing only bits leaves the framework apart.
    CHECK(cell_key_without(nf4, std::vector<std::string>{"bits"}) !=
          cell_key_without(fp16, std::vector<std::string>{"bits"}));
}
