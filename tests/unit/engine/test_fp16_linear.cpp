// The fp16 backend's CPU linear: exact double-accumulation semantics, thread-count independence, its loader.
#include "backends/fp16/fp16_backend.hpp"
#include "backends/fp16/fp16_linear.hpp"
#include "memory_source.hpp"
#include "qbench/common/half.hpp"
#include "qbench/config/cell.hpp"

#include <catch2/catch.hpp>

using namespace qbench;

TEST_CASE("f16 cpu linear: y = fp16(sum in double), independent of threading", "[engine][fp16]") {
    // rows * out * in = 20 * 512 * 512 is above the threading threshold; single rows are below it.
    const std::int64_t rows = 20, out = 512, in = 512;
    const host_tensor w = test::random_f16(1, "w", {out, in}, 0.05f, 0.0f);
    const host_tensor xt = test::random_f16(2, "x", {rows, in}, 1.0f, 0.0f);
    const std::vector<float> x = to_float_vector(xt), wf = to_float_vector(w);
    const auto linear = make_f16_cpu_linear(w);
    CHECK(linear->in_features() == in);
    CHECK(linear->out_features() == out);
    CHECK(linear->weight_bytes() == static_cast<std::uint64_t>(out * in * 2));
    CHECK(linear->format_name() == "f16");

    std::vector<float> y(rows * out, -1.0f);
    linear->forward(x.data(), rows, y.data());
    for (std::int64_t r = 0; r < rows; ++r) {
        std::vector<float> single(out, -1.0f);
        linear->forward(x.data() + r * in, 1, single.data());
        CHECK(std::equal(single.begin(), single.end(), y.begin() + r * out));
    }
    for (std::int64_t r = 0; r < rows; r += 7)
        for (std::int64_t o = 0; o < out; o += 13) {
            double acc = 0;
            for (std::int64_t i = 0; i < in; ++i) acc += static_cast<double>(x[r * in + i]) * wf[o * in + i];
            CHECK(y[r * out + o] == round_to_half(static_cast<float>(acc)));
        }
    CHECK_THROWS_AS(make_f16_cpu_linear(make_f32_tensor(x, {rows, in})), qbench::error);
}

TEST_CASE("fp16 backend: name, bits, loader errors", "[engine][fp16]") {
    const auto b = make_fp16_backend();
    CHECK(b->name() == "fp16");
    CHECK(b->supported_bits() == std::vector<std::int64_t>{16});
    cell_spec cell;
    CHECK(b->supports(cell).ok);
    cell.bits = 4;
    const support s = b->supports(cell);
    CHECK_FALSE(s.ok);
    CHECK_THAT(s.reason, Catch::Contains("16"));

    test::memory_source source;
    source.add("model.layers.0.self_attn.q_proj.weight", test::random_f16(3, "q", {8, 4}, 0.1f, 0.0f));
    const cell_spec fp16_cell;
    const linear_request ok{source, "model.layers.0.self_attn.q_proj", linear_kind::q_proj, 4, 8, fp16_cell};
    CHECK(b->load_cpu_linear(ok)->out_features() == 8);
    const linear_request transposed{source, "model.layers.0.self_attn.q_proj", linear_kind::q_proj, 8, 4, fp16_cell};
    CHECK_THROWS_AS(b->load_cpu_linear(transposed), input_error);
    const linear_request missing{source, "model.layers.0.self_attn.k_proj", linear_kind::k_proj, 4, 8, fp16_cell};
    CHECK_THROWS_WITH(b->load_cpu_linear(missing), Catch::Contains("model.layers.0.self_attn.k_proj.weight"));
}
