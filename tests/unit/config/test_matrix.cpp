// Matrix YAML: expansion (CI-matrix semantics), options, auto values, filters, every kind of bad input, and the real
// configs/*.yaml.
#include "qbench/common/errors.hpp"
#include "qbench/config/matrix.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <set>

using Catch::Matchers::Contains;

namespace {

qbench::model_config make_model(const std::string& name, std::int64_t max_position, std::int64_t image_tokens) {
    qbench::model_config m;
    m.name = name;
    m.hidden_size = 256;
    m.intermediate_size = 688;
    m.num_layers = 2;
    m.num_heads = 8;
    m.num_kv_heads = 4;
    m.vocab_size = 512;
    m.max_position = max_position;
    m.minigpt4_image_tokens = image_tokens;
    return m;
}

// A small in-test catalog, so these tests do not depend on the data files (those are tested at the end).
const qbench::catalog& test_catalog() {
    static const qbench::catalog c = [] {
        qbench::catalog c;
        for (const auto& m : {make_model("tiny", 512, 8), make_model("vicuna-7b-v0", 2048, 32),
                              make_model("llama-2-7b-chat", 4096, 64)})
            c.models[m.name] = m;
        c.instances["local"] = qbench::local_instance();
        qbench::instance_profile g5;
        g5.name = "g5.2xlarge";
        g5.vram_usable_bytes = 23028ull << 20;
        g5.host_ram_bytes = 32ull << 30;
        c.instances[g5.name] = g5;
        return c;
    }();
    return c;
}

qbench::matrix parse(const std::string& yaml) { return qbench::parse_matrix(yaml, "m.yaml", test_catalog()); }

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const qbench::input_error& e) {
        return e.what();
    }
    return "(no input_error)";
}

std::string parse_error(const std::string& yaml) {
    return error_of([&] { parse(yaml); });
}

std::vector<std::string> labels(const std::vector<qbench::cell_spec>& cells) {
    std::vector<std::string> out;
    for (const auto& c : cells) out.push_back(qbench::cell_label(c));
    return out;
}

// The smallest valid matrix around the given axes lines.
std::string with_axes(const std::string& axes, const std::string& rest = "") { return "matrix:\n" + axes + rest; }

}  // namespace

TEST_CASE("matrix: axes expand to their product in a fixed order", "[cpu][config][matrix]") {
    // Written in a scrambled order on purpose: the order of expansion does not depend on it.
    const qbench::matrix m = parse(with_axes("  beam: [1, 2]\n"
                                             "  bits: [4, 8]\n"
                                             "  instance: [local, g5.2xlarge]\n"
                                             "  framework: [gptq, bnb]\n"
                                             "  model: [tiny, vicuna-7b-v0]\n"));
    REQUIRE(m.cells.size() == 2 * 2 * 2 * 2 * 2);
    const auto l = labels(m.cells);
    // model slowest, then framework, bits, instance, beam fastest.
    CHECK(l[0] == "tiny gptq 4b g128 beam1 local");
    CHECK(l[1] == "tiny gptq 4b g128 beam2 local");
    CHECK(l[2] == "tiny gptq 4b g128 beam1 g5.2xlarge");
    CHECK(l[4] == "tiny gptq 8b g128 beam1 local");
    CHECK(l[8] == "tiny bnb 4b nf4 beam1 local");
    CHECK(l[16] == "vicuna-7b-v0 gptq 4b g128 beam1 local");
    CHECK(l[31] == "vicuna-7b-v0 bnb 8b beam2 g5.2xlarge");
    CHECK(m.name == "m");  // no name: the file name
}

TEST_CASE("matrix: any axis may be a scalar or a list", "[cpu][config][matrix]") {
    const auto a = parse(with_axes("  model: tiny\n  framework: fp16\n  bits: 16\n  beam: 1\n  instance: local\n"));
    const auto b = parse(with_axes("  model: [tiny]\n  framework: [fp16]\n  bits: [16]\n  beam: [1]\n  instance: [local]\n"));
    REQUIRE(a.cells.size() == 1);
    REQUIRE(b.cells.size() == 1);
    CHECK(qbench::cell_hash(a.cells[0]) == qbench::cell_hash(b.cells[0]));
    // beam and instance default to 1 and local.
    const auto c = parse(with_axes("  model: tiny\n  framework: fp16\n  bits: 16\n"));
    REQUIRE(c.cells.size() == 1);
    CHECK(qbench::cell_hash(c.cells[0]) == qbench::cell_hash(a.cells[0]));
}

