// bench_gptq's BM_gptq_chain: the persistent GPTQ chain prototype (backends/gptq/gptq_chain.cuh) against kernel v3
// launched per linear; BM_gptq_stack: the persistent decode stack at Llama-7B's shapes. Both print the persistent
// kernel's trace (chain_trace.hpp) after timing it.
#include "bench_gptq_env.hpp"
#include "chain_trace.hpp"

#include "backends/gptq/gptq_a_layout.hpp"
#include "backends/gptq/gptq_chain.cuh"
#include "backends/gptq/gptq_device_layout.hpp"
#include "backends/gptq/gptq_gemm_a.cuh"
#include "cuda/launch.cuh"

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <string>
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
/// cooperative launch, the weights through bulk-copy rings, the phases synchronised by write-once activations). Arg 1:
/// the chain's producer (chain_producer).
void BM_gptq_chain(benchmark::State& state) {
    env& e = the_env();
    if (e.ctx.properties().major < 9) {
        state.SkipWithError("the chain needs sm_90");
        return;
    }
    const bool persistent = state.range(0) != 0;
    const int producer = static_cast<int>(state.range(1));
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
            chain_tuning tuning;
            tuning.producer = producer;
            enqueue_gptq_chain(plan, y.as<std::uint32_t>(), scratch.get(), st, tuning);
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
    if (persistent) {
        const auto class_of = [](int p) {
            const chain_linear& l = w.links[static_cast<std::size_t>(p)];
            return std::to_string(l.kblocks * 128) + "->" + std::to_string(l.n);
        };
        print_chain_trace(e.ctx, plan.ctas, plan.linears, class_of, [&](const chain_tuning& tuning) {
            enqueue_gptq_chain(plan, y.as<std::uint32_t>(), scratch.get(), e.ctx.stream(), tuning);
        }, chain_tuning{producer, true, nullptr});
    }
}

