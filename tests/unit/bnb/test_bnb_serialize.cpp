// bitsandbytes' safetensors serialization: state-dict keys and the quant_state JSON, round trips through memory and
// through files, a file written byte by byte from the specification, and malformed inputs.
#include "backends/bnb/bnb_quant_ref.hpp"
#include "backends/bnb/bnb_serialize.hpp"
#include "bnb_test_util.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/io/tensor_source.hpp"

#include <catch2/catch.hpp>

#include <cstring>
#include <nlohmann/json.hpp>

using namespace qbench;
using namespace qbench::bnb;

namespace {

void check_same(const quant_4bit_weight& a, const quant_4bit_weight& b) {
    CHECK(a.type == b.type);
    CHECK(a.rows == b.rows);
    CHECK(a.cols == b.cols);
    CHECK(a.blocksize == b.blocksize);
    CHECK(a.code == b.code);
    CHECK(a.packed == b.packed);
    CHECK(a.nested == b.nested);
    CHECK(a.absmax == b.absmax);
    if (a.nested) {
        CHECK(a.nested_state.codes == b.nested_state.codes);
        CHECK(a.nested_state.absmax == b.nested_state.absmax);
        CHECK(a.nested_state.code == b.nested_state.code);
        CHECK(a.nested_state.blocksize == b.nested_state.blocksize);
        CHECK(a.nested_state.offset == b.nested_state.offset);
    }
}

test::memory_source to_source(const std::vector<named_tensor>& entries) {
    test::memory_source s;
    for (const auto& e : entries) s.add(e.name, e.tensor);
    return s;
}

}  // namespace

TEST_CASE("bnb serialize: 4-bit state-dict keys, dtypes, shapes and JSON", "[cpu][bnb]") {
    const std::vector<float> v = test::random_weights(61, 4 * 64, 0.1f);
    const std::string p = "model.layers.0.mlp.down_proj";
    SECTION("plain absmax") {
        const quant_4bit_weight w = quantize_4bit_ref(v, 4, 64, {quant_type::nf4, 64, false});
        const auto entries = state_dict_4bit(p, w);
        std::map<std::string, host_tensor> m;
        for (const auto& e : entries) m[e.name] = e.tensor;
        REQUIRE(m.size() == 4);
        CHECK(m.at(p + ".weight").type == dtype::u8);
        CHECK(m.at(p + ".weight").shape == std::vector<std::int64_t>{128, 1});
        CHECK(m.at(p + ".weight.absmax").type == dtype::f32);
        CHECK(m.at(p + ".weight.absmax").shape == std::vector<std::int64_t>{4});
        CHECK(m.at(p + ".weight.quant_map").shape == std::vector<std::int64_t>{16});
        const host_tensor& qs = m.at(p + ".weight.quant_state.bitsandbytes__nf4");
        CHECK(qs.type == dtype::u8);
        const std::string json(reinterpret_cast<const char*>(qs.data.data()), qs.data.size());
        CHECK(json == R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float16", "shape": [4, 64]})");
    }
    SECTION("nested absmax") {
        const quant_4bit_weight w = quantize_4bit_ref(v, 4, 64, {quant_type::fp4, 32, true});
        const auto entries = state_dict_4bit(p, w);
        std::map<std::string, host_tensor> m;
        for (const auto& e : entries) m[e.name] = e.tensor;
        REQUIRE(m.size() == 6);
        CHECK(m.at(p + ".weight.absmax").type == dtype::u8);  // codes, not floats
        CHECK(m.at(p + ".weight.absmax").shape == std::vector<std::int64_t>{8});
        CHECK(m.at(p + ".weight.nested_absmax").shape == std::vector<std::int64_t>{1});
        CHECK(m.at(p + ".weight.nested_quant_map").shape == std::vector<std::int64_t>{256});
        const host_tensor& qs = m.at(p + ".weight.quant_state.bitsandbytes__fp4");
        const auto j = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(qs.data.data()), qs.data.size()));
        CHECK(j["quant_type"] == "fp4");
        CHECK(j["blocksize"] == 32);
        CHECK(j["nested_blocksize"] == 256);
        CHECK(j["nested_dtype"] == "float32");
        CHECK(j["nested_offset"].get<float>() == w.nested_state.offset);
        // Key order as Python's json.dumps writes QuantState.as_dict.
        const std::string text(reinterpret_cast<const char*>(qs.data.data()), qs.data.size());
        CHECK(text.find("\"quant_type\"") < text.find("\"blocksize\""));
        CHECK(text.find("\"shape\"") < text.find("\"nested_blocksize\""));
        CHECK(text.find("\"nested_dtype\"") < text.find("\"nested_offset\""));
    }
}

