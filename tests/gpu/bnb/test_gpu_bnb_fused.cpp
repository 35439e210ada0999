// Fused linears of the bnb backend (cuda/fused_linear.hpp) at batch 1: q, k, v as one team launch and gate/up with
// the SwiGLU product in its epilogue. The contract is bit-identity with the separate path (forward() of each, then
// launch_swiglu), checked on raw fp16 bits for NF4, FP4 (plain and double-quantized, several block sizes) and
// LLM.int8() at thresholds 6 and 0, on Llama-7B shapes and awkward ones; the separate forwards are also checked against
// the CPU linears on the small shapes (the int8 threshold-6 outlier pick is exercised with many outliers per thread).
// Every case where fusion does not apply must return false and enqueue nothing. o_proj / down_proj's residual add and
// the next RMSNorm in their epilogue are checked against forward() then launch_rms_norm, bit for bit.
#include "backends/bnb/bnb_backend.hpp"
#include "backends/bnb/bnb_kernels.cuh"
#include "backends/bnb/bnb_quant_ref.hpp"
#include "cuda/device_context.cuh"
#include "cuda/fused_linear.hpp"
#include "cuda/rms_norm.cuh"
#include "cuda/swiglu.cuh"
#include "gpu_bnb_util.hpp"
#include "gpu_bnb_weight.hpp"
#include "../../unit/bnb/bnb_test_util.hpp"

#include <catch2/catch.hpp>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace qbench;
using namespace qbench::bnb;
using namespace qbench::bnb::test;

namespace {

cell_spec cell_of(std::int64_t bits, const std::string& type, bool dq, std::int64_t blocksize, double threshold) {
    cell_spec c;
    c.model = "test";
    c.framework = "bnb";
    c.bits = bits;
    c.bnb.quant_type = type;
    c.bnb.double_quant = dq;
    c.bnb.blocksize = blocksize;
    c.bnb.int8_threshold = threshold;
    return c;
}

std::string describe(const cell_spec& c) {
    if (c.bits == 8) return "int8 t" + std::to_string(c.bnb.int8_threshold);
    return c.bnb.quant_type + " bs" + std::to_string(c.bnb.blocksize) + (c.bnb.double_quant ? " dq" : "");
}

std::vector<cell_spec> all_cells() {
    return {cell_of(4, "nf4", false, 64, 6),  cell_of(4, "fp4", false, 64, 6),  cell_of(4, "nf4", true, 64, 6),
            cell_of(4, "fp4", true, 128, 6),  cell_of(4, "nf4", false, 32, 6),  cell_of(8, "nf4", false, 64, 6),
            cell_of(8, "nf4", false, 64, 0)};
}

std::vector<std::uint16_t> half_bits(const dev<__half>& d) {
    std::vector<std::uint16_t> bits(d.size());
    cuda_ok(cudaDeviceSynchronize(), "kernel");
    cuda_ok(cudaMemcpy(bits.data(), d.get(), bits.size() * 2, cudaMemcpyDeviceToHost), "download bits");
    return bits;
}

// Index of the first differing element, or -1.
std::int64_t first_difference(const std::vector<std::uint16_t>& a, const std::vector<std::uint16_t>& b) {
    if (a.size() != b.size()) return 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i] != b[i]) return static_cast<std::int64_t>(i);
    return -1;
}

// Linears named p0, p1, ... of one input width in a memory source (weights made once, shared by every cell).
struct weight_set {
    std::int64_t in = 0;
    std::vector<std::int64_t> outs;
    std::vector<std::vector<float>> values;
    memory_source source;
};

std::unique_ptr<weight_set> make_set(std::int64_t in, std::vector<std::int64_t> outs, std::uint64_t seed) {
    auto s = std::make_unique<weight_set>();
    s->in = in;
    s->outs = std::move(outs);
    for (std::size_t i = 0; i < s->outs.size(); ++i) {
        s->values.push_back(random_weights(seed + i, s->outs[i] * in, 0.02f));
        s->source.add("p" + std::to_string(i) + ".weight", f16_tensor(s->values.back(), {s->outs[i], in}));
    }
    return s;
}

std::unique_ptr<device_linear> load(const backend& b, const weight_set& s, std::size_t i, const cell_spec& cell,
                                    device_context& context) {
    const linear_request req{s.source, "p" + std::to_string(i), linear_kind::q_proj, s.in, s.outs[i], cell};
    return b.load_device_linear(req, context);
}