TEST_CASE("matrix: exclude removes combinations matching all keys of an entry", "[cpu][config][matrix]") {
    const std::string axes = "  model: tiny\n  framework: [gptq, bnb]\n  bits: [2, 4, 8]\n  beam: [1, 2]\n";
    CHECK(parse(with_axes(axes)).cells.size() == 12);
    // Both keys must match: only bnb 2 goes (both beams).
    const auto one = parse(with_axes(axes, "  exclude:\n    - {framework: bnb, bits: 2}\n"));
    CHECK(one.cells.size() == 10);
    for (const auto& c : one.cells) CHECK_FALSE((c.framework == "bnb" && c.bits == 2));
    // One key matches more; several entries each remove what they match; an entry matching nothing removes nothing.
    const auto more = parse(with_axes(axes, "  exclude:\n    - {beam: 2}\n    - {framework: gptq, bits: 8}\n"
                                            "    - {framework: gptq, bits: 16}\n"));
    CHECK(labels(more.cells) == std::vector<std::string>{"tiny gptq 2b g128 beam1 local", "tiny gptq 4b g128 beam1 local",
                                                         "tiny bnb 2b beam1 local", "tiny bnb 4b nf4 beam1 local",
                                                         "tiny bnb 8b beam1 local"});
}

TEST_CASE("matrix: include extends matching combinations when it changes no original value", "[cpu][config][matrix]") {
    const auto m = parse(with_axes("  model: tiny\n  framework: [gptq, bnb]\n  bits: [4, 8]\n",
                                   "  include:\n"
                                   "    - {generation.max_new_tokens: 16}\n"
                                   "    - {framework: bnb, generation.max_new_tokens: 24}\n"
                                   "    - {bits: 4, generation.mode: sample}\n"));
    REQUIRE(m.cells.size() == 4);  // nothing added
    for (const auto& c : m.cells) {
        // The first entry applies to all; the second changes a value the first added (allowed) on bnb only.
        CHECK(c.generation.max_new_tokens == (c.framework == "bnb" ? 24 : 16));
        // The third leaves bits 8 alone, since it would change that original value.
        CHECK(c.generation.mode == (c.bits == 4 ? "sample" : "greedy"));
    }
}

TEST_CASE("matrix: include adds a new combination when it would change an original value", "[cpu][config][matrix]") {
    const auto m = parse(with_axes("  model: tiny\n  framework: gptq\n  bits: [4, 8]\n  beam: [1, 2]\n",
                                   "  include:\n"
                                   "    - {framework: fp16, bits: 16, beam: 1}\n"
                                   "    - {framework: fp16, bits: 16, beam: 2, generation.max_new_tokens: 12}\n"));
    REQUIRE(m.cells.size() == 6);
    // New combinations come after the product, in include order; the single-valued model axis fills them in.
    CHECK(qbench::cell_label(m.cells[4]) == "tiny fp16 16b beam1 local");
    CHECK(qbench::cell_label(m.cells[5]) == "tiny fp16 16b beam2 local");
    CHECK(m.cells[5].generation.max_new_tokens == 12);
    CHECK(m.cells[4].generation.max_new_tokens == 32);  // cell_spec default
    // A new combination missing a multi-valued axis has no way to choose: an error at the include entry.
    const std::string e = parse_error(with_axes("  model: [tiny, vicuna-7b-v0]\n  framework: gptq\n  bits: 4\n",
                                                "  include:\n    - {framework: fp16, bits: 16}\n"));
    CHECK_THAT(e, Contains("m.yaml:6:7 (key 'matrix.include[0]')") && Contains("combination without 'model'"));
}

TEST_CASE("matrix: a matrix of include entries only lists its cells", "[cpu][config][matrix]") {
    const auto m = parse(with_axes("  include:\n"
                                   "    - {model: tiny, framework: gptq, bits: 4}\n"
                                   "    - {model: tiny, framework: bnb, bits: 3, beam: 2}\n"));
    CHECK(labels(m.cells) == std::vector<std::string>{"tiny gptq 4b g128 beam1 local", "tiny bnb 3b beam2 local"});
}