/// A decode step's layer stack at Llama-7B's shapes (32 layers, hidden 4096, 32 heads of 128, intermediate 11008) as
/// one persistent grid, at one width, from fill patterns (timing only): the caches hold `context` positions, the row
/// attends at position context - 1 (MiniGPT-4's image and prompt plus the answer so far: ~100 to ~200). The input x is
/// restored before every step (a copy node), so values stay where the patterns put them. Args: bits, producer, whether
/// the attention rows are prefetched (chain_tuning).
void BM_gptq_stack(benchmark::State& state) {
    env& e = the_env();
    if (e.ctx.properties().major < 9) {
        state.SkipWithError("the stack needs sm_90");
        return;
    }
    const int bits = static_cast<int>(state.range(0));
    const int producer = static_cast<int>(state.range(1));
    const bool prefetch_attention = state.range(2) != 0;
    constexpr int hidden = 4096, inter = 11008, heads = 32, head_dim = 128, layers = 32;
    constexpr std::int64_t max_len = 256, context = 160;
    std::vector<device_buffer> keep;
    std::uint64_t bytes = 0;
    auto linear = [&](int K, int N) {
        std::vector<std::int32_t> g_idx(static_cast<std::size_t>(K));
        for (int j = 0; j < K; ++j) g_idx[static_cast<std::size_t>(j)] = j / 128;
        const layout_plan plan = plan_layout(K, N, bits, K / 128, g_idx);
        device_buffer q = e.ctx.allocate(a_qweight_words(plan) * 4, "stack qweight");
        device_buffer m = e.ctx.allocate(a_meta_words(plan) * 4, "stack meta");
        QB_CUDA_CHECK(cudaMemsetAsync(q.get(), 0x5a, q.size(), e.ctx.stream()));
        QB_CUDA_CHECK(cudaMemsetAsync(m.get(), 0x2c, m.size(), e.ctx.stream()));
        const chain_linear l{q.as<const std::uint32_t>(), m.as<const std::uint32_t>(), N, K / 128};
        bytes += q.size() + m.size();
        keep.push_back(std::move(q));
        keep.push_back(std::move(m));
        return l;
    };
    auto filled = [&](std::size_t size, int byte, const char* what) {
        device_buffer b = e.ctx.allocate(size, what);
        QB_CUDA_CHECK(cudaMemsetAsync(b.get(), byte, size, e.ctx.stream()));
        keep.push_back(std::move(b));
        return keep.back().get();
    };
    const std::size_t cache_bytes = static_cast<std::size_t>(max_len) * heads * head_dim * 2;
    std::vector<stack_layer> ls;
    for (int l = 0; l < layers; ++l) {
        stack_layer s{linear(hidden, hidden), linear(hidden, hidden), linear(hidden, hidden), linear(hidden, hidden),
                      linear(hidden, inter),  linear(hidden, inter),  linear(inter, hidden),  nullptr, nullptr, nullptr, nullptr};
        s.input_norm = static_cast<const __half*>(filled(hidden * 2, 0x3c, "stack norm"));  // halves ~1.06
        s.post_norm = static_cast<const __half*>(filled(hidden * 2, 0x3c, "stack norm"));
        s.k_cache = static_cast<__half*>(filled(cache_bytes, 0x2c, "stack k cache"));  // halves ~0.07
        s.v_cache = static_cast<__half*>(filled(cache_bytes, 0x2c, "stack v cache"));
        ls.push_back(s);
    }
    stack_shape shape;
    shape.bits = bits;
    shape.hidden = hidden, shape.heads = heads, shape.kv_heads = heads, shape.head_dim = head_dim;
    shape.eps = 1e-6;
    shape.scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    shape.max_len = max_len;
    shape.inv_freq = static_cast<const float*>(filled(head_dim / 2 * 4, 0, "stack inv_freq"));
    const std::int32_t pos = static_cast<std::int32_t>(context - 1);
    auto* pos_d = static_cast<std::int32_t*>(filled(4, 0, "stack pos"));
    QB_CUDA_CHECK(cudaMemcpyAsync(pos_d, &pos, 4, cudaMemcpyHostToDevice, e.ctx.stream()));
    shape.pos = pos_d;
    shape.slot_table = static_cast<const std::int32_t*>(filled(max_len * 4, 0, "stack slot table"));
    shape.x = static_cast<__half*>(filled(hidden * 2, 0x3c, "stack x"));
    const void* x0 = filled(hidden * 2, 0x3c, "stack x0");
    QB_CUDA_CHECK(cudaStreamSynchronize(e.ctx.stream()));
    gptq_decode_stack stack(e.ctx, shape, ls);
    const auto run = [&](cudaStream_t st, const chain_tuning& tuning) {
        QB_CUDA_CHECK(cudaMemcpyAsync(shape.x, x0, hidden * 2, cudaMemcpyDeviceToDevice, st));
        stack.enqueue(st, tuning);
    };
    const chain_tuning tuning{producer, prefetch_attention, nullptr};
    double t = 0;
    for (auto _ : state) {
        t = time_graph(e.ctx, [&](cudaStream_t st) { run(st, tuning); }, 1);
        state.SetIterationTime(t);
    }
    const double gbs = static_cast<double>(bytes) / t * 1e-9;
    state.counters["ms"] = t * 1e3;
    state.counters["GB/s"] = gbs;
    state.counters["bw_frac"] = gbs / e.stream_gbs;
    state.counters["ctas"] = stack.plan().ctas;
    state.SetLabel("persistent stack, weights " + std::to_string(bytes >> 20) + " MiB");
    static const char* names[] = {"q/k/v", "attention", "o", "gate/up", "down"};
    print_chain_trace(e.ctx, stack.plan().ctas, stack.plan().linears, [](int p) { return std::string(names[p % 5]); },
                      [&](const chain_tuning& traced) { run(e.ctx.stream(), traced); }, tuning);
}

}  // namespace

BENCHMARK(BM_gptq_chain)->Args({0, 0})->Args({1, 0})->Args({1, 1})->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_gptq_stack)
    ->ArgsProduct({{4, 2, 8, 3}, {1}, {1, 0}})
    ->UseManualTime()
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
