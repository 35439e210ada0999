// GPTQ kernels against the CPU reference (label gpu): the fused dequantize-and-multiply kernels for 2, 3, 4 and 8 bits
// with groups and act-order, the reconstruct + cuBLAS path, the load-time repack, on Llama-7B shapes and awkward ones,
// batches 1, 2, 3, 4, 8, 16; outputs poisoned before each run; CUDA-graph capture.
#include "gptq_gpu_test_util.hpp"

#include "backends/gptq/gptq_a_layout.hpp"
#include "backends/gptq/gptq_device_layout.hpp"
#include "backends/gptq/gptq_gemm.cuh"
#include "backends/gptq/gptq_gemm_a.cuh"
#include "backends/gptq/gptq_gemm_mma.cuh"
#include "backends/gptq/gptq_linear.hpp"

#include "cuda/fused_linear.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace qbench;
using namespace qbench::gptq;
using namespace qbench::gptq::test;

namespace {
struct shape {
    std::int64_t K, N;
    const char* name;
    bool full;  // every variant (small shapes) or the main ones (7B shapes)
};
struct variant {
    std::int64_t gs;
    bool act;
    const char* name;
};
constexpr std::int64_t k_batches[] = {1, 2, 3, 4, 8, 16};

void run_case(device_context& ctx, const shape& sh, std::int64_t bits, const variant& v, std::int64_t threshold,
              std::uint64_t seed) {
    const quantized_linear q = random_layer(sh.K, sh.N, bits, v.gs, v.act, seed);
    const packed_linear p = pack(q);
    const auto lin = make_gptq_device_linear(ctx, p, threshold);
    const std::int64_t rows = 16;
    const auto x = random_inputs(rows, sh.K, seed + 1);
    const auto ref = reference_gemm(q.dequantize(), sh.N, sh.K, x, rows);
    const device_buffer xd = upload(ctx, to_half_bits(x));
    device_buffer yd = ctx.allocate(static_cast<std::uint64_t>(rows * sh.N) * 2, "test y");
    for (std::int64_t b : k_batches) {
        QB_CUDA_CHECK(cudaMemsetAsync(yd.get(), 0xff, static_cast<std::size_t>(rows * sh.N) * 2, ctx.stream()));  // NaN poison
        lin->forward(xd.get(), b, yd.get(), ctx.stream());
        QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
        const auto y = download<std::uint16_t>(yd.get(), static_cast<std::size_t>(b * sh.N));
        const auto c = compare(y, ref, static_cast<std::size_t>(b * sh.N));
        const std::string path = lin->kernel_path(b);
        const double tol = path.rfind("gptq-fused", 0) == 0 ? 5e-3 : 1.5e-3;
        INFO(sh.name << " K=" << sh.K << " N=" << sh.N << " bits=" << bits << " " << v.name << " batch=" << b
                     << " path=" << path << " rel_l2=" << c.rel_l2 << " max_abs=" << c.max_abs << " nonfinite=" << c.nonfinite);
        CHECK(c.nonfinite == 0);
        CHECK(c.rel_l2 < tol);
        // Rows past the batch are untouched (still poisoned).
        if (b < rows) {
            const auto rest = download<std::uint16_t>(static_cast<const std::uint16_t*>(yd.get()) + b * sh.N, static_cast<std::size_t>(sh.N));
            CHECK(std::all_of(rest.begin(), rest.end(), [](std::uint16_t h) { return h == 0xffff; }));
        }
        if (b == 1 || b == 16) std::printf("  %-22s bits=%lld %-8s batch=%2lld %-22s rel_l2=%.2e\n", sh.name,
                                           static_cast<long long>(bits), v.name, static_cast<long long>(b), path.c_str(), c.rel_l2);
    }
}
}  // namespace