TEST_CASE("matrix: option axes multiply only the cells they apply to", "[cpu][config][matrix]") {
    const auto m = parse(with_axes("  model: tiny\n  framework: [gptq, bnb]\n  bits: [4, 8]\n"
                                   "  bnb.quant_type: [nf4, fp4]\n  gptq.group_size: [64, 128]\n"));
    CHECK(labels(m.cells) == std::vector<std::string>{
                                 "tiny gptq 4b g64 beam1 local", "tiny gptq 4b g128 beam1 local",
                                 "tiny gptq 8b g64 beam1 local", "tiny gptq 8b g128 beam1 local",
                                 "tiny bnb 4b nf4 beam1 local", "tiny bnb 4b fp4 beam1 local", "tiny bnb 8b beam1 local"});
    // Exclude works on option axes too.
    const auto e = parse(with_axes("  model: tiny\n  framework: bnb\n  bits: 4\n  bnb.quant_type: [nf4, fp4]\n"
                                   "  bnb.double_quant: [false, true]\n",
                                   "  exclude:\n    - {bnb.quant_type: fp4, bnb.double_quant: true}\n"));
    CHECK(labels(e.cells) == std::vector<std::string>{"tiny bnb 4b nf4 beam1 local", "tiny bnb 4b nf4-dq beam1 local",
                                                      "tiny bnb 4b fp4 beam1 local"});
}

TEST_CASE("matrix: sections set options; an axis overrides its section", "[cpu][config][matrix]") {
    const auto m = parse("seed: 7\n"
                         "matrix:\n  model: tiny\n  framework: gptq\n  bits: 4\n  gptq.damp_percent: [0.05]\n"
                         "gptq:\n  group_size: 32\n  desc_act: yes\n  damp_percent: 0.1\n  calibration_samples: 8\n"
                         "  calibration_seq_len: 64\n"
                         "bnb:\n  quant_type: fp4\n"
                         "generation:\n  mode: sample\n  temperature: 0.7\n  top_k: 40\n  top_p: 0.9\n"
                         "  warmup: 0\n  repetitions: 5\n");
    REQUIRE(m.cells.size() == 1);
    const auto& c = m.cells[0];
    CHECK(c.seed == 7);
    CHECK(c.gptq.group_size == 32);
    CHECK(c.gptq.desc_act);
    CHECK(c.gptq.damp_percent == 0.05);
    CHECK(c.gptq.calibration_samples == 8);
    CHECK(c.bnb.quant_type == "fp4");  // set, though a gptq cell does not show it
    CHECK(c.generation.mode == "sample");
    CHECK(c.generation.temperature == 0.7);
    CHECK(c.generation.top_k == 40);
    CHECK(c.generation.warmup == 0);
    CHECK(c.generation.repetitions == 5);
}

TEST_CASE("matrix: image_tokens and prompt_tokens auto", "[cpu][config][matrix]") {
    const auto m = parse(with_axes("  model: [tiny, vicuna-7b-v0, llama-2-7b-chat]\n  framework: fp16\n  bits: 16\n",
                                   "generation:\n  prompt_tokens: auto\n  image_tokens: auto\n"));
    REQUIRE(m.cells.size() == 3);
    CHECK(m.cells[0].generation.image_tokens == 8);
    CHECK(m.cells[1].generation.image_tokens == 32);
    CHECK(m.cells[2].generation.image_tokens == 64);
    for (const auto& c : m.cells) CHECK(c.generation.prompt_tokens == 55);
    // auto is also the default for image tokens; an explicit number wins.
    const auto d = parse(with_axes("  model: llama-2-7b-chat\n  framework: fp16\n  bits: 16\n"));
    CHECK(d.cells[0].generation.image_tokens == 64);
    const auto e = parse(with_axes("  model: llama-2-7b-chat\n  framework: fp16\n  bits: 16\n",
                                   "generation:\n  image_tokens: 5\n"));
    CHECK(e.cells[0].generation.image_tokens == 5);
}