TEST_CASE("bnb serialize: round trips through memory", "[cpu][bnb]") {
    const std::int64_t rows = 9, cols = 37;  // odd element count: padded last byte
    const std::vector<float> v = test::random_weights(62, rows * cols, 0.1f);
    for (bool dq : {false, true})
        for (quant_type t : {quant_type::nf4, quant_type::fp4}) {
            const quant_4bit_weight w = quantize_4bit_ref(v, rows, cols, {t, 64, dq});
            const test::memory_source s = to_source(state_dict_4bit("lin", w));
            CHECK(has_prequantized_4bit(s, "lin"));
            CHECK_FALSE(has_prequantized_int8(s, "lin"));
            check_same(read_4bit(s, "lin"), w);
        }
    const int8_weight w8 = quantize_int8_ref(v, rows, cols);
    const test::memory_source s8 = to_source(state_dict_int8("lin8", w8));
    CHECK(has_prequantized_int8(s8, "lin8"));
    const int8_weight back = read_int8(s8, "lin8");
    CHECK(back.rows == rows);
    CHECK(back.cols == cols);
    CHECK(back.cb == w8.cb);
    CHECK(back.scb == w8.scb);
}

TEST_CASE("bnb serialize: round trip through a safetensors file", "[cpu][bnb]") {
    const test::temp_dir dir("roundtrip");
    const std::vector<float> v = test::random_weights(63, 32 * 128, 0.05f);
    const quant_4bit_weight w = quantize_4bit_ref(v, 32, 128, {quant_type::nf4, 64, true});
    const int8_weight w8 = quantize_int8_ref(v, 32, 128);
    std::vector<named_tensor> entries = state_dict_4bit("model.layers.0.self_attn.q_proj", w);
    for (auto& e : state_dict_int8("model.layers.0.self_attn.k_proj", w8)) entries.push_back(std::move(e));
    write_state_dict(dir.path() / "model.safetensors", entries);
    CHECK(open_checkpoint(dir.path() / "model.safetensors")->metadata().at("format") == "pt");
    CHECK_THROWS_AS(write_state_dict(dir.path() / "twice.safetensors", {entries[0], entries[0]}), error);
    const auto source = open_checkpoint(dir.path() / "model.safetensors");
    check_same(read_4bit(*source, "model.layers.0.self_attn.q_proj"), w);
    const int8_weight back = read_int8(*source, "model.layers.0.self_attn.k_proj");
    CHECK(back.cb == w8.cb);
    CHECK(back.scb == w8.scb);
}

TEST_CASE("bnb serialize: a file written from the specification reads back", "[cpu][bnb]") {
    // What bitsandbytes saves for a Linear4bit of shape [2, 64] (NF4, blocksize 64, double quantization) and a
    // Linear8bitLt of shape [2, 4], written byte by byte; values chosen by hand.
    const test::temp_dir dir("spec");
    const std::string p = "model.layers.3.mlp.gate_proj";
    std::vector<std::uint8_t> packed(64);
    for (int j = 0; j < 64; ++j) packed[static_cast<std::size_t>(j)] = static_cast<std::uint8_t>(j % 2 ? 0x8F : 0x07);
    const std::vector<std::uint8_t> absmax_codes = {255, 0};
    const std::vector<float> nested_absmax = {0.5f};
    const std::vector<float> qmap(k_nf4_code.begin(), k_nf4_code.end());
    const auto& dmap = dynamic_map_signed();
    const std::vector<float> nested_map(dmap.begin(), dmap.end());
    const std::string js =
        R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float16", "shape": [2, 64], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 1.0})";
    const std::vector<std::uint8_t> json_bytes(js.begin(), js.end());
    const std::vector<std::int8_t> cb = {127, -64, 0, 1, -127, 2, 3, 4};
    const std::vector<float> scb = {2.0f, 0.5f};
    const std::vector<std::uint8_t> fmt = {0};
    test::write_spec_safetensors(
        dir.path() / "bnb.safetensors",
        {test::spec(p + ".weight", "U8", {64, 1}, packed), test::spec(p + ".weight.absmax", "U8", {2}, absmax_codes),
         test::spec(p + ".weight.nested_absmax", "F32", {1}, nested_absmax),
         test::spec(p + ".weight.nested_quant_map", "F32", {256}, nested_map),
         test::spec(p + ".weight.quant_map", "F32", {16}, qmap),
         test::spec(p + ".weight.quant_state.bitsandbytes__nf4", "U8", {static_cast<std::int64_t>(json_bytes.size())}, json_bytes),
         test::spec("model.layers.3.mlp.up_proj.weight", "I8", {2, 4}, cb),
         test::spec("model.layers.3.mlp.up_proj.SCB", "F32", {2}, scb),
         test::spec("model.layers.3.mlp.up_proj.weight_format", "U8", {}, fmt)});
    const auto source = open_checkpoint(dir.path() / "bnb.safetensors");

    const quant_4bit_weight w = read_4bit(*source, p);
    CHECK(w.rows == 2);
    CHECK(w.cols == 64);
    CHECK(w.nested);
    CHECK(w.nested_state.offset == 1.0f);
    // Block 0: code 255 (= 1.0) * 0.5 + 1 = 1.5; block 1: code 0 (= -0.99296875) * 0.5 + 1.
    CHECK(block_absmax(w, 0) == 1.5f);
    CHECK(block_absmax(w, 1) == dmap[0] * 0.5f + 1.0f);
    // Bytes 0x07 / 0x8F: elements (code 0 = -1, code 7 = 0), (code 8, code 15 = 1).
    const std::vector<float> d = dequantize_4bit_ref(w);
    CHECK(d[0] == -1.5f);
    CHECK(d[1] == 0.0f);
    CHECK(d[2] == round_to_half(k_nf4_code[8] * 1.5f));
    CHECK(d[3] == 1.5f);
    CHECK(d[67] == round_to_half(block_absmax(w, 1)));

    const int8_weight w8 = read_int8(*source, "model.layers.3.mlp.up_proj");
    CHECK(w8.rows == 2);
    CHECK(w8.cols == 4);
    CHECK(w8.cb == cb);
    CHECK(w8.scb == scb);
    CHECK(int8_weight_value(w8, 0, 1) == -64.0f * 2.0f / 127.0f);
}