TEST_CASE("GPTQ kernels match the CPU reference on Llama-7B and awkward shapes", "[gpu][gptq][kernels]") {
    device_context ctx;
    // v2 everywhere, then v3 where it applies (2, 3, 4 and 8 bits with block groups; other layers stay on v2).
    for (const char* kernel : {"v2", "v3"}) {
    const env_choice choice("QBENCH_GPTQ_KERNEL", kernel);
    std::printf("  -- QBENCH_GPTQ_KERNEL=%s\n", kernel);
    const shape shapes[] = {{4096, 4096, "7B q/k/v/o", false}, {4096, 11008, "7B gate/up", false},
                            {11008, 4096, "7B down", false},  {688, 176, "ragged K and N", true},
                            {96, 40, "tiny", true},           {4128, 4100, "K=4096+32, N%32=4", true},
                            {320, 98, "N%4=2", true}};
    const variant variants[] = {{128, false, "g128"}, {-1, false, "g-1"}, {128, true, "g128-act"},
                                {32, true, "g32-act"}, {48, false, "g48"}};
    std::uint64_t seed = 100;
    for (const auto& sh : shapes)
        for (std::int64_t bits : {2, 3, 4, 8})
            for (const auto& v : variants) {
                // Large shapes: every width at g128, the other group layouts at the widths that matter most.
                if (!sh.full && v.gs != 128 && !(bits == 4 || (bits == 8 && v.gs == -1) || (bits == 3 && v.act))) continue;
                if (!sh.full && (v.gs == 32 || v.gs == 48)) continue;
                if (!sh.full && v.act && bits != 4 && bits != 3) continue;
                run_case(ctx, sh, bits, v, 8, seed++);
            }
    }
}

TEST_CASE("the kernel variants (v1; v2 at 3 CTAs per SM; 1 CTA per SM; loads past L1) match the CPU reference",
          "[gpu][gptq][kernels]") {
    device_context ctx;
    std::uint64_t seed = 500;
    const char* knobs[4][2] = {{"QBENCH_GPTQ_KERNEL", "v1"}, {"QBENCH_GPTQ_OCC", "3"}, {"QBENCH_GPTQ_CTAS_PER_SM", "1"},
                               {"QBENCH_GPTQ_LOAD", "na"}};
    for (const auto& knob : knobs) {
        const env_choice v2("QBENCH_GPTQ_KERNEL", "v2");  // the variants are v2's (the knob may replace it: v1)
        const env_choice choice(knob[0], knob[1]);
        std::printf("  -- %s=%s\n", knob[0], knob[1]);
        for (std::int64_t bits : {2, 3, 4, 8}) {
            run_case(ctx, {688, 176, "ragged K and N", true}, bits, {128, true, "g128-act"}, 8, seed++);
            run_case(ctx, {4128, 4100, "K=4096+32", true}, bits, {32, true, "g32-act"}, 8, seed++);
            run_case(ctx, {4096, 11008, "7B gate/up", true}, bits, {128, false, "g128"}, 8, seed++);
        }
        if (std::string(knob[0]) == "QBENCH_GPTQ_LOAD") {  // the same policy in v3
            const env_choice v3("QBENCH_GPTQ_KERNEL", "v3");
            for (std::int64_t bits : {2, 3, 4, 8}) run_case(ctx, {4096, 11008, "7B gate/up v3", true}, bits, {128, false, "g128"}, 8, seed++);
        }
    }
}

TEST_CASE("a threshold above 8 runs the fused kernels in chunks of 8 rows", "[gpu][gptq][kernels]") {
    device_context ctx;
    for (std::int64_t bits : {3, 4}) run_case(ctx, {512, 256, "threshold 16", true}, bits, {64, true, "g64-act"}, 16, 7 + bits);
    run_case(ctx, {512, 256, "threshold 0", true}, 4, {128, false, "g128"}, 0, 77);  // always reconstruct
}

TEST_CASE("the GPU repack into the mma layout equals the host layout bit for bit", "[gpu][gptq][layout]") {
    device_context ctx;
    for (std::int64_t bits : {2, 3, 4, 8})
        for (bool act : {false, true}) {
            const std::int64_t K = 688, N = 100;
            const quantized_linear q = random_layer(K, N, bits, 32, act, 950 + bits);
            const packed_linear p = pack(q);
            const layout_plan plan = plan_layout(K, N, bits, q.groups(), p.g_idx);
            const auto expect = repack_qweight_mma_ref(plan, p.qweight);
            const device_buffer src = upload(ctx, p.qweight);
            const device_buffer row_of = upload(ctx, plan.row_of);
            device_buffer dst = ctx.allocate(plan.mma_qweight_words() * 4, "test repack");
            QB_CUDA_CHECK(cudaMemsetAsync(dst.get(), 0x5a, plan.mma_qweight_words() * 4, ctx.stream()));
            launch_repack_mma(static_cast<int>(bits), src.as<const std::int32_t>(), plan.sequential ? nullptr : row_of.as<const std::int32_t>(),
                              K, N, static_cast<int>(plan.kblocks), static_cast<int>(plan.ntiles), dst.as<std::uint32_t>(),
                              launch_options{ctx.stream(), false});
            QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
            CHECK(download<std::uint32_t>(dst.get(), expect.size()) == expect);
        }
}