TEST_CASE("matrix: a combination a backend cannot run is still a cell", "[cpu][config][matrix]") {
    const auto m = parse(with_axes("  model: tiny\n  framework: [bnb, fp16]\n  bits: [3, 4]\n"));
    CHECK(m.cells.size() == 4);  // bnb 3 and fp16 3/4 become `unsupported` records at run time, not parse errors
}

TEST_CASE("matrix: identical cells are kept once", "[cpu][config][matrix]") {
    // Both entries change the original framework, so each becomes a new combination; the second equals the first.
    const auto m = parse(with_axes("  model: tiny\n  framework: gptq\n  bits: 4\n",
                                   "  include:\n    - {framework: fp16, bits: 16}\n    - {framework: fp16, bits: 16}\n"));
    CHECK(labels(m.cells) == std::vector<std::string>{"tiny gptq 4b g128 beam1 local", "tiny fp16 16b beam1 local"});
}

TEST_CASE("matrix: filters select cells by axis or option", "[cpu][config][matrix]") {
    const auto m = parse(with_axes("  model: tiny\n  framework: [gptq, bnb]\n  bits: [4, 8]\n  beam: [1, 2]\n"));
    REQUIRE(m.cells.size() == 8);
    CHECK(qbench::apply_filters(m.cells, {}).size() == 8);
    CHECK(qbench::apply_filters(m.cells, {"bits=4"}).size() == 4);
    CHECK(qbench::apply_filters(m.cells, {"bits=4", "framework=bnb"}).size() == 2);
    CHECK(qbench::apply_filters(m.cells, {"framework=gptq,bnb", "beam=2"}).size() == 4);
    // An option filters out the cells that do not carry it.
    CHECK(qbench::apply_filters(m.cells, {"gptq.group_size=128"}).size() == 4);
    CHECK(qbench::apply_filters(m.cells, {"bnb.quant_type=nf4"}).size() == 4);
    CHECK(qbench::apply_filters(m.cells, {"bnb.quant_type=fp4"}).empty());
    CHECK(qbench::apply_filters(m.cells, {"model=vicuna-7b-v0"}).empty());

    CHECK_THAT(error_of([&] { qbench::apply_filters(m.cells, {"bitz=4"}); }),
               Contains("--filter:key 'bitz': unknown key; did you mean 'bits'?"));
    CHECK_THAT(error_of([&] { qbench::apply_filters(m.cells, {"bits=four"}); }),
               Contains("key 'bits'") && Contains("expected an integer"));
    CHECK_THAT(error_of([&] { qbench::apply_filters(m.cells, {"bits=5"}); }), Contains("must be one of"));
    CHECK_THAT(error_of([&] { qbench::apply_filters(m.cells, {"bits"}); }), Contains("expected KEY=VALUE"));
}