// The separate path's output of one linear (poisoned first: an unwritten element shows up as NaN bits).
dev<__half> separate(device_linear& l, const dev<__half>& x, cudaStream_t stream) {
    dev<__half> y(static_cast<std::size_t>(l.out_features()));
    y.poison();
    l.forward(x.get(), 1, y.get(), stream);
    return y;
}

// Checks the GPU forward of linear i against the backend's CPU linear (small shapes; the tolerance of
// test_gpu_bnb_linear).
void check_against_cpu(const backend& b, const weight_set& s, std::size_t i, const cell_spec& cell,
                       const std::vector<float>& x, const std::vector<std::uint16_t>& got_bits) {
    const linear_request req{s.source, "p" + std::to_string(i), linear_kind::q_proj, s.in, s.outs[i], cell};
    const auto cpu = b.load_cpu_linear(req);
    std::vector<float> ref(static_cast<std::size_t>(s.outs[i]));
    cpu->forward(x.data(), 1, ref.data());
    std::vector<float> wdq = s.values[i];
    if (cell.bits == 4)
        wdq = dequantize_4bit_ref(quantize_4bit_ref(
            s.values[i], s.outs[i], s.in,
            {cell.bnb.quant_type == "nf4" ? quant_type::nf4 : quant_type::fp4, cell.bnb.blocksize, cell.bnb.double_quant}));
    const std::vector<double> sc = abs_product(x, wdq, 1, s.outs[i], s.in);
    std::vector<float> got(got_bits.size());
    for (std::size_t j = 0; j < got.size(); ++j) got[j] = half_to_float(got_bits[j]);
    const comparison c = compare(got, ref, sc, cell.bits == 8 ? 2e-4 : 2e-3, 2.0 / 1024, 1e-6);
    INFO("CPU parity " << describe(cell) << " [" << s.outs[i] << ", " << s.in << "] first bad " << c.first_bad
                       << " worst " << c.worst_ratio);
    CHECK(c.bad == 0);
}

}  // namespace

TEST_CASE("gpu bnb fused: forward_group equals the separate forwards bit for bit", "[gpu][bnb][fused]") {
    device_context context;
    const auto backend = make_bnb_backend();
    cudaStream_t stream = context.stream();
    // 7B q/k/v; awkward widths (5 slices: one partial warp; 17 slices) with member sizes that split batches unevenly;
    // the down_proj width (344 slices, 352-thread teams); a group of one.
    std::vector<std::unique_ptr<weight_set>> sets;
    sets.push_back(make_set(4096, {4096, 4096, 4096}, 100));
    sets.push_back(make_set(160, {96, 33, 7}, 200));
    sets.push_back(make_set(544, {1, 300, 41}, 300));
    sets.push_back(make_set(11008, {64, 515}, 400));
    sets.push_back(make_set(256, {129}, 500));
    for (const cell_spec& cell : all_cells()) {
        for (const auto& set : sets) {
            std::vector<std::unique_ptr<device_linear>> lin;
            for (std::size_t i = 0; i < set->outs.size(); ++i) lin.push_back(load(*backend, *set, i, cell, context));
            auto* fused = dynamic_cast<fused_linear*>(lin[0].get());
            REQUIRE(fused != nullptr);
            // Outlier columns every 53 (a few per team) and every 5 (several per thread: the walk over the bits).
            for (const std::int64_t every : {std::int64_t{53}, std::int64_t{5}}) {
                const std::vector<float> xv = random_activations(static_cast<std::uint64_t>(set->in + every), 1, set->in, every);
                const dev<__half> x = to_device_half(xv);
                std::vector<dev<__half>> ys;
                std::vector<void*> yp;
                std::vector<device_linear*> others;
                for (std::size_t i = 0; i < lin.size(); ++i) {
                    ys.emplace_back(static_cast<std::size_t>(set->outs[i]));
                    ys.back().poison();
                    yp.push_back(ys.back().get());
                    if (i > 0) others.push_back(lin[i].get());
                }
                const bool ok = fused->forward_group(others.data(), static_cast<int>(others.size()), x.get(), 1,
                                                     yp.data(), stream);
                INFO(describe(cell) << " in " << set->in << " members " << lin.size() << " outliers every " << every);
                REQUIRE(ok);
                if (cell.bits == 4) {
                    // The path string records that the group ran, and double quantization (the decode record).
                    const std::string path = lin[0]->kernel_path(1);
                    INFO("kernel path " << path);
                    CHECK(path == std::string("bnb-gemv-4bit") + (cell.bnb.double_quant ? "+dq" : "") + "+fused");
                }
                for (std::size_t i = 0; i < lin.size(); ++i) {
                    const std::vector<std::uint16_t> want = half_bits(separate(*lin[i], x, stream));
                    const std::vector<std::uint16_t> got = half_bits(ys[i]);
                    INFO("member " << i << " [" << set->outs[i] << ", " << set->in << "] first difference "
                                   << first_difference(got, want));
                    CHECK(got == want);
                    if (set->in <= 1024) check_against_cpu(*backend, *set, i, cell, xv, want);
                }
            }
        }
    }
}