namespace {
/// For each shape and width (v3 layers): loads the layer once per value of the environment switch `name` and checks
/// that every value gives the first value's outputs bit for bit over k_batches; the values `against_cpu` accepts also
/// run against the CPU reference (run_case).
void same_bits_for_each_value(device_context& ctx, const std::vector<shape>& shapes, std::uint64_t seed, const char* name,
                              const std::vector<std::string>& values, bool (*against_cpu)(const std::string&)) {
    const env_choice v3("QBENCH_GPTQ_KERNEL", "v3");
    for (const auto& sh : shapes)
        for (std::int64_t bits : {2, 3, 4, 8}) {
            const quantized_linear q = random_layer(sh.K, sh.N, bits, 128, sh.full, seed++);
            const auto x = random_inputs(16, sh.K, seed++);
            const device_buffer xd = upload(ctx, to_half_bits(x));
            std::vector<std::uint16_t> first;
            for (const std::string& value : values) {
                const env_choice choice(name, value.c_str());
                if (against_cpu(value)) run_case(ctx, sh, bits, {128, sh.full, value.c_str()}, 16, seed);
                const auto lin = make_gptq_device_linear(ctx, pack(q), 16);
                REQUIRE(lin->kernel_path(16).rfind("gptq-fused-v3", 0) == 0);
                std::vector<std::uint16_t> all;
                for (std::int64_t b : k_batches) {
                    device_buffer yd = ctx.allocate(static_cast<std::uint64_t>(b * sh.N) * 2, "test y");
                    lin->forward(xd.get(), b, yd.get(), ctx.stream());
                    QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
                    const auto y = download<std::uint16_t>(yd.get(), static_cast<std::size_t>(b * sh.N));
                    all.insert(all.end(), y.begin(), y.end());
                }
                INFO(sh.name << " bits=" << bits << " " << name << "=" << value);
                if (first.empty()) first = all;
                else CHECK(all == first);
            }
        }
}
}  // namespace

TEST_CASE("v3's four ways of staging x (QBENCH_GPTQ_XCOPY) give the same bits, batches 1-16", "[gpu][gptq][kernels]") {
    device_context ctx;
    same_bits_for_each_value(ctx, {{4096, 4096, "7B q/k/v/o", false}, {11008, 4096, "7B down", false}, {688, 176, "ragged K and N", true}},
                             800, "QBENCH_GPTQ_XCOPY", {"plain", "pairs", "quads", "async"}, [](const std::string&) { return true; });
}

TEST_CASE("v3's paired CTAs (QBENCH_GPTQ_PAIR) give the same bits as single CTAs, batches 1-16", "[gpu][gptq][kernels]") {
    device_context ctx;
    // 7B shapes (every CTA paired, at K = 11008 the most shared memory), a ragged K and N (staged x, a grid of one
    // CTA: half of it idle) and a small K (warps without k-blocks); "1" (always paired) against the CPU too.
    same_bits_for_each_value(ctx,
                             {{4096, 4096, "7B q/k/v/o", false}, {11008, 4096, "7B down", false},
                              {688, 176, "ragged K and N", true}, {320, 40, "small K", false}},
                             1800, "QBENCH_GPTQ_PAIR", {"0", "1", "beams", "auto"}, [](const std::string& v) { return v == "1"; });
}

TEST_CASE("v3's L2 prefetch before the PDL wait (QBENCH_GPTQ_L2PRE) gives the same bits, batches 1-16", "[gpu][gptq][kernels]") {
    device_context ctx;
    // 1 KB per warp (part of a run) and 1024 KB (all of it); single and paired launches (the default pairs 2 and 3
    // bits); a ragged shape and a small K (warps without k-blocks: nothing to prefetch).
    same_bits_for_each_value(ctx,
                             {{4096, 4096, "7B q/k/v/o", false}, {11008, 4096, "7B down", false},
                              {688, 176, "ragged K and N", true}, {320, 40, "small K", false}},
                             2600, "QBENCH_GPTQ_L2PRE", {"0", "1", "1024"}, [](const std::string& v) { return v == "1024"; });
}