TEST_CASE("matrix: errors name file, line:column and key", "[cpu][config][matrix][errors]") {
    SECTION("YAML syntax") {
        CHECK_THAT(parse_error("matrix:\n  model: [tiny,\n  bits: 4\n"),
                   Contains("m.yaml:") && Contains("YAML syntax error"));
    }
    SECTION("unknown keys, with the nearest known one") {
        CHECK_THAT(parse_error("matrx:\n  model: tiny\n"),
                   Contains("m.yaml:1:1 (key 'matrx'): unknown key 'matrx'") && Contains("did you mean 'matrix'?"));
        CHECK_THAT(parse_error(with_axes("  model: tiny\n  framwork: gptq\n  bits: 4\n")),
                   Contains("m.yaml:3:3 (key 'matrix.framwork')") && Contains("did you mean 'framework'?"));
        CHECK_THAT(parse_error(with_axes("  model: tiny\n  framework: gptq\n  bits: 4\n", "gptq:\n  grop_size: 64\n")),
                   Contains("m.yaml:6:3 (key 'gptq.grop_size')") && Contains("did you mean 'group_size'?"));
        CHECK_THAT(parse_error(with_axes("  model: tiny\n  framework: gptq\n  bits: 4\n",
                                         "  include:\n    - {framework: gptq, colour: red}\n")),
                   Contains("m.yaml:6:25 (key 'matrix.include[0].colour')") && Contains("unknown key 'colour'"));
    }
    SECTION("wrong types") {
        CHECK_THAT(parse_error(with_axes("  model: tiny\n  framework: gptq\n  bits: four\n")),
                   Contains("m.yaml:4:9 (key 'matrix.bits'): expected an integer, got 'four'"));
        CHECK_THAT(parse_error(with_axes("  model: tiny\n  framework: gptq\n  bits: [4, \"8\"]\n")),
                   Contains("m.yaml:4:13 (key 'matrix.bits'): expected an integer, got quoted '8'"));
        CHECK_THAT(parse_error(with_axes("  model: tiny\n  framework: gptq\n  bits: {a: 1}\n")),
                   Contains("m.yaml:4:9 (key 'matrix.bits')") && Contains("got a map"));
        CHECK_THAT(parse_error(with_axes("  model: tiny\n  framework: gptq\n  bits:\n")),
                   Contains("m.yaml:4:3 (key 'matrix.bits')") && Contains("an empty value"));
        CHECK_THAT(parse_error(with_axes("  model: tiny\n  framework: gptq\n  bits: 4\n", "gptq:\n  desc_act: maybe\n")),
                   Contains("m.yaml:6:13 (key 'gptq.desc_act'): expected true or false"));
        CHECK_THAT(parse_error(with_axes("  model: tiny\n  framework: gptq\n  bits: 4\n", "gptq:\n  damp_percent: 1%\n")),
                   Contains("(key 'gptq.damp_percent'): expected a number"));
        CHECK_THAT(parse_error(with_axes("  model: tiny\n  framework: gptq\n  bits: 4\n", "generation: [1]\n")),
                   Contains("m.yaml:5:13 (key 'generation'): expected a map"));
        CHECK_THAT(parse_error("- a\n- b\n"), Contains("m.yaml:1:1") && Contains("expected a map"));
    }
    SECTION("values out of range") {
        const std::string axes = "  model: tiny\n  framework: gptq\n";
        CHECK_THAT(parse_error(with_axes(axes + "  bits: [4, 5]\n")),
                   Contains("m.yaml:4:13 (key 'matrix.bits'): must be one of 2, 3, 4, 8, 16, got 5"));
        CHECK_THAT(parse_error(with_axes(axes + "  bits: 4\n  beam: 0\n")),
                   Contains("m.yaml:5:9 (key 'matrix.beam'): must be in [1, 64]"));
        CHECK_THAT(parse_error(with_axes(axes + "  bits: 4\n", "gptq:\n  group_size: 100\n")),
                   Contains("(key 'gptq.group_size'): must be -1 (one group per row) or a power of two >= 32"));
        CHECK_THAT(parse_error(with_axes(axes + "  bits: 4\n", "bnb:\n  blocksize: 16\n")),
                   Contains("(key 'bnb.blocksize'): must be a power of two in [32, 4096]"));
        CHECK_THAT(parse_error(with_axes(axes + "  bits: 4\n", "gptq:\n  damp_percent: 0\n")),
                   Contains("(key 'gptq.damp_percent'): must be in (0, 1]"));
        CHECK_THAT(parse_error(with_axes(axes + "  bits: 4\n", "bnb:\n  quant_type: int4\n")),
                   Contains("(key 'bnb.quant_type'): must be one of nf4, fp4, got 'int4'"));
        CHECK_THAT(parse_error(with_axes(axes + "  bits: 4\n", "generation:\n  image_tokens: -3\n")),
                   Contains("must be >= 0 or auto"));
        CHECK_THAT(parse_error(with_axes(axes + "  bits: 4\n", "generation:\n  repetitions: 0\n")),
                   Contains("(key 'generation.repetitions'): must be in [1, 100000]"));
        CHECK_THAT(parse_error(with_axes("  model: tiny\n  framework: awq\n  bits: 4\n")),
                   Contains("m.yaml:3:14 (key 'matrix.framework'): must be one of fp16, gptq, bnb, got 'awq'"));
    }
    SECTION("unknown catalog names") {
        CHECK_THAT(parse_error(with_axes("  model: [tiny, vicuna-7b]\n  framework: gptq\n  bits: 4\n")),
                   Contains("m.yaml:2:17 (key 'matrix.model'): unknown model 'vicuna-7b'; did you mean 'vicuna-7b-v0'?"));
        CHECK_THAT(parse_error(with_axes("  model: tiny\n  framework: gptq\n  bits: 4\n  instance: g5.2xl\n")),
                   Contains("m.yaml:5:13 (key 'matrix.instance'): unknown instance 'g5.2xl'; did you mean 'g5.2xlarge'?"));
        CHECK_THAT(parse_error(with_axes("  model: gpt-j\n  framework: gptq\n  bits: 4\n")),
                   Contains("unknown model 'gpt-j'; known: llama-2-7b-chat, tiny, vicuna-7b-v0"));
        // Names in exclude entries are checked too (a typo there would silently exclude nothing).
        CHECK_THAT(parse_error(with_axes("  model: tiny\n  framework: gptq\n  bits: 4\n",
                                         "  exclude:\n    - {model: tinny}\n")),
                   Contains("m.yaml:6:15 (key 'matrix.exclude[0].model'): unknown model 'tinny'; did you mean 'tiny'?"));
    }
    SECTION("structure") {
        const std::string axes = "  model: tiny\n  framework: gptq\n  bits: 4\n";
        CHECK_THAT(parse_error(""), Contains("m.yaml: empty matrix file"));
        CHECK_THAT(parse_error("name: x\n"), Contains("missing key 'matrix'"));
        CHECK_THAT(parse_error("matrix: {}\n"), Contains("m.yaml:1:1 (key 'matrix'): no axes"));
        CHECK_THAT(parse_error(with_axes("  framework: gptq\n  bits: 4\n")),
                   Contains("m.yaml:1:1 (key 'matrix'): combination without 'model'"));
        CHECK_THAT(parse_error(with_axes(axes + "  bits: 8\n")), Contains("m.yaml:5:3 (key 'matrix.bits'): duplicate key"));
        CHECK_THAT(parse_error(with_axes("  model: tiny\n  framework: gptq\n  bits: [4, 8, 4]\n")),
                   Contains("m.yaml:4:16 (key 'matrix.bits'): duplicate value '4'"));
        CHECK_THAT(parse_error(with_axes("  model: tiny\n  framework: gptq\n  bits: []\n")),
                   Contains("m.yaml:4:9 (key 'matrix.bits'): empty list"));
        CHECK_THAT(parse_error(with_axes(axes, "  exclude:\n    - {beam: 2}\n")),
                   Contains("m.yaml:6:8 (key 'matrix.exclude[0].beam'): 'beam' is not an axis of this matrix"));
        CHECK_THAT(parse_error(with_axes(axes, "  exclude: {bits: 4}\n")),
                   Contains("m.yaml:5:12 (key 'matrix.exclude'): expected a list of maps"));
        CHECK_THAT(parse_error(with_axes(axes, "  include:\n    - bits\n")),
                   Contains("m.yaml:6:7 (key 'matrix.include[0]'): expected a map"));
        CHECK_THAT(parse_error(with_axes(axes, "  include:\n    - {bits: [4, 8]}\n")),
                   Contains("(key 'matrix.include[0].bits'): an include entry takes one value per key"));
        CHECK_THAT(parse_error(with_axes(axes, "gptq:\n  group_size: [64, 128]\n")),
                   Contains("m.yaml:6:15 (key 'gptq.group_size'): a list is not a value here") &&
                       Contains("'matrix: {gptq.group_size: [...]}'"));
        CHECK_THAT(parse_error(with_axes(axes, "---\nmatrix: {}\n")),
                   Contains("m.yaml:5:1: more than one YAML document"));
        // yaml-cpp 0.7 never returns from LoadAll on these (a document that consumes nothing); they must be errors.
        CHECK_THAT(parse_error(","), Contains("m.yaml:1:1: YAML syntax error: unexpected ','"));
        // Everything ends up in JSON, which must be UTF-8.
        CHECK_THAT(parse_error(with_axes(axes, "generation:\n  prompt: \"a\x9f\"\n")),
                   Contains("m.yaml:6:13: not UTF-8 text (byte 0x9F)"));
        CHECK_THAT(parse_error("\xed\xa0\x80: 1\n"), Contains("m.yaml:1:1: not UTF-8 text (byte 0xED)"));  // a surrogate
        // UTF-8 file, but yaml-cpp 0.7 unescapes "\_" (U+00A0) to the single byte 0xA0 (fuzz_matrix found it).
        CHECK_THAT(parse_error(with_axes(axes, "generation:\n  prompt: \"a\\_b\"\n")),
                   Contains("m.yaml:6:11 (key 'generation.prompt'): text that is not UTF-8 after YAML unescaping"));
        CHECK_THAT(parse_error("name: \xc3\xa9t\xc3\xa9\n"), Contains("missing key 'matrix'"));  // real UTF-8 is fine
        CHECK_THAT(parse_error(",aname:"), Contains("m.yaml:1:1: YAML syntax error"));
        CHECK_THAT(parse_error("---\n,\n"), Contains("m.yaml:2:1: YAML syntax error"));
    }
    SECTION("checks against the model") {
        const std::string axes = "  model: [tiny, vicuna-7b-v0]\n  framework: gptq\n  bits: 4\n";
        // The default calibration length (2048) shrinks to a shorter context instead of failing.
        const auto m = parse(with_axes(axes));
        CHECK(m.cells[0].gptq.calibration_seq_len == 512);
        CHECK(m.cells[1].gptq.calibration_seq_len == 2048);
        CHECK_THAT(parse_error(with_axes(axes, "generation:\n  prompt_tokens: 100\n  max_new_tokens: 500\n")),
                   Contains("m.yaml:7:19 (key 'generation.max_new_tokens'): image_tokens 8 + prompt_tokens 100 + "
                            "max_new_tokens 500 = 608 exceed the max_position 512 of model 'tiny'"));
        CHECK_THAT(parse_error(with_axes(axes, "gptq:\n  calibration_seq_len: 1024\n")),
                   Contains("m.yaml:6:24 (key 'gptq.calibration_seq_len'): calibration_seq_len 1024 exceeds the "
                            "max_position 512 of model 'tiny'"));
    }
    SECTION("sizes") {
        std::string values = "[";
        for (int i = 1; i <= 30; ++i) values += (i > 1 ? ", " : "") + std::to_string(i);
        values += "]";
        CHECK_THAT(parse_error(with_axes("  model: tiny\n  framework: gptq\n  bits: 4\n  generation.max_new_tokens: " +
                                         values + "\n  generation.warmup: " + values + "\n  generation.repetitions: " +
                                         values + "\n")),
                   Contains("m.yaml:1:1 (key 'matrix'): the axes expand to more than 20000 combinations"));
        const std::string deep = "matrix: " + std::string(100, '[') + std::string(100, ']') + "\n";
        CHECK_THAT(parse_error(deep), Contains("nesting deeper than 64 levels"));
        const std::string deeper = "matrix: " + std::string(5000, '[') + "\n";
        CHECK_THAT(parse_error(deeper), Contains("m.yaml: nesting deeper than 64 levels"));
        std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
        for (char c = 'b'; c <= 'j'; ++c) {
            const char prev = static_cast<char>(c - 1);
            bomb += std::string(1, c) + ": &" + c + " [*" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" +
                    prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + "]\n";
        }
        CHECK_THAT(parse_error(bomb), Contains("document too large once anchors and aliases are expanded"));
    }
}