TEST_CASE("gpu bnb fused: forward_swiglu equals forward of gate and up then launch_swiglu", "[gpu][bnb][fused]") {
    device_context context;
    const auto backend = make_bnb_backend();
    cudaStream_t stream = context.stream();
    // 7B gate/up; awkward ones (odd row counts: a batch's pairs partly past the end; a single row).
    std::vector<std::unique_ptr<weight_set>> sets;
    sets.push_back(make_set(4096, {11008, 11008}, 600));
    sets.push_back(make_set(160, {33, 33}, 700));
    sets.push_back(make_set(544, {1, 1}, 800));
    sets.push_back(make_set(11008, {77, 77}, 900));
    for (const cell_spec& cell : all_cells()) {
        for (const auto& set : sets) {
            const auto gate = load(*backend, *set, 0, cell, context);
            const auto up = load(*backend, *set, 1, cell, context);
            auto* fused = dynamic_cast<fused_linear*>(gate.get());
            REQUIRE(fused != nullptr);
            const std::int64_t n = set->outs[0];
            for (const std::int64_t every : {std::int64_t{53}, std::int64_t{5}}) {
                std::vector<float> xv = random_activations(static_cast<std::uint64_t>(set->in * 3 + every), 1, set->in, every);
                const dev<__half> x = to_device_half(xv);
                const dev<__half> g = separate(*gate, x, stream);
                const dev<__half> u = separate(*up, x, stream);
                dev<__half> want(static_cast<std::size_t>(n));
                want.poison();
                launch_swiglu(g.get(), u.get(), n, want.get(), {stream, false});
                dev<__half> act(static_cast<std::size_t>(n));
                act.poison();
                INFO(describe(cell) << " [" << n << ", " << set->in << "] outliers every " << every);
                REQUIRE(fused->forward_swiglu(*up, x.get(), 1, act.get(), stream));
                const std::vector<std::uint16_t> got = half_bits(act), ref = half_bits(want);
                INFO("first difference " << first_difference(got, ref));
                CHECK(got == ref);
                if (set->in <= 1024) {
                    check_against_cpu(*backend, *set, 0, cell, xv, half_bits(g));
                    check_against_cpu(*backend, *set, 1, cell, xv, half_bits(u));
                }
            }
        }
    }
}