TEST_CASE("v3 is the default at 2, 3, 4 and 8 bits with block groups, v2 the rest; "
          "fusion by default for v3 and 8-bit v2", "[gpu][gptq][kernels]") {
    device_context ctx;
    auto layer = [&](std::int64_t bits, std::int64_t gs, std::uint64_t seed) {
        return make_gptq_device_linear(ctx, pack(random_layer(512, 64, bits, gs, false, seed)), 8);
    };
    auto path = [&](std::int64_t bits, std::int64_t gs) { return layer(bits, gs, 60 + bits)->kernel_path(1); };
    CHECK(path(4, 128) == "gptq-fused-v3-4b");  // the default: v3 at 2, 3, 4 and 8 bits with block groups
    CHECK(path(2, 128) == "gptq-fused-v3-2b");
    CHECK(path(3, 128) == "gptq-fused-v3-3b");
    CHECK(path(8, 128) == "gptq-fused-v3-8b");
    CHECK(path(8, 32) == "gptq-fused-mma-8b");  // blocks of 128 rows straddle groups of 32
    {
        const env_choice v2("QBENCH_GPTQ_KERNEL", "v2");
        CHECK(path(4, 128) == "gptq-fused-mma-4b");
        CHECK(path(3, 128) == "gptq-fused-mma-3b");
    }
    {
        // Paired CTAs are named; by width only where a launch has more CTAs than SMs (not these 4-mtile layers).
        CHECK(layer(3, 128, 63)->kernel_path(4) == "gptq-fused-v3-3b");
        const env_choice pair("QBENCH_GPTQ_PAIR", "1");
        CHECK(layer(3, 128, 63)->kernel_path(1) == "gptq-fused-v3-3b-paired");
        CHECK(layer(4, 128, 64)->kernel_path(4) == "gptq-fused-v3-4b-paired");
    }
    {
        // An L2 prefetch other than the default is named (KB per warp); v2 layers have none.
        const env_choice l2pre("QBENCH_GPTQ_L2PRE", "4");
        CHECK(path(4, 128) == "gptq-fused-v3-4b-l2pre4");
        CHECK(path(8, 32) == "gptq-fused-mma-8b");
    }
    {
        // A 7B-size layer: 4 bits pair from 4 rows by default, 8 bits from 2, 2 bits at every row count.
        const auto big4 = make_gptq_device_linear(ctx, pack(random_layer(4096, 4096, 4, 128, false, 65)), 8);
        CHECK(big4->kernel_path(1) == "gptq-fused-v3-4b");
        CHECK(big4->kernel_path(4) == "gptq-fused-v3-4b-paired");
        const auto big2 = make_gptq_device_linear(ctx, pack(random_layer(4096, 4096, 2, 128, false, 66)), 8);
        CHECK(big2->kernel_path(1) == "gptq-fused-v3-2b-paired");
        const auto big8 = make_gptq_device_linear(ctx, pack(random_layer(4096, 4096, 8, 128, false, 67)), 8);
        CHECK(big8->kernel_path(1) == "gptq-fused-v3-8b");
        CHECK(big8->kernel_path(2) == "gptq-fused-v3-8b-paired");
    }
    {
        const env_choice v3("QBENCH_GPTQ_KERNEL", "v3");
        CHECK(path(4, 128) == "gptq-fused-v3-4b");
        CHECK(path(8, -1) == "gptq-fused-v3-8b");
        CHECK(path(3, 128) == "gptq-fused-v3-3b");
        CHECK(path(4, 32) == "gptq-fused-mma-4b");  // blocks of 128 rows straddle groups
    }
    // QBENCH_GPTQ_FUSE unset: v3 layers and 8-bit v2 layers fuse, other v2 layers decline; "0": nobody fuses; "1": all.
    const device_buffer xd = upload(ctx, to_half_bits(random_inputs(1, 512, 72)));
    device_buffer y = ctx.allocate(2 * 64 * 2, "y");
    void* ys[2] = {y.get(), static_cast<char*>(y.get()) + 128};
    auto fuses = [&](std::int64_t bits) {
        const auto a = layer(bits, 128, 70), b = layer(bits, 128, 71);
        auto* fl = dynamic_cast<fused_linear*>(a.get());
        REQUIRE(fl != nullptr);
        device_linear* others[1] = {b.get()};
        const bool group = fl->forward_group(others, 1, xd.get(), 1, ys, ctx.stream());
        const bool swiglu = fl->forward_swiglu(*b, xd.get(), 1, y.get(), ctx.stream());
        QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
        CHECK(group == swiglu);
        return group && swiglu;
    };
    const env_choice unset("QBENCH_GPTQ_FUSE", "");
    CHECK(fuses(4));
    CHECK(fuses(8));
    CHECK(fuses(3));  // v3 at 3 bits
    {
        const env_choice v2("QBENCH_GPTQ_KERNEL", "v2");
        CHECK_FALSE(fuses(3));  // v2 at 3 bits: measured slower fused
    }
    {
        const env_choice off("QBENCH_GPTQ_FUSE", "0");
        CHECK_FALSE(fuses(4));
        CHECK_FALSE(fuses(8));
    }
    const env_choice on("QBENCH_GPTQ_FUSE", "1");
    CHECK(fuses(4));
    CHECK(fuses(3));
}

