// The persistent GPTQ chain (gptq_chain.cuh) against kernel v3 launched per linear: the same bits at every linear of
// chains whose k-slices are even, uneven and partly empty, launched twice (the outputs re-armed in between); and the
// chain's limits refused by name.
#include "gptq_gpu_test_util.hpp"

#include "backends/gptq/gptq_a_layout.hpp"
#include "backends/gptq/gptq_chain.cuh"
#include "backends/gptq/gptq_device_layout.hpp"
#include "backends/gptq/gptq_gemm_a.cuh"

#include "cuda/write_once.cuh"
#include "qbench/common/errors.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <vector>

using namespace qbench;
using namespace qbench::gptq;
using namespace qbench::gptq::test;

namespace {

/// One 4-bit g128 linear in the v3 layout on the device (no act-order: rows in order, so x needs no permutation).
struct device_v3_linear {
    std::int64_t K = 0, N = 0;
    device_buffer qweight, meta;
    device_v3_linear(device_context& ctx, std::int64_t k, std::int64_t n, std::uint64_t seed) : K(k), N(n) {
        const quantized_linear q = random_layer(K, N, 4, 128, false, seed);
        const packed_linear p = pack(q);
        const layout_plan plan = plan_layout(K, N, 4, q.groups(), p.g_idx);
        REQUIRE(a_layout_supported(plan));
        REQUIRE(plan.kblocks * k_block_rows == K);
        qweight = upload(ctx, repack_qweight_a_ref(plan, p.qweight));
        meta = upload(ctx, a_meta(plan, p.scales, p.qzeros));
    }
    chain_linear link() const {
        return chain_linear{qweight.as<const std::uint32_t>(), meta.as<const std::uint32_t>(), static_cast<int>(N),
                            static_cast<int>(K / k_block_rows)};
    }
};

/// Kernel v3's output of one linear at one row (launch_a_gemm, one member), into y.
void v3_forward(device_context& ctx, const device_v3_linear& l, const __half* x, __half* y) {
    a_args a;
    const int mtiles = static_cast<int>(l.N / k_a_tile_cols);
    a.m[0] = a_member{l.qweight.as<const std::uint32_t>(), l.meta.as<const std::uint32_t>(), y, static_cast<int>(l.N), mtiles,
                      std::min(mtiles, 2 * ctx.properties().multiProcessorCount)};
    a.members = 1;
    a.x = x;
    a.ldx = l.K;
    a.rows = 1;
    a.kblocks = static_cast<int>(l.K / k_block_rows);
    launch_a_gemm(4, false, a_mode::group, a, launch_options{ctx.stream(), false});
}

/// The chain's outputs against v3's, linear by linear; returns the number of fp16 outputs that differ.
std::int64_t chain_mismatches(const std::vector<std::int64_t>& widths, std::uint64_t seed) {
    device_context ctx;
    std::vector<device_v3_linear> linears;
    std::vector<chain_linear> links;
    for (std::size_t i = 0; i + 1 < widths.size(); ++i) {
        linears.emplace_back(ctx, widths[i], widths[i + 1], seed + i);
        links.push_back(linears.back().link());
    }
    const std::vector<std::uint16_t> x_bits = to_half_bits(random_inputs(1, widths[0], seed + 100));
    std::vector<std::uint32_t> x_words(x_bits.size() / 2);
    for (std::size_t j = 0; j < x_words.size(); ++j)
        x_words[j] = written_word(static_cast<std::uint32_t>(x_bits[2 * j]) | (static_cast<std::uint32_t>(x_bits[2 * j + 1]) << 16));
    const device_buffer x0 = upload(ctx, x_words);

    std::int64_t outputs = 0;
    for (std::size_t i = 1; i < widths.size(); ++i) outputs += widths[i];
    device_buffer y_chain = ctx.allocate(static_cast<std::size_t>(outputs) * 2, "chain outputs");
    device_buffer y_v3 = ctx.allocate(static_cast<std::size_t>(outputs) * 2, "v3 outputs");
    const chain_plan plan = plan_gptq_chain(links);
    device_buffer scratch = ctx.allocate(plan.scratch_bytes, "chain scratch");
    REQUIRE(plan.ctas > 0);
    std::int64_t bad = 0;
    REQUIRE(plan.y_words * 2 == static_cast<std::size_t>(outputs));
    upload_gptq_chain(plan, links, x0.as<const std::uint32_t>(), y_chain.as<std::uint32_t>(), scratch.get(), ctx.stream());
    // Launch 0 as the executor runs it; launch 1 with the blocking producer and the trace (measurement switches: the
    // same bits, and a trace whose stamps are in order).
    const std::size_t trace_words = static_cast<std::size_t>(plan.ctas) * (plan.linears + 1) * k_trace_fields;
    device_buffer trace = ctx.allocate(trace_words * 8, "chain trace");
    QB_CUDA_CHECK(cudaMemsetAsync(trace.get(), 0, trace.size(), ctx.stream()));
    for (int launch = 0; launch < 2; ++launch) {
        chain_tuning tuning;
        if (launch == 1) tuning.producer = k_producer_blocking, tuning.trace = trace.as<unsigned long long>();
        enqueue_gptq_chain(plan, y_chain.as<std::uint32_t>(), scratch.get(), ctx.stream(), tuning);
        const __half* x = x0.as<const __half>();
        std::int64_t at = 0;
        for (const device_v3_linear& l : linears) {
            __half* y = y_v3.as<__half>() + at;
            v3_forward(ctx, l, x, y);
            x = y;
            at += l.N;
        }
        QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
        const auto got = download<std::uint16_t>(y_chain.get(), static_cast<std::size_t>(outputs));
        const auto want = download<std::uint16_t>(y_v3.get(), static_cast<std::size_t>(outputs));
        for (std::size_t j = 0; j < got.size(); ++j) bad += got[j] != want[j];
        INFO("launch " << launch);
        CHECK(std::count(got.begin(), got.end(), std::uint16_t{0xffff}) == 0);  // every output written
    }
    const auto t = download<unsigned long long>(trace.get(), trace_words);
    std::int64_t out_of_order = 0;
    for (int b = 0; b < plan.ctas; ++b) {
        const unsigned long long* h = t.data() + static_cast<std::size_t>(b) * (plan.linears + 1) * k_trace_fields;
        out_of_order += !(h[0] < h[2] && h[1] < h[3]);  // the header: clock and ns, start before end
        unsigned long long last = h[0];
        for (int p = 0; p < plan.linears; ++p) {
            const unsigned long long* f = h + (p + 1) * k_trace_fields;
            out_of_order += !(last <= f[k_trace_hint] && f[k_trace_hint] <= f[k_trace_stored]);
            if (f[k_trace_staged] != 0)
                out_of_order += !(f[k_trace_hint] <= f[k_trace_staged] && f[k_trace_staged] <= f[k_trace_loop_done] &&
                                  f[k_trace_loop_done] <= f[k_trace_stored]);
            last = f[k_trace_stored];
        }
        out_of_order += !(last <= h[2]);
    }
    CHECK(out_of_order == 0);
    return bad;
}

}  // namespace