TEST_CASE("gpu bnb fused: declines where it does not apply and enqueues nothing", "[gpu][bnb][fused]") {
    device_context context;
    const auto backend = make_bnb_backend();
    cudaStream_t stream = context.stream();
    const auto s512 = make_set(512, {64, 64, 64, 64, 80}, 1000);
    const auto s100 = make_set(100, {64, 64}, 1100);  // K % 32 != 0: forward() dequantizes, no team kernel
    const auto s256 = make_set(256, {64}, 1200);
    const cell_spec nf4 = cell_of(4, "nf4", false, 64, 6), fp4 = cell_of(4, "fp4", false, 64, 6),
                    nf4_128 = cell_of(4, "nf4", false, 128, 6), nf4_dq = cell_of(4, "nf4", true, 64, 6),
                    i8_6 = cell_of(8, "nf4", false, 64, 6), i8_0 = cell_of(8, "nf4", false, 64, 0),
                    f16 = cell_of(16, "nf4", false, 64, 6);
    auto l = [&](const weight_set& s, std::size_t i, const cell_spec& c) { return load(*backend, s, i, c, context); };
    const auto a = l(*s512, 0, nf4), b = l(*s512, 1, nf4), c = l(*s512, 2, nf4), d = l(*s512, 3, nf4);
    const auto up80 = l(*s512, 4, nf4);
    const auto b_fp4 = l(*s512, 1, fp4), b_128 = l(*s512, 1, nf4_128), b_dq = l(*s512, 1, nf4_dq);
    const auto i6a = l(*s512, 0, i8_6), i6b = l(*s512, 1, i8_6), i0b = l(*s512, 1, i8_0), i6up80 = l(*s512, 4, i8_6);
    const auto h16 = l(*s512, 1, f16);
    const auto o100a = l(*s100, 0, nf4), o100b = l(*s100, 1, nf4);
    const auto i100a = l(*s100, 0, i8_6), i100b = l(*s100, 1, i8_6);
    const auto w256 = l(*s256, 0, nf4), i256 = l(*s256, 0, i8_6);

    dev<__half> x(2 * 512 + 8), y0(160), y1(160), y2(160), y3(160);
    cuda_ok(cudaMemset(x.get(), 0, x.size() * 2), "x");
    cuda_ok(cudaDeviceSynchronize(), "x");  // the legacy stream's fill before the kernels' (non-blocking) streams
    for (dev<__half>* y : {&y0, &y1, &y2, &y3}) y->poison();
    const std::vector<std::uint16_t> poisoned = half_bits(y0);
    void* ys[4] = {y0.get(), y1.get(), y2.get(), y3.get()};
    auto group = [&](device_linear& first, std::vector<device_linear*> others, const void* xp, std::int64_t rows,
                     void* const* outs) {
        return dynamic_cast<fused_linear&>(first).forward_group(others.data(), static_cast<int>(others.size()), xp,
                                                                rows, outs, stream);
    };
    auto swiglu = [&](device_linear& gate, device_linear& up, const void* xp, std::int64_t rows, void* act) {
        return dynamic_cast<fused_linear&>(gate).forward_swiglu(up, xp, rows, act, stream);
    };
    const __half* unaligned_x = x.get() + 1;
    void* unaligned_ys[3] = {y0.get(), reinterpret_cast<char*>(y1.get()) + 1, y2.get()};

    // 4-bit.
    CHECK_FALSE(group(*a, {b.get(), c.get()}, x.get(), 2, ys));           // rows > 1
    CHECK_FALSE(group(*a, {b.get(), c.get(), d.get()}, x.get(), 1, ys));  // four members
    CHECK_FALSE(group(*a, {b_fp4.get()}, x.get(), 1, ys));                // another quant map
    CHECK_FALSE(group(*a, {b_128.get()}, x.get(), 1, ys));                // another block size
    CHECK_FALSE(group(*a, {b_dq.get()}, x.get(), 1, ys));                 // nested vs plain absmax
    CHECK_FALSE(group(*a, {i6b.get()}, x.get(), 1, ys));                  // int8 member
    CHECK_FALSE(group(*a, {h16.get()}, x.get(), 1, ys));                  // another backend's linear
    CHECK_FALSE(group(*a, {w256.get()}, x.get(), 1, ys));                 // another in_features
    CHECK_FALSE(group(*a, {b.get()}, unaligned_x, 1, ys));                // x not 16-byte aligned
    CHECK_FALSE(group(*a, {b.get(), c.get()}, x.get(), 1, unaligned_ys)); // an output not 2-byte aligned
    CHECK_FALSE(group(*o100a, {o100b.get()}, x.get(), 1, ys));            // K % 32 != 0
    CHECK_FALSE(swiglu(*a, *b, x.get(), 2, y0.get()));
    CHECK_FALSE(swiglu(*a, *up80, x.get(), 1, y0.get()));  // gate and up of different out_features
    CHECK_FALSE(swiglu(*a, *b_fp4, x.get(), 1, y0.get()));
    CHECK_FALSE(swiglu(*a, *b_dq, x.get(), 1, y0.get()));
    CHECK_FALSE(swiglu(*a, *i6b, x.get(), 1, y0.get()));
    CHECK_FALSE(swiglu(*a, *h16, x.get(), 1, y0.get()));
    CHECK_FALSE(swiglu(*a, *b, unaligned_x, 1, y0.get()));
    CHECK_FALSE(swiglu(*a, *b, x.get(), 1, reinterpret_cast<char*>(y0.get()) + 1));
    CHECK_FALSE(swiglu(*o100a, *o100b, x.get(), 1, y0.get()));
    // int8.
    CHECK_FALSE(group(*i6a, {i6b.get()}, x.get(), 2, ys));
    CHECK_FALSE(group(*i6a, {i0b.get()}, x.get(), 1, ys));   // another threshold
    CHECK_FALSE(group(*i6a, {b.get()}, x.get(), 1, ys));     // 4-bit member
    CHECK_FALSE(group(*i6a, {h16.get()}, x.get(), 1, ys));
    CHECK_FALSE(group(*i6a, {i256.get()}, x.get(), 1, ys));  // another in_features
    CHECK_FALSE(group(*i6a, {i6b.get()}, unaligned_x, 1, ys));
    CHECK_FALSE(group(*i6a, {i6b.get()}, x.get(), 1, unaligned_ys));  // the second member's output unaligned
    CHECK_FALSE(group(*i100a, {i100b.get()}, x.get(), 1, ys));
    CHECK_FALSE(swiglu(*i6a, *i0b, x.get(), 1, y0.get()));
    CHECK_FALSE(swiglu(*i6a, *b, x.get(), 1, y0.get()));
    CHECK_FALSE(swiglu(*i6a, *i6b, x.get(), 2, y0.get()));
    CHECK_FALSE(swiglu(*i6a, *i6up80, x.get(), 1, y0.get()));
    CHECK_FALSE(swiglu(*i6a, *i6b, unaligned_x, 1, y0.get()));
    CHECK_FALSE(swiglu(*i100a, *i100b, x.get(), 1, y0.get()));
    // Nothing was written by any declined call.
    cuda_ok(cudaStreamSynchronize(stream), "declined calls");
    for (dev<__half>* y : {&y0, &y1, &y2, &y3}) CHECK(half_bits(*y) == poisoned);
    // And the applicable calls on the same objects do work (the refusals above are about the arguments).
    CHECK(group(*a, {b.get(), c.get()}, x.get(), 1, ys));
    CHECK(group(*i6a, {i6b.get()}, x.get(), 1, ys));
    CHECK(swiglu(*a, *b, x.get(), 1, y3.get()));
    CHECK(swiglu(*i6a, *i6b, x.get(), 1, y3.get()));
    cuda_ok(cudaStreamSynchronize(stream), "accepted calls");
}