TEST_CASE("matrix: the matrix keeps what was given, for provenance", "[cpu][config][matrix]") {
    const std::string yaml = "name: study\ndescription: a test\nmatrix:\n  model: tiny\n  framework: gptq\n  bits: [4, 8]\n"
                             "gptq:\n  damp_percent: 0.05\n  sym: \"yes\"\n";
    // sym "yes" in quotes is text, not a boolean.
    CHECK_THAT(parse_error(yaml), Contains("(key 'gptq.sym'): expected true or false, got quoted 'yes'"));
    const std::string ok = "name: study\ndescription: a test\nmatrix:\n  model: tiny\n  framework: gptq\n  bits: [4, 8]\n"
                           "gptq:\n  damp_percent: 0.05\n  sym: no\n  memory_plan: \"streaming\"\n";
    const auto m = parse(ok);
    CHECK(m.file == "m.yaml");
    CHECK(m.name == "study");
    CHECK(m.description == "a test");
    CHECK(m.yaml_text == ok);
    CHECK(m.as_given["matrix"]["bits"] == nlohmann::json::array({4, 8}));
    CHECK(m.as_given["gptq"]["damp_percent"] == 0.05);
    CHECK(m.as_given["gptq"]["sym"] == false);
    CHECK(m.as_given["gptq"]["memory_plan"] == "streaming");
    CHECK_FALSE(m.cells[0].gptq.sym);
}