TEST_CASE("the persistent GPTQ chain gives kernel v3's bits at every linear", "[gpu][gptq][chain]") {
    // 1024 -> 1408: 8 k-blocks (warps 8..15 own none); 1408 -> 1024: 11 (uneven); 1024 -> 2048; 2048 -> 1024: 16
    // (one each); 1024 -> 4096 -> 11008 -> 4096: the 7B shapes (86 k-blocks: 5 or 6 a warp).
    CHECK(chain_mismatches({1024, 1408, 1024, 2048, 1024}, 7100) == 0);
    CHECK(chain_mismatches({4096, 11008, 4096, 4096}, 7200) == 0);
}

TEST_CASE("the GPTQ chain refuses what the prototype cannot run, by name", "[gpu][gptq][chain]") {
    device_context ctx;
    const device_v3_linear a(ctx, 1024, 1024, 7300);
    chain_linear bad_n = a.link();
    bad_n.n = 1000;
    CHECK_THROWS_WITH(plan_gptq_chain({bad_n}), Catch::Contains("linear 0") && Catch::Contains("multiple of 16"));
    chain_linear wrong_k = a.link();
    wrong_k.kblocks = 4;  // K = 512 after a linear of 1024 outputs
    CHECK_THROWS_WITH(plan_gptq_chain({a.link(), wrong_k}), Catch::Contains("linear 1") && Catch::Contains("previous linear gives 1024"));
    CHECK_THROWS_WITH(plan_gptq_chain({}), Catch::Contains("1 to 256 linears"));
}