TEST_CASE("the GPU repack into the v3 layout equals the host layout bit for bit", "[gpu][gptq][layout]") {
    device_context ctx;
    for (std::int64_t bits : {2, 3, 4, 8})
        for (bool act : {false, true}) {
            const std::int64_t K = 1408, N = 100;
            const quantized_linear q = random_layer(K, N, bits, 128, act, 970 + bits);
            const packed_linear p = pack(q);
            const layout_plan plan = plan_layout(K, N, bits, q.groups(), p.g_idx);
            REQUIRE(a_layout_supported(plan));
            const auto expect = repack_qweight_a_ref(plan, p.qweight);
            const device_buffer src = upload(ctx, p.qweight);
            const device_buffer row_of = upload(ctx, plan.row_of);
            device_buffer dst = ctx.allocate(a_qweight_words(plan) * 4, "test repack");
            QB_CUDA_CHECK(cudaMemsetAsync(dst.get(), 0x5a, a_qweight_words(plan) * 4, ctx.stream()));
            launch_repack_a(static_cast<int>(bits), src.as<const std::int32_t>(), plan.sequential ? nullptr : row_of.as<const std::int32_t>(),
                            K, N, static_cast<int>(plan.kblocks), dst.as<std::uint32_t>(), launch_options{ctx.stream(), false});
            QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
            CHECK(download<std::uint32_t>(dst.get(), expect.size()) == expect);
        }
}

TEST_CASE("the GPU repack equals the host layout bit for bit", "[gpu][gptq][layout]") {
    device_context ctx;
    for (std::int64_t bits : {2, 3, 4, 8})
        for (bool act : {false, true}) {
            const std::int64_t K = 688, N = 100;
            const quantized_linear q = random_layer(K, N, bits, 32, act, 900 + bits);
            const packed_linear p = pack(q);
            const layout_plan plan = plan_layout(K, N, bits, q.groups(), p.g_idx);
            const auto expect = repack_qweight_ref(plan, p.qweight);
            const device_buffer src = upload(ctx, p.qweight);
            const device_buffer row_of = upload(ctx, plan.row_of);
            device_buffer dst = ctx.allocate(plan.qweight_words() * 4, "test repack");
            launch_repack(static_cast<int>(bits), src.as<const std::int32_t>(), plan.sequential ? nullptr : row_of.as<const std::int32_t>(),
                          K, N, static_cast<int>(plan.slabs), static_cast<int>(plan.tiles), dst.as<std::uint32_t>(),
                          launch_options{ctx.stream(), false});
            QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
            CHECK(download<std::uint32_t>(dst.get(), expect.size()) == expect);
        }
}

