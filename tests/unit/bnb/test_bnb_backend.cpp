// The bnb backend on the CPU: supports() and its reasons, loading linears from an FP16 checkpoint or from a
// bitsandbytes serialization, and the CPU linears' outputs.
#include "backends/bnb/bnb_backend.hpp"
#include "backends/bnb/bnb_linear_cpu.hpp"
#include "backends/bnb/bnb_quant_ref.hpp"
#include "backends/bnb/bnb_serialize.hpp"
#include "backends/quant_format.hpp"
#include "bnb_test_util.hpp"
#include "qbench/common/errors.hpp"

#include <catch2/catch.hpp>

using namespace qbench;
using namespace qbench::bnb;

namespace {

cell_spec bnb_cell(std::int64_t bits) {
    cell_spec c;
    c.model = "tiny";
    c.framework = "bnb";
    c.bits = bits;
    return c;
}

std::vector<float> forward(const cpu_linear& l, const std::vector<float>& x, std::int64_t m) {
    std::vector<float> y(static_cast<std::size_t>(m * l.out_features()), -12345.0f);
    l.forward(x.data(), m, y.data());
    return y;
}

}  // namespace

TEST_CASE("bnb backend: supports() and its reasons", "[cpu][bnb]") {
    const auto backend = make_bnb_backend();
    CHECK(backend->name() == "bnb");
    CHECK(backend->supported_bits() == std::vector<std::int64_t>{4, 8, 16});
    for (std::int64_t bits : {2, 3}) {
        const support s = backend->supports(bnb_cell(bits));
        CHECK_FALSE(s.ok);
        CHECK(s.reason == "bitsandbytes has no 2/3-bit format");
    }
    CHECK(backend->supports(bnb_cell(4)).ok);
    CHECK(backend->supports(bnb_cell(8)).ok);
    CHECK(backend->supports(bnb_cell(16)).ok);
    CHECK_THAT(backend->supports(bnb_cell(5)).reason, Catch::Contains("no 5-bit format"));

    cell_spec c = bnb_cell(4);
    c.bnb.quant_type = "int4";
    CHECK_THAT(backend->supports(c).reason, Catch::Contains("quant_type 'int4'"));
    c = bnb_cell(4);
    c.bnb.quant_type = "fp4";
    c.bnb.double_quant = true;
    c.bnb.blocksize = 4096;
    CHECK(backend->supports(c).ok);
    c.bnb.blocksize = 48;
    CHECK_THAT(backend->supports(c).reason, Catch::Contains("blocksize 48"));
    c.bnb.blocksize = 8192;
    CHECK_FALSE(backend->supports(c).ok);
    c = bnb_cell(4);
    c.bnb.compute_dtype = "bfloat16";
    CHECK_THAT(backend->supports(c).reason, Catch::Contains("compute_dtype 'bfloat16'"));
    c = bnb_cell(4);
    c.bnb.small_batch_path = "magic";
    CHECK_FALSE(backend->supports(c).ok);
    c = bnb_cell(8);
    c.bnb.int8_threshold = -1.0;
    CHECK_FALSE(backend->supports(c).ok);
    c = bnb_cell(4);
    c.framework = "gptq";
    CHECK_FALSE(backend->supports(c).ok);
}