TEST_CASE("matrix: describe_cells prints one aligned line per cell", "[cpu][config][matrix]") {
    const auto m = parse(with_axes("  model: tiny\n  framework: [gptq, bnb]\n  bits: [4, 8]\n"));
    const std::string text = qbench::describe_cells(m.cells);
    CHECK_THAT(text, Contains("#  model  framework  bits  beam  instance  format"));
    CHECK_THAT(text, Contains("g128 cal 128x512"));  // the default 2048 shrunk to tiny's context
    CHECK_THAT(text, Contains("nf4 bs64"));
    CHECK_THAT(text, Contains("int8 t6.0"));
    CHECK_THAT(text, Contains("8+16->32 greedy x3"));
    for (const auto& c : m.cells) CHECK_THAT(text, Contains(qbench::cell_hash(c)));
    CHECK_THAT(text, Contains("\n4 cells\n"));
}

// The real matrices against the real catalogs: they must always load, and the seed study has its 189 cells.
TEST_CASE("matrix: configs/*.yaml load and expand", "[cpu][config][matrix][data]") {
    const auto dir = std::filesystem::path(QBENCH_SOURCE_DIR) / "configs";
    const qbench::catalog cat = qbench::load_catalog(dir);
    std::size_t matrices = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        if (entry.path().extension() != ".yaml") continue;
        // Files that are not matrices (e.g. a claims file other parts own) carry no `matrix:` key.
        const std::string text = [&] {
            std::ifstream in(entry.path());
            return std::string(std::istreambuf_iterator<char>(in), {});
        }();
        if (text.find("\nmatrix:") == std::string::npos && text.rfind("matrix:", 0) != 0) continue;
        INFO(entry.path().string());
        const qbench::matrix m = qbench::load_matrix(entry.path(), cat);
        CHECK_FALSE(m.cells.empty());
        std::set<std::string> hashes;
        for (const auto& c : m.cells) CHECK(hashes.insert(qbench::cell_hash(c)).second);
        ++matrices;
    }
    CHECK(matrices >= 3);

    const qbench::matrix seed = qbench::load_matrix(dir / "minigpt4.yaml", cat);
    CHECK(seed.name == "minigpt4");
    REQUIRE(seed.cells.size() == 3 * 7 * 3 * 3);
    std::map<std::string, std::set<std::int64_t>> bits_of;
    std::set<std::string> models, instances;
    std::set<std::int64_t> beams;
    for (const auto& c : seed.cells) {
        bits_of[c.framework].insert(c.bits);
        models.insert(c.model);
        instances.insert(c.instance);
        beams.insert(c.beam);
        CHECK(c.generation.repetitions == 10);
        CHECK(c.generation.prompt == "Describe this image");
        CHECK(c.generation.image_tokens == (c.model == "llama-2-7b-chat" ? 64 : 32));
    }
    CHECK(bits_of["gptq"] == std::set<std::int64_t>{2, 3, 4, 8});
    CHECK(bits_of["bnb"] == std::set<std::int64_t>{4, 8});
    CHECK(bits_of["fp16"] == std::set<std::int64_t>{16});
    CHECK(models == std::set<std::string>{"vicuna-7b-v0", "vicuna-13b-v0", "llama-2-7b-chat"});
    CHECK(instances == std::set<std::string>{"g4dn.2xlarge", "g5.2xlarge", "g5.4xlarge"});
    CHECK(beams == std::set<std::int64_t>{1, 2, 4});

    const qbench::matrix smoke = qbench::load_matrix(dir / "smoke.yaml", cat);
    CHECK(smoke.cells.size() == 16);
    CHECK(qbench::apply_filters(smoke.cells, {"framework=bnb", "bits=3"}).size() == 2);
    for (const auto& c : smoke.cells) {
        CHECK(c.model == "tiny");
        CHECK(c.instance == "local");
        CHECK(c.generation.max_new_tokens <= 16);
    }
}
