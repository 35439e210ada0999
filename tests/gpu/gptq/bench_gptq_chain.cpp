// bench_gptq's BM_gptq_chain: the persistent GPTQ chain prototype (backends/gptq/gptq_chain.cuh) against kernel v3
// launched per linear.
#include "bench_gptq_env.hpp"

#include "backends/gptq/gptq_a_layout.hpp"
#include "backends/gptq/gptq_chain.cuh"
#include "backends/gptq/gptq_device_layout.hpp"
#include "backends/gptq/gptq_gemm_a.cuh"
#include "cuda/launch.cuh"

#include <benchmark/benchmark.h>

#include <cstdint>
#include <utility>
#include <vector>

using namespace qbench;
using namespace qbench::gptq;
using namespace qbench::gptq::test;

namespace {

/// The 7B step's 4-bit linears as one chain, each input the previous output (gptq_chain.cuh's prototype): per two
/// layers eight 4096 -> 4096 linears (q, k, v and o, twice) and three 4096 -> 11008 -> 4096 pairs (gate, up and down,
/// twice), so 32 layers stream the step's 4-bit weight bytes in 224 linears. Weights are fill patterns (timing only).
/// Arg 0: kernel v3 per linear (PDL, one graph), as the executor launches it; 1: the persistent chain (one
/// cooperative launch, the weights through bulk-copy rings, the phases synchronised by write-once activations).
void BM_gptq_chain(benchmark::State& state) {
    env& e = the_env();
    if (e.ctx.properties().major < 9) {
        state.SkipWithError("the chain needs sm_90");
        return;
    }
    const bool persistent = state.range(0) != 0;
    struct chain_weights {
        std::vector<device_buffer> buffers;
        std::vector<chain_linear> links;
        std::uint64_t bytes = 0;
    };
    static chain_weights w = [&e] {
        chain_weights cw;
        const int h = 4096, f = 11008;
        std::vector<std::pair<int, int>> shapes;  // (K, N)
        for (int two_layers = 0; two_layers < 16; ++two_layers) {
            for (int i = 0; i < 8; ++i) shapes.emplace_back(h, h);
            for (int i = 0; i < 3; ++i) {
                shapes.emplace_back(h, f);
                shapes.emplace_back(f, h);
            }
        }
        for (const auto& [K, N] : shapes) {
            std::vector<std::int32_t> g_idx(static_cast<std::size_t>(K));
            for (int j = 0; j < K; ++j) g_idx[static_cast<std::size_t>(j)] = j / 128;
            const layout_plan plan = plan_layout(K, N, 4, K / 128, g_idx);
            device_buffer q = e.ctx.allocate(a_qweight_words(plan) * 4, "chain qweight");
            device_buffer m = e.ctx.allocate(a_meta_words(plan) * 4, "chain meta");
            QB_CUDA_CHECK(cudaMemsetAsync(q.get(), 0x5a, q.size(), e.ctx.stream()));
            QB_CUDA_CHECK(cudaMemsetAsync(m.get(), 0x2c, m.size(), e.ctx.stream()));  // scales ~0.066: sums stay small
            cw.links.push_back(chain_linear{q.as<const std::uint32_t>(), m.as<const std::uint32_t>(), N, K / 128});
            cw.bytes += q.size() + m.size();
            cw.buffers.push_back(std::move(q));
            cw.buffers.push_back(std::move(m));
        }
        QB_CUDA_CHECK(cudaStreamSynchronize(e.ctx.stream()));
        return cw;
    }();
    static const chain_plan plan = plan_gptq_chain(w.links);
    static device_buffer x0 = e.ctx.allocate(4096 * 2, "chain x0");
    static device_buffer y = e.ctx.allocate(plan.y_words * 4, "chain outputs");
    static device_buffer scratch = e.ctx.allocate(plan.scratch_bytes, "chain scratch");
    static const bool uploaded = [&e] {
        QB_CUDA_CHECK(cudaMemsetAsync(x0.get(), 0x3c, x0.size(), e.ctx.stream()));  // halves ~1.06, never unwritten
        upload_gptq_chain(plan, w.links, x0.as<const std::uint32_t>(), y.as<std::uint32_t>(), scratch.get(), e.ctx.stream());
        return true;
    }();
    (void)uploaded;
    const auto body = [&](cudaStream_t st) {
        if (persistent) {
            enqueue_gptq_chain(plan, y.as<std::uint32_t>(), scratch.get(), st);
            return;
        }
        const __half* x = x0.as<const __half>();
        __half* out = y.as<__half>();
        for (const chain_linear& l : w.links) {
            a_args a;
            const int mtiles = l.n / static_cast<int>(k_a_tile_cols);
            a.m[0] = a_member{l.qweight, l.meta, out, l.n, mtiles, std::min(mtiles, 2 * e.ctx.properties().multiProcessorCount)};
            a.members = 1;
            a.x = x;
            a.ldx = static_cast<std::int64_t>(l.kblocks) * k_block_rows;
            a.rows = 1;
            a.kblocks = l.kblocks;
            launch_a_gemm(4, false, a_mode::group, a, launch_options{st, e.ctx.pdl_enabled()});
            x = out;
            out += l.n;
        }
    };
    double t = 0;
    for (auto _ : state) {
        t = time_graph(e.ctx, body, 1);
        state.SetIterationTime(t);
    }
    const double gbs = static_cast<double>(w.bytes) / t * 1e-9;
    state.counters["ms"] = t * 1e3;
    state.counters["GB/s"] = gbs;
    state.counters["bw_frac"] = gbs / e.stream_gbs;
    state.counters["ctas"] = persistent ? plan.ctas : 0;
    state.SetLabel(persistent ? "persistent chain" : "v3 per linear");
}

}  // namespace

BENCHMARK(BM_gptq_chain)->Arg(0)->Arg(1)->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