TEST_CASE("bnb backend: CPU linears from an FP16 checkpoint", "[cpu][bnb]") {
    const auto backend = make_bnb_backend();
    const std::int64_t out = 48, in = 128, m = 3;
    const std::vector<float> wv = test::random_weights(41, out * in, 0.09f);
    test::memory_source source;
    source.add("model.layers.0.mlp.up_proj.weight", test::f16_tensor(wv, {out, in}));
    source.add("lm_head.weight", test::f16_tensor(wv, {out, in}));
    const std::vector<float> x = test::random_activations(42, m, in, 32);

    SECTION("nf4 / fp4 with and without double quantization") {
        const auto type = GENERATE(std::string("nf4"), std::string("fp4"));
        const bool dq = GENERATE(false, true);
        cell_spec cell = bnb_cell(4);
        cell.bnb.quant_type = type;
        cell.bnb.double_quant = dq;
        cell.bnb.blocksize = 32;
        const linear_request req{source, "model.layers.0.mlp.up_proj", linear_kind::up_proj, in, out, cell};
        const auto linear = backend->load_cpu_linear(req);
        const quant_type qt = type == "nf4" ? quant_type::nf4 : quant_type::fp4;
        CHECK(linear->format_name() == format_name_4bit(qt, 32, dq));
        const quant_format f = qt == quant_type::nf4 ? quant_format::bnb_nf4 : quant_format::bnb_fp4;
        CHECK(linear->weight_bytes() == packed_weight_bytes(f, out, in, 32, dq));
        const quant_4bit_weight w = quantize_4bit_ref(wv, out, in, {qt, 32, dq});
        std::vector<float> expected(static_cast<std::size_t>(m * out));
        matmul_4bit_ref(w, x.data(), m, expected.data());
        CHECK(forward(*linear, x, m) == expected);
    }
    SECTION("int8 with the cell's threshold") {
        cell_spec cell = bnb_cell(8);
        cell.bnb.int8_threshold = 6.0;
        const linear_request req{source, "model.layers.0.mlp.up_proj", linear_kind::up_proj, in, out, cell};
        const auto linear = backend->load_cpu_linear(req);
        CHECK(linear->format_name() == "bnb-int8-t6");
        CHECK(linear->weight_bytes() == packed_weight_bytes(quant_format::bnb_int8, out, in));
        std::vector<float> expected(static_cast<std::size_t>(m * out));
        matmul_int8_ref(quantize_int8_ref(wv, out, in), x.data(), m, 6.0f, expected.data());
        CHECK(forward(*linear, x, m) == expected);
    }
    SECTION("lm_head and bits 16 stay fp16") {
        const cell_spec cell4 = bnb_cell(4);
        const linear_request head{source, "lm_head", linear_kind::lm_head, in, out, cell4};
        CHECK(backend->load_cpu_linear(head)->format_name() == "f16");
        const cell_spec cell16 = bnb_cell(16);
        const linear_request up{source, "model.layers.0.mlp.up_proj", linear_kind::up_proj, in, out, cell16};
        const auto linear = backend->load_cpu_linear(up);
        CHECK(linear->format_name() == "f16");
        CHECK(linear->weight_bytes() == static_cast<std::uint64_t>(out * in * 2));
    }
    SECTION("a wrong shape or dtype is an input error naming the tensor") {
        const cell_spec cell = bnb_cell(4);
        const linear_request req{source, "model.layers.0.mlp.up_proj", linear_kind::up_proj, in + 1, out, cell};
        CHECK_THROWS_WITH(backend->load_cpu_linear(req), Catch::Contains("model.layers.0.mlp.up_proj.weight"));
        const linear_request missing{source, "model.layers.1.mlp.up_proj", linear_kind::up_proj, in, out, cell};
        CHECK_THROWS_AS(backend->load_cpu_linear(missing), input_error);
    }
}

TEST_CASE("bnb backend: prequantized bitsandbytes linears load as they are", "[cpu][bnb]") {
    const auto backend = make_bnb_backend();
    const std::int64_t out = 16, in = 64;
    const std::vector<float> wv = test::random_weights(51, out * in, 0.2f);
    const quant_4bit_weight w = quantize_4bit_ref(wv, out, in, {quant_type::nf4, 64, true});
    test::memory_source source;
    for (auto& e : state_dict_4bit("model.layers.0.self_attn.q_proj", w)) source.add(e.name, std::move(e.tensor));
    const int8_weight w8 = quantize_int8_ref(wv, out, in);
    for (auto& e : state_dict_int8("model.layers.0.self_attn.k_proj", w8)) source.add(e.name, std::move(e.tensor));

    cell_spec cell = bnb_cell(4);
    cell.bnb.double_quant = true;
    const linear_request q{source, "model.layers.0.self_attn.q_proj", linear_kind::q_proj, in, out, cell};
    const auto linear = backend->load_cpu_linear(q);
    CHECK(linear->format_name() == "bnb-nf4-bs64-dq");
    const std::vector<float> x = test::random_activations(52, 2, in, 0);
    std::vector<float> expected(static_cast<std::size_t>(2 * out));
    matmul_4bit_ref(w, x.data(), 2, expected.data());
    CHECK(forward(*linear, x, 2) == expected);

    cell.bnb.quant_type = "fp4";  // the checkpoint holds nf4: refuse rather than mislabel the cell
    const linear_request q_fp4{source, "model.layers.0.self_attn.q_proj", linear_kind::q_proj, in, out, cell};
    CHECK_THROWS_WITH(backend->load_cpu_linear(q_fp4), Catch::Contains("holds bnb-nf4-bs64-dq"));

    const cell_spec cell8 = bnb_cell(8);
    const linear_request k{source, "model.layers.0.self_attn.k_proj", linear_kind::k_proj, in, out, cell8};
    const auto l8 = backend->load_cpu_linear(k);
    std::vector<float> expected8(static_cast<std::size_t>(2 * out));
    matmul_int8_ref(w8, x.data(), 2, 6.0f, expected8.data());
    CHECK(forward(*l8, x, 2) == expected8);
}
