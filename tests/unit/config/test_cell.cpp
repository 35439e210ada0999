// cell_spec <-> JSON, the config hash --resume relies on, and labels.
#include "qbench/common/errors.hpp"
#include "qbench/config/cell.hpp"

#include <catch2/catch.hpp>

#include <functional>
#include <set>

using Catch::Matchers::Contains;

namespace {

qbench::cell_spec sample_cell(const std::string& framework) {
    qbench::cell_spec c;
    c.model = "vicuna-7b-v0";
    c.framework = framework;
    c.bits = framework == "fp16" ? 16 : 4;
    c.beam = 2;
    c.instance = "g5.2xlarge";
    c.seed = 42;
    c.gptq.group_size = 64;
    c.gptq.desc_act = true;
    c.gptq.damp_percent = 0.025;
    c.bnb.quant_type = "fp4";
    c.bnb.double_quant = true;
    c.bnb.int8_threshold = 5.5;
    c.generation.prompt_tokens = 55;
    c.generation.image_tokens = 32;
    c.generation.max_new_tokens = 64;
    c.generation.mode = "sample";
    c.generation.top_p = 0.9;
    c.generation.repetitions = 10;
    return c;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const qbench::input_error& e) {
        return e.what();
    }
    return "(no input_error)";
}

}  // namespace

TEST_CASE("cell: cell_to_json carries framework options only for their framework", "[cpu][config][cell]") {
    const nlohmann::json g = qbench::cell_to_json(sample_cell("gptq"));
    CHECK(g.contains("gptq"));
    CHECK_FALSE(g.contains("bnb"));
    CHECK(g["gptq"]["group_size"] == 64);
    CHECK(g["gptq"]["desc_act"] == true);
    CHECK(g["generation"]["mode"] == "sample");
    CHECK(g["generation"]["prompt"] == "Describe this image");
    CHECK(g["seed"] == 42);

    const nlohmann::json b = qbench::cell_to_json(sample_cell("bnb"));
    CHECK(b.contains("bnb"));
    CHECK_FALSE(b.contains("gptq"));
    CHECK(b["bnb"]["quant_type"] == "fp4");
    CHECK(b["bnb"]["int8_threshold"] == 5.5);

    const nlohmann::json f = qbench::cell_to_json(sample_cell("fp16"));
    CHECK_FALSE(f.contains("gptq"));
    CHECK_FALSE(f.contains("bnb"));
    for (const char* key : {"model", "framework", "bits", "beam", "instance", "seed", "generation"})
        CHECK(f.contains(key));
}

TEST_CASE("cell: cell_from_json inverts cell_to_json", "[cpu][config][cell]") {
    for (const std::string framework : {"fp16", "gptq", "bnb"}) {
        const qbench::cell_spec c = sample_cell(framework);
        const nlohmann::json j = qbench::cell_to_json(c);
        const qbench::cell_spec back = qbench::cell_from_json(j, "cell.json");
        CHECK(qbench::cell_to_json(back) == j);
        CHECK(qbench::cell_hash(back) == qbench::cell_hash(c));
        CHECK(back.generation.top_p == c.generation.top_p);
        CHECK(back.seed == 42);
        // Through text too, as the runner hands cells to child processes.
        const qbench::cell_spec reparsed = qbench::cell_from_json(nlohmann::json::parse(j.dump()), "cell.json");
        CHECK(qbench::cell_hash(reparsed) == qbench::cell_hash(c));
    }
}

TEST_CASE("cell: image_tokens auto is written as \"auto\" and read back", "[cpu][config][cell]") {
    qbench::cell_spec c = sample_cell("fp16");
    c.generation.image_tokens = -1;
    const nlohmann::json j = qbench::cell_to_json(c);
    CHECK(j["generation"]["image_tokens"] == "auto");
    CHECK(qbench::cell_from_json(j, "x").generation.image_tokens == -1);
}