TEST_CASE("gpu bnb fused: fused calls are capturable in a CUDA graph", "[gpu][bnb][fused]") {
    device_context context;
    const auto backend = make_bnb_backend();
    const auto set = make_set(1024, {512, 512, 256}, 1300);
    for (const cell_spec& cell : {cell_of(4, "nf4", true, 64, 6), cell_of(8, "nf4", false, 64, 6)}) {
        std::vector<std::unique_ptr<device_linear>> lin;
        for (std::size_t i = 0; i < 3; ++i) lin.push_back(load(*backend, *set, i, cell, context));
        const dev<__half> x = to_device_half(random_activations(1301, 1, 1024, 41));
        cudaStream_t stream = context.stream();
        dev<__half> y0(512), y1(512), y2(256), act(512);
        void* ys[3] = {y0.get(), y1.get(), y2.get()};
        device_linear* others[2] = {lin[1].get(), lin[2].get()};
        auto& f = dynamic_cast<fused_linear&>(*lin[0]);
        REQUIRE(f.forward_group(others, 2, x.get(), 1, ys, stream));
        REQUIRE(f.forward_swiglu(*lin[1], x.get(), 1, act.get(), stream));
        const auto direct0 = half_bits(y0), direct2 = half_bits(y2), direct_act = half_bits(act);
        for (dev<__half>* y : {&y0, &y1, &y2, &act}) y->poison();
        cudaGraph_t graph = nullptr;
        cudaGraphExec_t exec = nullptr;
        cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "begin capture");
        const bool g1 = f.forward_group(others, 2, x.get(), 1, ys, stream);
        const bool g2 = f.forward_swiglu(*lin[1], x.get(), 1, act.get(), stream);
        cuda_ok(cudaStreamEndCapture(stream, &graph), "end capture");
        CHECK(g1);
        CHECK(g2);
        cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
        for (int i = 0; i < 3; ++i) cuda_ok(cudaGraphLaunch(exec, stream), "launch");
        cuda_ok(cudaStreamSynchronize(stream), "graph");
        CHECK(half_bits(y0) == direct0);
        CHECK(half_bits(y2) == direct2);
        CHECK(half_bits(act) == direct_act);
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
    }
}