TEST_CASE("bnb serialize: malformed serializations are input errors naming the tensor", "[cpu][bnb]") {
    const std::vector<float> v = test::random_weights(64, 2 * 64, 0.1f);
    const quant_4bit_weight w = quantize_4bit_ref(v, 2, 64, {quant_type::nf4, 64, false});
    SECTION("missing quant_map") {
        test::memory_source s = to_source(state_dict_4bit("lin", w));
        s.erase("lin.weight.quant_map");
        CHECK_THROWS_WITH(read_4bit(s, "lin"), Catch::Contains("lin.weight.quant_map"));
    }
    SECTION("both quant states") {
        test::memory_source s = to_source(state_dict_4bit("lin", w));
        s.add("lin.weight.quant_state.bitsandbytes__fp4", host_tensor::zeros(dtype::u8, {2}));
        CHECK_THROWS_AS(read_4bit(s, "lin"), input_error);
    }
    SECTION("packed size does not match the JSON shape") {
        test::memory_source s = to_source(state_dict_4bit("lin", w));
        s.add("lin.weight", host_tensor::zeros(dtype::u8, {63, 1}));
        CHECK_THROWS_WITH(read_4bit(s, "lin"), Catch::Contains("expected 64 bytes"));
    }
    SECTION("bad JSON") {
        test::memory_source s = to_source(state_dict_4bit("lin", w));
        const std::string bad = "{\"quant_type\": \"nf4\", \"blocksize\": 48, \"shape\": [2, 64]}";
        host_tensor t = host_tensor::zeros(dtype::u8, {static_cast<std::int64_t>(bad.size())});
        std::memcpy(t.data.data(), bad.data(), bad.size());
        s.add("lin.weight.quant_state.bitsandbytes__nf4", t);
        CHECK_THROWS_WITH(read_4bit(s, "lin"), Catch::Contains("blocksize 48"));
        host_tensor junk = host_tensor::zeros(dtype::u8, {3});
        s.add("lin.weight.quant_state.bitsandbytes__nf4", junk);
        CHECK_THROWS_WITH(read_4bit(s, "lin"), Catch::Contains("not valid JSON"));
    }
    SECTION("int8 in a col32 layout") {
        test::memory_source s = to_source(state_dict_int8("lin8", quantize_int8_ref(v, 2, 64)));
        host_tensor f = host_tensor::zeros(dtype::u8, {});
        f.data[0] = std::byte{1};
        s.add("lin8.weight_format", f);
        CHECK_THROWS_WITH(read_int8(s, "lin8"), Catch::Contains("only the row layout"));
    }
    SECTION("int8 SCB of the wrong length") {
        test::memory_source s = to_source(state_dict_int8("lin8", quantize_int8_ref(v, 2, 64)));
        s.add("lin8.SCB", host_tensor::zeros(dtype::f32, {3}));
        CHECK_THROWS_WITH(read_int8(s, "lin8"), Catch::Contains("lin8.SCB"));
    }
}