TEST_CASE("cell: cell_hash is stable and tells cells apart", "[cpu][config][cell]") {
    const qbench::cell_spec c = sample_cell("gptq");
    const std::string h = qbench::cell_hash(c);
    REQUIRE(h.size() == 16);
    CHECK(h.find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(qbench::cell_hash(c) == h);
    // A golden value: FNV-1a 64 of the canonical JSON dump. If this changes, results recorded before the change are
    // no longer recognised by --resume: change it only together with the cell's JSON form, on purpose.
    qbench::cell_spec golden;
    golden.model = "tiny";
    golden.framework = "fp16";
    CHECK(qbench::cell_to_json(golden).dump() ==
          R"({"beam":1,"bits":16,"framework":"fp16","generation":{"image_tokens":"auto","max_new_tokens":32,)"
          R"("mode":"greedy","prompt":"Describe this image","prompt_tokens":16,"repetitions":3,"temperature":1.0,)"
          R"("top_k":0,"top_p":1.0,"warmup":1},"instance":"local","model":"tiny","seed":0})");
    CHECK(qbench::cell_hash(golden) == "28757a59a7fd9195");

    // Every parameter that matters changes the hash; options of another framework do not.
    std::set<std::string> hashes = {h};
    const std::vector<std::function<void(qbench::cell_spec&)>> changes = {
        [](qbench::cell_spec& x) { x.model = "tiny"; },
        [](qbench::cell_spec& x) { x.bits = 8; },
        [](qbench::cell_spec& x) { x.beam = 4; },
        [](qbench::cell_spec& x) { x.instance = "local"; },
        [](qbench::cell_spec& x) { x.seed = 43; },
        [](qbench::cell_spec& x) { x.gptq.group_size = 128; },
        [](qbench::cell_spec& x) { x.gptq.damp_percent = 0.01; },
        [](qbench::cell_spec& x) { x.generation.max_new_tokens = 65; },
        [](qbench::cell_spec& x) { x.generation.prompt = "Describe this picture"; },
    };
    for (const auto& change : changes) {
        qbench::cell_spec d = c;
        change(d);
        CHECK(hashes.insert(qbench::cell_hash(d)).second);
    }
    qbench::cell_spec other_framework_option = c;
    other_framework_option.bnb.quant_type = "nf4";
    CHECK(qbench::cell_hash(other_framework_option) == h);
}

TEST_CASE("cell: cell_from_json rejects bad cells with the key", "[cpu][config][cell]") {
    const nlohmann::json good = qbench::cell_to_json(sample_cell("gptq"));
    CHECK_THAT(error_of([] { qbench::cell_from_json(nlohmann::json::array(), "c.json"); }),
               Contains("c.json: a cell must be a JSON object"));
    nlohmann::json j = good;
    j.erase("model");
    CHECK_THAT(error_of([&] { qbench::cell_from_json(j, "c.json"); }), Contains("c.json:key 'model': missing key"));
    j = good;
    j["bitz"] = 4;
    CHECK_THAT(error_of([&] { qbench::cell_from_json(j, "c.json"); }),
               Contains("key 'bitz'") && Contains("did you mean 'bits'?"));
    j = good;
    j["bits"] = "4";
    CHECK_THAT(error_of([&] { qbench::cell_from_json(j, "c.json"); }),
               Contains("key 'bits'") && Contains("expected an integer, got string"));
    j = good;
    j["bits"] = 5;
    CHECK_THAT(error_of([&] { qbench::cell_from_json(j, "c.json"); }), Contains("must be one of 2, 3, 4, 8, 16"));
    j = good;
    j["framework"] = "awq";
    CHECK_THAT(error_of([&] { qbench::cell_from_json(j, "c.json"); }),
               Contains("key 'framework'") && Contains("must be one of fp16, gptq, bnb"));
    j = good;
    j["bnb"] = nlohmann::json::object();
    CHECK_THAT(error_of([&] { qbench::cell_from_json(j, "c.json"); }),
               Contains("key 'bnb'") && Contains("in a cell of framework 'gptq'"));
    j = good;
    j["gptq"]["grop_size"] = 128;
    CHECK_THAT(error_of([&] { qbench::cell_from_json(j, "c.json"); }),
               Contains("key 'gptq.grop_size'") && Contains("did you mean 'group_size'?"));
    j = good;
    j["gptq"]["group_size"] = 100;
    CHECK_THAT(error_of([&] { qbench::cell_from_json(j, "c.json"); }), Contains("power of two >= 32"));
    j = good;
    j["seed"] = 18446744073709551615ull;
    CHECK_THAT(error_of([&] { qbench::cell_from_json(j, "c.json"); }), Contains("key 'seed'"));
}

TEST_CASE("cell: cell_label names the cell and its format", "[cpu][config][cell]") {
    CHECK(qbench::cell_label(sample_cell("gptq")) == "vicuna-7b-v0 gptq 4b g64-act beam2 g5.2xlarge");
    CHECK(qbench::cell_label(sample_cell("bnb")) == "vicuna-7b-v0 bnb 4b fp4-dq beam2 g5.2xlarge");
    CHECK(qbench::cell_label(sample_cell("fp16")) == "vicuna-7b-v0 fp16 16b beam2 g5.2xlarge");
}