TEST_CASE("gpu bnb fused: group and SwiGLU launchers equal single launches in every launch shape", "[gpu][bnb][fused]") {
    const launch_options plain{nullptr, false};
    const std::int64_t k = 1024;
    const std::vector<std::int64_t> rows = {300, 77, 513};
    const std::vector<float> xv = random_activations(1400, 1, k, 5);
    const dev<__half> x = to_device_half(xv);
    std::vector<std::vector<float>> values;
    for (std::size_t i = 0; i < rows.size(); ++i) values.push_back(random_weights(1401 + i, rows[i] * k, 0.03f));
    const std::vector<float> up_values = random_weights(1410, rows[0] * k, 0.03f);
    for (int config = 0; config < gemv_team_configs(); ++config) {
        for (const bool nested : {false, true}) {
            const quant_4bit_params qp{quant_type::nf4, 64, nested};
            std::vector<std::unique_ptr<device_4bit>> w;
            for (std::size_t i = 0; i < rows.size(); ++i)
                w.push_back(std::make_unique<device_4bit>(quantize_4bit_ref(values[i], rows[i], k, qp), i == 2 ? 0.5f : 1.0f));
            const device_4bit up(quantize_4bit_ref(up_values, rows[0], k, qp), 0.75f);
            std::vector<device_4bit_view> views;
            std::vector<dev<__half>> single, grouped;
            std::vector<__half*> outs;
            for (std::size_t i = 0; i < rows.size(); ++i) {
                views.push_back(w[i]->view);
                single.emplace_back(static_cast<std::size_t>(rows[i]));
                grouped.emplace_back(static_cast<std::size_t>(rows[i]));
                single.back().poison();
                grouped.back().poison();
                outs.push_back(grouped.back().get());
                launch_gemv_4bit_team(views.back(), x.get(), single.back().get(), plain, config);
            }
            REQUIRE(gemv_4bit_team_groupable(views.data(), 3));
            launch_gemv_4bit_team_group(views.data(), 3, x.get(), outs.data(), plain, config);
            for (std::size_t i = 0; i < rows.size(); ++i) {
                INFO("4-bit " << (nested ? "dq" : "plain") << " config " << gemv_team_config_name(config) << " member " << i);
                CHECK(half_bits(grouped[i]) == half_bits(single[i]));
            }
            if (nested) {
                // Members sharing one nested map buffer (what the loader makes: workspace::nested_map) load it once
                // and store it per member; the 128-thread shapes also take the word-by-word rest of the book.
                const std::vector<std::uint16_t> own_map2 = half_bits(single[2]);
                std::vector<device_4bit_view> shared = views;
                for (device_4bit_view& v : shared) v.nested_code = views[0].nested_code;
                for (std::size_t i = 0; i < rows.size(); ++i) {
                    single[i].poison();
                    grouped[i].poison();
                    launch_gemv_4bit_team(shared[i], x.get(), single[i].get(), plain, config);
                }
                launch_gemv_4bit_team_group(shared.data(), 3, x.get(), outs.data(), plain, config);
                for (std::size_t i = 0; i < rows.size(); ++i) {
                    INFO("4-bit dq, one shared map, config " << gemv_team_config_name(config) << " member " << i);
                    CHECK(half_bits(grouped[i]) == half_bits(single[i]));
                }
                // Member 2's own map is the reference map scaled by 0.5, so reading member 0's map must change its
                // output: the shared case really reads the shared buffer.
                CHECK(half_bits(single[2]) != own_map2);
            }
            dev<__half> u(static_cast<std::size_t>(rows[0])), want(static_cast<std::size_t>(rows[0])),
                act(static_cast<std::size_t>(rows[0]));
            act.poison();
            launch_gemv_4bit_team(up.view, x.get(), u.get(), plain, config);
            launch_swiglu(single[0].get(), u.get(), rows[0], want.get(), plain);
            launch_gemv_4bit_team_swiglu(views[0], up.view, x.get(), act.get(), plain, config);
            INFO("4-bit swiglu " << (nested ? "dq" : "plain") << " config " << gemv_team_config_name(config));
            CHECK(half_bits(act) == half_bits(want));
        }
        for (const float threshold : {6.0f, 0.0f}) {
            std::vector<int8_weight> q8;
            std::vector<dev<std::int8_t>> cb;
            std::vector<dev<float>> scb;
            for (std::size_t i = 0; i < rows.size(); ++i) {
                q8.push_back(quantize_int8_ref(values[i], rows[i], k));
                cb.emplace_back(q8.back().cb);
                scb.emplace_back(q8.back().scb);
            }
            const int8_weight up8 = quantize_int8_ref(up_values, rows[0], k);
            const dev<std::int8_t> up_cb(up8.cb);
            const dev<float> up_scb(up8.scb);
            std::vector<int8_team_weight> ws;
            std::vector<dev<__half>> single, grouped;
            std::vector<__half*> outs;
            for (std::size_t i = 0; i < rows.size(); ++i) {
                ws.push_back({cb[i].get(), scb[i].get(), rows[i]});
                single.emplace_back(static_cast<std::size_t>(rows[i]));
                grouped.emplace_back(static_cast<std::size_t>(rows[i]));
                single.back().poison();
                grouped.back().poison();
                outs.push_back(grouped.back().get());
                launch_gemv_int8_fused(cb[i].get(), scb[i].get(), rows[i], k, x.get(), threshold, single.back().get(),
                                       plain, config);
            }
            REQUIRE(gemv_int8_fused_groupable(ws.data(), 3, k));
            launch_gemv_int8_fused_group(ws.data(), 3, k, x.get(), threshold, outs.data(), plain, config);
            for (std::size_t i = 0; i < rows.size(); ++i) {
                INFO("int8 t" << threshold << " config " << gemv_int8_fused_config_name(config) << " member " << i);
                CHECK(half_bits(grouped[i]) == half_bits(single[i]));
            }
            dev<__half> u(static_cast<std::size_t>(rows[0])), want(static_cast<std::size_t>(rows[0])),
                act(static_cast<std::size_t>(rows[0]));
            act.poison();
            launch_gemv_int8_fused(up_cb.get(), up_scb.get(), rows[0], k, x.get(), threshold, u.get(), plain, config);
            launch_swiglu(single[0].get(), u.get(), rows[0], want.get(), plain);
            launch_gemv_int8_fused_swiglu(ws[0], {up_cb.get(), up_scb.get(), rows[0]}, k, x.get(), threshold, act.get(),
                                          plain, config);
            INFO("int8 swiglu t" << threshold << " config " << gemv_int8_fused_config_name(config));
            CHECK(half_bits(act) == half_bits(want));
        }
    }
}