TEST_CASE("the fused forward can be captured in a CUDA graph and replays identically", "[gpu][gptq][graph]") {
    device_context ctx;
    const quantized_linear q = random_layer(4096, 4096, 4, 128, true, 4242);
    const auto lin = make_gptq_device_linear(ctx, pack(q), 8);
    REQUIRE(lin->graph_capturable());
    const auto x = random_inputs(4, 4096, 4243);
    const device_buffer xd = upload(ctx, to_half_bits(x));
    device_buffer y1 = ctx.allocate(4 * 4096 * 2, "y1"), y2 = ctx.allocate(4 * 4096 * 2, "y2");
    for (std::int64_t rows : {1, 4}) {
        lin->forward(xd.get(), rows, y1.get(), ctx.stream());
        QB_CUDA_CHECK(cudaMemsetAsync(y2.get(), 0xff, 4 * 4096 * 2, ctx.stream()));
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        QB_CUDA_CHECK(cudaStreamBeginCapture(ctx.stream(), cudaStreamCaptureModeThreadLocal));
        for (int i = 0; i < 3; ++i) lin->forward(xd.get(), rows, y2.get(), ctx.stream());
        QB_CUDA_CHECK(cudaStreamEndCapture(ctx.stream(), &graph));
        QB_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
        for (int i = 0; i < 2; ++i) QB_CUDA_CHECK(cudaGraphLaunch(exec, ctx.stream()));
        QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
        CHECK(download<std::uint16_t>(y1.get(), static_cast<std::size_t>(rows * 4096)) ==
              download<std::uint16_t>(y2.get(), static_cast<std::size_t>(rows * 4096)));
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
    }
}

TEST_CASE("v3's launch trace stamps every CTA in order and leaves the outputs as they were", "[gpu][gptq][kernels]") {
    device_context ctx;
    const env_choice single("QBENCH_GPTQ_PAIR", "0");  // paired launches are not stamped
    const std::int64_t K = 4096, N = 4096;
    const quantized_linear q = random_layer(K, N, 4, 128, false, 5151);
    const auto lin = make_gptq_device_linear(ctx, pack(q), 8);
    REQUIRE(lin->kernel_path(1).rfind("gptq-fused-v3", 0) == 0);
    const device_buffer xd = upload(ctx, to_half_bits(random_inputs(2, K, 5152)));
    device_buffer plain = ctx.allocate(2 * N * 2, "y untraced"), traced = ctx.allocate(2 * N * 2, "y traced");
    constexpr std::size_t capacity = 4096;
    device_buffer stamps = ctx.allocate(capacity * k_a_trace_fields * 8, "stamps");
    int sms = 0;
    QB_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    for (std::int64_t rows : {1, 2}) {
        QB_CUDA_CHECK(cudaMemsetAsync(stamps.get(), 0, stamps.size(), ctx.stream()));
        QB_CUDA_CHECK(cudaMemsetAsync(traced.get(), 0xff, traced.size(), ctx.stream()));
        lin->forward(xd.get(), rows, plain.get(), ctx.stream());
        a_trace_open(stamps.as<unsigned long long>(), capacity);
        lin->forward(xd.get(), rows, traced.get(), ctx.stream());
        const std::vector<a_trace_launch> launches = a_trace_close();
        QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
        INFO("rows " << rows);
        CHECK(download<std::uint16_t>(plain.get(), static_cast<std::size_t>(rows * N)) ==
              download<std::uint16_t>(traced.get(), static_cast<std::size_t>(rows * N)));
        REQUIRE(launches.size() == 1);
        const a_trace_launch& l = launches[0];
        CHECK(l.mode == a_mode::group);
        CHECK(l.kblocks == K / 128);
        CHECK(l.mtiles == N / 16);
        REQUIRE(l.grid > 0);
        const auto t = download<unsigned long long>(stamps.get(), capacity * k_a_trace_fields);
        int ordered = 0;
        for (int b = 0; b < l.grid; ++b) {
            const unsigned long long* c = &t[(l.first + static_cast<std::size_t>(b)) * k_a_trace_fields];
            ordered += c[a_trace_entry] > 0 && c[a_trace_entry] <= c[a_trace_waited] && c[a_trace_waited] <= c[a_trace_staged] &&
                               c[a_trace_staged] <= c[a_trace_loop_done] && c[a_trace_loop_done] <= c[a_trace_end] &&
                               c[a_trace_sm] < static_cast<unsigned long long>(sms)
                           ? 1
                           : 0;
        }
        CHECK(ordered == l.grid);
        // Nothing past the launch's CTAs was written.
        CHECK(t[(l.first + static_cast<std::size_t>(l.grid)) * k_a_trace_fields + a_trace_entry] == 0);
    }
}