namespace {

// The separate path of o_proj / down_proj and the norm after it: y = W x into a delta, then launch_rms_norm's add into
// the residual stream and the norm of the updated stream.
struct residual_reference {
    std::vector<std::uint16_t> stream, normed;
};
residual_reference separate_residual(const std::vector<float>& residual, const dev<__half>& delta,
                                      const dev<__half>& norm_weight, double eps, cudaStream_t stream) {
    const std::int64_t n = static_cast<std::int64_t>(residual.size());
    dev<__half> x = to_device_half(residual), h(static_cast<std::size_t>(n));
    h.poison();
    launch_rms_norm(x.get(), delta.get(), norm_weight.get(), eps, 1, n, h.get(), launch_options{stream, false});
    return {half_bits(x), half_bits(h)};
}

bool any_inf_or_nan(const std::vector<std::uint16_t>& bits) {
    for (std::uint16_t v : bits)
        if ((v & 0x7c00) == 0x7c00) return true;
    return false;
}

}  // namespace

TEST_CASE("gpu bnb fused: the residual add and the next RMSNorm in the epilogue equal forward then launch_rms_norm",
          "[gpu][bnb][fused][norm]") {
    const launch_options plain{nullptr, false};
    const double eps = 1e-6;
    // Launcher level, every launch shape: 1024 x 1024 (plain and double-quantized), twice each so the arrival counter is
    // seen re-armed; and a width the norm cannot take (N % 8 != 0: the add alone).
    for (const std::int64_t n : {std::int64_t{1024}, std::int64_t{300}}) {
        const std::int64_t k = 1024;
        const std::vector<float> xv = random_activations(1500 + n, 1, k, 7);
        const dev<__half> x = to_device_half(xv);
        const std::vector<float> residual = random_activations(1501 + n, 1, n, 0);
        const dev<__half> norm_w = to_device_half(random_weights(1502, n, 1.0f));
        const std::vector<float> values = random_weights(1503, n * k, 0.03f);
        dev<unsigned> arrivals(1);
        cuda_ok(cudaMemset(arrivals.get(), 0, sizeof(unsigned)), "counter");
        for (int config = 0; config < gemv_team_configs(); ++config) {
            for (const bool nested : {false, true}) {
                const device_4bit w(quantize_4bit_ref(values, n, k, {quant_type::nf4, 64, nested}));
                dev<__half> delta(static_cast<std::size_t>(n));
                delta.poison();
                launch_gemv_4bit_team(w.view, x.get(), delta.get(), plain, config);
                const residual_reference want = separate_residual(residual, delta, norm_w, eps, nullptr);
                const bool norms = gemv_4bit_team_norms_rows(w.view, config);
                INFO("N " << n << " config " << gemv_team_config_name(config) << (nested ? " dq" : " plain"));
                CHECK(norms == (n % 8 == 0));
                for (int repeat = 0; repeat < 2; ++repeat) {
                    dev<__half> stream = to_device_half(residual), h(static_cast<std::size_t>(n));
                    h.poison();
                    const residual_norm norm = norms ? residual_norm{h.get(), norm_w.get(), eps, arrivals.get()}
                                                     : residual_norm{};
                    launch_gemv_4bit_team_residual(w.view, x.get(), stream.get(), norm, plain, config);
                    INFO("repeat " << repeat);
                    CHECK(half_bits(stream) == want.stream);
                    if (norms) CHECK(half_bits(h) == want.normed);
                }
                CHECK(arrivals.download()[0] == 0u);
                CHECK(want.stream != to_half_bits(residual));  // the add changed the stream
                CHECK_FALSE(any_inf_or_nan(want.normed));
            }
        }
        if (n % 8 != 0) {
            const device_4bit w(quantize_4bit_ref(values, n, k, {quant_type::nf4, 64, false}));
            dev<__half> stream = to_device_half(residual), h(static_cast<std::size_t>(n));
            CHECK_THROWS_AS(launch_gemv_4bit_team_residual(w.view, x.get(), stream.get(),
                                                           residual_norm{h.get(), norm_w.get(), eps, arrivals.get()},
                                                           plain, 0),
                            std::invalid_argument);
        }
    }

    // Through the device linears at the 7B o_proj and down_proj shapes, every 4-bit cell.
    device_context context;
    const auto backend = make_bnb_backend();
    cudaStream_t stream = context.stream();
    std::vector<std::unique_ptr<weight_set>> sets;
    sets.push_back(make_set(4096, {4096}, 1600));
    sets.push_back(make_set(11008, {4096}, 1700));
    const dev<__half> norm_w = to_device_half(random_weights(1800, 4096, 1.0f));
    const std::vector<float> residual = random_activations(1801, 1, 4096, 0);
    for (const cell_spec& cell : all_cells()) {
        if (cell.bits != 4) continue;
        for (const auto& set : sets) {
            const auto lin = load(*backend, *set, 0, cell, context);
            auto* fused = dynamic_cast<fused_linear*>(lin.get());
            REQUIRE(fused != nullptr);
            const dev<__half> x = to_device_half(random_activations(static_cast<std::uint64_t>(set->in), 1, set->in, 53));
            const dev<__half> delta = separate(*lin, x, stream);
            const residual_reference want = separate_residual(residual, delta, norm_w, eps, stream);
            INFO(describe(cell) << " [4096, " << set->in << "]");
            REQUIRE(fused->norms_in_epilogue(1));
            CHECK_FALSE(fused->norms_in_epilogue(2));
            dev<__half> added = to_device_half(residual);
            REQUIRE(fused->forward_residual(x.get(), 1, added.get(), stream));
            CHECK(half_bits(added) == want.stream);
            for (int repeat = 0; repeat < 2; ++repeat) {
                dev<__half> s = to_device_half(residual), h(4096);
                h.poison();
                REQUIRE(fused->forward_residual_normed(x.get(), 1, s.get(), fused_linear::normed_output{h.get(), norm_w.get(), eps},
                                                       stream));
                INFO("repeat " << repeat);
                CHECK(half_bits(s) == want.stream);
                CHECK(half_bits(h) == want.normed);
            }
            // Declines: two rows, an unaligned stream or output; nothing is written.
            dev<__half> s = to_device_half(residual), h(4096 + 8);
            h.poison();
            const std::vector<std::uint16_t> before = half_bits(s), h_before = half_bits(h);
            CHECK_FALSE(fused->forward_residual(x.get(), 2, s.get(), stream));
            CHECK_FALSE(fused->forward_residual_normed(x.get(), 2, s.get(), {h.get(), norm_w.get(), eps}, stream));
            CHECK_FALSE(fused->forward_residual_normed(x.get(), 1, s.get(), {h.get() + 1, norm_w.get(), eps}, stream));
            CHECK_FALSE(fused->forward_residual_normed(x.get(), 1, s.get() + 1, {h.get(), norm_w.get(), eps}, stream));
            CHECK(half_bits(s) == before);
            CHECK(half_bits(h) == h_before);
        }
    }
    // LLM.int8() does not offer it (the executor then runs the RMSNorm kernel).
    const auto set = make_set(512, {64}, 1900);
    const auto i8 = load(*backend, *set, 0, cell_of(8, "nf4", false, 64, 6), context);
    CHECK_FALSE(dynamic_cast<fused_linear&>(*i8).norms_in_epilogue(1));
}
