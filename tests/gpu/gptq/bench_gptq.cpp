// bench_gptq (Google Benchmark, a device-script tool, not a timed test):
//   BM_gptq_linear   the GPTQ linear (fused kernels up to the batch threshold, reconstruct + cuBLAS above) per width at
//                    Llama-7B shapes, batch 1..16: time per forward, GB/s of weights+metadata and the fraction of the
//                    measured streaming bandwidth; several weight copies rotate so the 60 MB L2 cannot hold them,
//                    forwards replayed from a CUDA graph (as the executor's decode step).
//   BM_gptq_linear_l2  the same launches at batch 1 from one copy that stays in L2 (32 forwards a graph): how fast
//                    v3 consumes weights when DRAM does not limit it, set against the card's stream.
//   BM_f16_linear    the fp16 linear (the fp16 backend's GEMV / cuBLAS) on the same shapes, for comparison.
//   BM_decode_7b     every linear of a Llama-7B decode step (32 layers x 7 + fp16 lm_head) in one CUDA graph with
//                    programmatic dependent launch: tokens/s, bandwidth utilization of the linears' bytes, and at the
//                    end a table with the GPTQ/fp16 speedup of the same run and the beam 2/4 step cost.
//   BM_gptq_fused_layer  one layer's q/k/v (which 0) or gate/up + SwiGLU (which 1), args (bits, which, rows, fuse):
//                    one fused launch vs the separate launches, copies rotating beyond L2: time per layer's group.
//   BM_decode_7b_fused  the same linears as the executor enqueues them per layer, without fusion (7 forwards +
//                    the SwiGLU kernel: 8 launches) and with it (fused_linear.hpp: q/k/v, o, gate/up+SwiGLU, down:
//                    4 launches), args (bits, mode): mode 0 separate, 1 fused, 2 fused + the two RMSNorm kernels
//                    per layer (residual adds included), 3 the norms folded (normed q/k/v and gate/up, o and down
//                    adding into the residual: 4 launches), 4 only the residual adds folded (norm kernels kept);
//                    5 as 4 with the next RMSNorm formed by o/down's last CTA (forward_residual_normed: no norm kernels
//                    but the first); tables at the end compare 0 with 1, 2 with 3, 2 with 4 and 2 with 5; modes 2 and 5
//                    at beam 1 also print the trace of their v3 launches (launch_trace.hpp: boundary, staging, loop,
//                    epilogue and tail per launch).
//   BM_phase_stream  the memory side of a 7B step's linears without their arithmetic (phase_stream.cuh), args (bits,
//                    schedule, norms, shape, work): one kernel per linear vs one persistent kernel with grid barriers
//                    (with and without the next phase's loads in flight across the barrier) vs no boundaries at all,
//                    and the per-linear kernels bare or with v3's x staging and end-of-CTA reduction (shape 1, 2), or
//                    bare with twice v3's requests in flight (shape 3); the bulk-copy ring schedules (4-8, 10-14: a
//                    persistent ring with grid barriers of each memory ordering, without them, or synchronised by the
//                    data as its own flag; kernels per phase with a ring) and 48 ALU instructions a vector (work);
//                    tables at the end give the cost of one boundary in each schedule and of v3's structure per launch.
//   BM_gptq_chain    (bench_gptq_chain.cpp) the 7B step's 4-bit linear bytes as one chain of 224 linears: kernel v3
//                    per linear (arg 0) vs the persistent chain prototype (arg 1, gptq_chain.cuh).
#include "bench_gptq_env.hpp"
#include "gptq_gpu_test_util.hpp"
#include "launch_trace.hpp"
#include "phase_stream.cuh"
#include "stream_pattern.cuh"

#include "backends/fp16/fp16_linear.hpp"
#include "backends/gptq/gptq_linear.hpp"

#include "cuda/fused_linear.hpp"
#include "cuda/rms_norm.cuh"
#include "cuda/swiglu.cuh"

#include "qbench/config/cell.hpp"
#include "qbench/io/synthetic_checkpoint.hpp"

#include <cstdlib>
#include <benchmark/benchmark.h>

#include <cstdio>
#include <functional>
#include <map>
#include <tuple>
#include <memory>
#include <string>

// The fused launches are opt-in (QBENCH_GPTQ_FUSE=1, gptq_device_linear.cu); here they are what is tested/timed.
static const int g_gptq_fusion_on = (::setenv("QBENCH_GPTQ_FUSE", "1", 1), 0);

using namespace qbench;
using namespace qbench::gptq;
using namespace qbench::gptq::test;

namespace {

struct shape {
    std::int64_t K, N;
    linear_kind kind;
    const char* name;
};
constexpr shape k_shapes[] = {{4096, 4096, linear_kind::q_proj, "qkvo"},
                              {4096, 11008, linear_kind::gate_proj, "gate_up"},
                              {11008, 4096, linear_kind::down_proj, "down"}};


std::unique_ptr<device_linear> random_gptq_linear(device_context& ctx, std::int64_t K, std::int64_t N, std::int64_t bits,
                                                  std::int64_t gs, bool act, std::uint64_t seed) {
    static std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool>, packed_linear> cache;
    auto key = std::make_tuple(K, N, bits, gs, act);
    auto it = cache.find(key);
    if (it == cache.end()) it = cache.emplace(key, pack(random_layer(K, N, bits, gs, act, seed))).first;
    return make_gptq_device_linear(ctx, it->second, 8);
}

std::unique_ptr<device_linear> f16_linear(env& e, std::int64_t layer, linear_kind kind, std::int64_t K, std::int64_t N) {
    cell_spec cell;
    cell.framework = "fp16";
    cell.bits = 16;
    const std::string prefix = kind == linear_kind::lm_head ? "lm_head" : linear_prefix(layer, kind);
    return load_f16_device_linear(linear_request{*e.fp16_source, prefix, kind, K, N, cell}, e.ctx);
}

/// One linear shape: copies rotate through a graph so every forward reads from DRAM.
void run_linear_bench(benchmark::State& state, std::int64_t bits) {
    env& e = the_env();
    const shape& sh = k_shapes[state.range(0)];
    const std::int64_t rows = state.range(1);
    // Enough copies of the layer that the 60 MB L2 cannot hold them; kept across row counts.
    static std::map<std::pair<std::int64_t, std::int64_t>, std::vector<std::unique_ptr<device_linear>>> sets;
    auto& copies = sets[{bits, state.range(0)}];
    std::uint64_t bytes = 0;
    for (const auto& c : copies) bytes += c->weight_bytes();
    while (bytes < (768ull << 20) || copies.size() < 4) {
        copies.push_back(bits == 16 ? f16_linear(e, static_cast<std::int64_t>(copies.size()) % 32, sh.kind, sh.K, sh.N)
                                    : random_gptq_linear(e.ctx, sh.K, sh.N, bits, 128, false, 11));
        bytes += copies.back()->weight_bytes();
    }
    const device_buffer x = upload(e.ctx, to_half_bits(random_inputs(rows, sh.K, 5)));
    device_buffer y = e.ctx.allocate(static_cast<std::uint64_t>(rows * sh.N) * 2, "bench y");
    const auto body = [&](cudaStream_t st) {
        for (auto& c : copies) c->forward(x.get(), rows, y.get(), st);
    };
    double t = 0;
    for (auto _ : state) {
        t = time_graph(e.ctx, body, static_cast<int>(copies.size()));
        state.SetIterationTime(t);
    }
    const double gbs = static_cast<double>(copies.front()->weight_bytes()) / t * 1e-9;
    state.counters["us"] = t * 1e6;
    state.counters["GB/s"] = gbs;
    state.counters["bw_frac"] = gbs / e.stream_gbs;
    state.SetLabel(std::string(sh.name) + " " + copies.front()->kernel_path(rows));
}

void BM_gptq_linear(benchmark::State& state) { run_linear_bench(state, state.range(2)); }

/// The same launches with one copy of the layer, forwarded 32 times a graph: its weights (at most 23.6 MB at 4 bits,
/// 47 MB at 8) stay in L2 after the first, so DRAM is not what limits it. What it says: how fast v3 consumes weights
/// when they arrive at L2 speed (its decode-and-mma rate plus each launch's fixed part). A kernel whose time here is
/// close to its time from DRAM (BM_gptq_linear) is bound by its own work or its boundaries, not by the stream; the
/// `eq_GB/s` counter is the weight bytes over that time, to set against the card's stream.
void BM_gptq_linear_l2(benchmark::State& state) {
    env& e = the_env();
    const shape& sh = k_shapes[state.range(0)];
    const std::int64_t rows = state.range(1), bits = state.range(2);
    const auto layer = random_gptq_linear(e.ctx, sh.K, sh.N, bits, 128, false, 11);
    const device_buffer x = upload(e.ctx, to_half_bits(random_inputs(rows, sh.K, 5)));
    device_buffer y = e.ctx.allocate(static_cast<std::uint64_t>(rows * sh.N) * 2, "bench y");
    constexpr int forwards = 32;
    const auto body = [&](cudaStream_t st) {
        for (int i = 0; i < forwards; ++i) layer->forward(x.get(), rows, y.get(), st);
    };
    double t = 0;
    for (auto _ : state) {
        t = time_graph(e.ctx, body, forwards);
        state.SetIterationTime(t);
    }
    const double gbs = static_cast<double>(layer->weight_bytes()) / t * 1e-9;
    state.counters["us"] = t * 1e6;
    state.counters["eq_GB/s"] = gbs;
    state.counters["x_stream"] = gbs / e.stream_gbs;
    state.SetLabel(std::string(sh.name) + " L2-resident " + layer->kernel_path(rows));
}
void BM_f16_linear(benchmark::State& state) { run_linear_bench(state, 16); }

/// The memory side alone (stream_pattern.cuh), args (streams per warp, requests in flight per warp, CTAs per SM):
/// 24 KB per warp of 2 CTAs per SM (52 MB on 132 SMs, about two 4-bit gate/up linears), the same bytes at 4 CTAs
/// per SM, each warp its share as interleaved runs with 512-byte requests; 16 copies rotating beyond L2 in a CUDA graph
/// with PDL, as BM_gptq_linear. What the memory side allows a kernel of the GPTQ kernels' shape.
void BM_stream_pattern(benchmark::State& state) {
    env& e = the_env();
    const int streams = static_cast<int>(state.range(0)), stages = static_cast<int>(state.range(1));
    const int per_sm = static_cast<int>(state.range(2)), sms = e.ctx.properties().multiProcessorCount;
    const std::size_t bytes = static_cast<std::size_t>(2 * sms) * 8 * 24576, copies = 16;
    static device_buffer src = e.ctx.allocate(bytes * copies, "stream pattern source");
    static device_buffer sink = e.ctx.allocate(1 << 20, "stream pattern sink");
    static const bool filled = [] {
        QB_CUDA_CHECK(cudaMemset(src.get(), 0x5b, src.size()));
        QB_CUDA_CHECK(cudaDeviceSynchronize());  // the context's stream does not wait for the legacy stream
        return true;
    }();
    (void)filled;
    const auto body = [&](cudaStream_t st) {
        for (std::size_t c = 0; c < copies; ++c)
            launch_stream_pattern(static_cast<const char*>(src.get()) + c * bytes, bytes, streams, stages, per_sm, sms,
                                  sink.as<std::uint32_t>(), st, e.ctx.pdl_enabled());
    };
    double t = 0;
    for (auto _ : state) {
        t = time_graph(e.ctx, body, static_cast<int>(copies));
        state.SetIterationTime(t);
    }
    const std::size_t warps = static_cast<std::size_t>(per_sm * sms) * 8;
    const std::size_t read = bytes / 16 / warps / 512 * 512 * 16 * warps;
    state.counters["us"] = t * 1e6;
    state.counters["GB/s"] = static_cast<double>(read) / t * 1e-9;
    state.counters["bw_frac"] = static_cast<double>(read) / t * 1e-9 / e.stream_gbs;
    state.counters["KB_in_flight_per_SM"] = static_cast<double>(per_sm * 8 * stages * 512) / 1024.0;
}

/// The phase boundaries alone (phase_stream.cuh), args (bits, schedule, norms, shape): the 7B step's linears as 32 x 4 fused
/// phases (q/k/v, o, gate/up, down; bytes of g128 GPTQ at `bits`: codes plus an fp16 scale and a zero per group), with
/// `norms` the two RMSNorm boundaries per layer as well, streamed in one of the four phase_schedules from one CUDA
/// graph (PDL as the executor's); with `launches`, `shape` adds v3's staging of x (1) and its end-of-CTA reduction (2),
/// or doubles the requests in flight per warp (3); with the ring schedules (4, 5, 6, sm_90), `shape` 0 is a ring of 12
/// stages of 8 KB per CTA, 1 one of 6. `work` (the fifth arg, launches bare and ring only): 48 ALU instructions per 16-byte
/// vector besides the XOR, about kernel v3's at 4 bits. The
/// tables at the end: what a persistent kernel would save per boundary, and what v3's structure costs per launch.
using phase_key = std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t>;  // bits, norms, schedule, shape, work
std::map<phase_key, double> g_phase;  // -> s
std::map<std::int64_t, double> g_phase_bytes;  // bits -> bytes the probe reads per step
double phase_step_bytes(std::int64_t bits) {
    const auto f = g_phase_bytes.find(bits);
    return f != g_phase_bytes.end() ? f->second : 0.0;
}
void BM_phase_stream(benchmark::State& state) {
    env& e = the_env();
    const std::int64_t bits = state.range(0), schedule = state.range(1), norms = state.range(2), shape = state.range(3);
    const std::int64_t work = state.range(4);
    const auto sched = static_cast<phase_schedule>(schedule);
    // every schedule from `ring` on feeds its consumers through a bulk-copy ring, except barrier_prefetch_relaxed
    const bool ring_schedule = schedule >= static_cast<std::int64_t>(phase_schedule::ring) &&
                               sched != phase_schedule::barrier_prefetch_relaxed;
    if (ring_schedule && e.ctx.properties().major < 9) {
        state.SkipWithError("the ring schedule needs sm_90");
        return;
    }
    const model_config m = llama7b();
    const double h = static_cast<double>(m.hidden_size), f = static_cast<double>(m.intermediate_size);
    const auto bytes_of = [&](double params) {
        return static_cast<std::size_t>(params * static_cast<double>(bits) / 8 + params / 128 * (2 + static_cast<double>(bits) / 8));
    };
    phase_stream_plan plan;
    // x: K fp16 activations at one row, in 16-byte vectors rounded up to a power of two (the probe's mask)
    const auto x_vecs_of = [](std::int64_t K) {
        int v = 1;
        while (v < K / 8) v *= 2;
        return v;
    };
    const auto phase = [&](std::size_t bytes, std::int64_t K) {
        plan.bytes.push_back(bytes);
        plan.x_vecs.push_back(x_vecs_of(K));
    };
    for (std::int64_t layer = 0; layer < m.num_layers; ++layer) {
        if (norms != 0) phase(0, m.hidden_size);
        phase(bytes_of(3 * h * h), m.hidden_size);
        phase(bytes_of(h * h), m.hidden_size);
        if (norms != 0) phase(0, m.hidden_size);
        phase(bytes_of(2 * h * f), m.hidden_size);
        phase(bytes_of(h * f), m.intermediate_size);
    }
    plan.deep = sched == phase_schedule::launches && shape == 3;  // shape 3: bare, 12 requests in flight per warp
    plan.ring_stages = shape == 1 ? 6 : 12;
    plan.ring_gather = shape == 2;  // the persistent ring schedules: 12 stages, each gathered by 16 copies
    plan.work = static_cast<int>(work);
    const std::size_t source_bytes = plan_phase_stream(plan, e.ctx.properties().multiProcessorCount);
    static std::map<std::int64_t, device_buffer> sources;  // by bits: the step's bytes, far beyond L2
    auto it = sources.find(bits);
    if (it == sources.end()) {
        it = sources.emplace(bits, e.ctx.allocate(source_bytes, "phase stream source")).first;
        QB_CUDA_CHECK(cudaMemsetAsync(it->second.get(), 0x3c, it->second.size(), e.ctx.stream()));
    }
    static device_buffer scratch = e.ctx.allocate(phase_stream_scratch_bytes, "phase stream scratch");
    // On the context's stream, before the table's upload on it: that stream does not wait for the legacy default
    // stream (cudaStreamNonBlocking), so a plain cudaMemset could zero the table after the upload (a step of no
    // phases, or null bases: seen once as a 0.04 ms step followed by an illegal address).
    QB_CUDA_CHECK(cudaMemsetAsync(scratch.get(), 0, scratch.size(), e.ctx.stream()));
    upload_phase_table(plan, it->second.get(), scratch.get(), e.ctx.stream());
    const auto body = [&](cudaStream_t st) {
        const auto launch_shape = sched != phase_schedule::launches || shape == 3 ? phase_shape::bare : static_cast<phase_shape>(shape);
        launch_phase_stream(plan, sched, launch_shape, it->second.get(),
                            scratch.get(), st, e.ctx.pdl_enabled());
    };
    double t = 0;
    for (auto _ : state) {
        t = time_graph(e.ctx, body, 1);
        state.SetIterationTime(t);
    }
    const double gbs = static_cast<double>(plan.total_read) / t * 1e-9;
    g_phase_bytes[bits] = static_cast<double>(plan.total_read);
    state.counters["ms"] = t * 1e3;
    state.counters["GB/s"] = gbs;
    state.counters["bw_frac"] = gbs / e.stream_gbs;
    state.counters["phases"] = static_cast<double>(plan.bytes.size());
    state.counters["ctas"] = plan.ctas;
    static const char* const names[] = {"launches", "barrier", "barrier+prefetch", "no barrier", "ring", "launches, ring",
                                        "launches, ring, 1 CTA per SM", "ring, no barrier", "ring, relaxed barrier",
                                        "barrier+prefetch, relaxed", "ring, data as flags",
                                        "ring, release only", "ring, acquire once", "ring, relaxed arrival",
                                        "ring, data as flags, hinted"};
    static const char* const shapes[] = {"", " (x staged)", " (x staged, partials reduced)", " (12 requests in flight)"};
    std::string label = names[schedule];
    if (sched == phase_schedule::launches) label += shapes[shape];
    if (ring_schedule) label += shape == 1 ? " (6 x 8 KB per CTA)" : shape == 2 ? " (12 x 8 KB per CTA, 16 copies a stage)" : " (12 x 8 KB per CTA)";
    if (work != 0) label += ", work " + std::to_string(work);
    state.SetLabel(label);
    g_phase[{bits, norms, schedule, shape, work}] = t;
}

struct decode_result {
    double step_s = 0;
    double bytes = 0;
};
std::map<std::pair<std::int64_t, std::int64_t>, decode_result> g_decode;  // (bits, rows)

/// All linears of a 7B decode step; bits 16 = fp16. The x/y buffers are shared (values do not matter for time).
void BM_decode_7b(benchmark::State& state) {
    env& e = the_env();
    const std::int64_t bits = state.range(0);
    const model_config m = llama7b();
    std::vector<std::unique_ptr<device_linear>> linears;
    std::uint64_t bytes = 0;
    constexpr linear_kind kinds[] = {linear_kind::q_proj, linear_kind::k_proj, linear_kind::v_proj, linear_kind::o_proj,
                                     linear_kind::gate_proj, linear_kind::up_proj, linear_kind::down_proj};
    for (std::int64_t l = 0; l < m.num_layers; ++l)
        for (linear_kind k : kinds) {
            const std::int64_t K = linear_in_features(m, k), N = linear_out_features(m, k);
            linears.push_back(bits == 16 ? f16_linear(e, l, k, K, N) : random_gptq_linear(e.ctx, K, N, bits, 128, false, 21 + static_cast<std::uint64_t>(k)));
            bytes += linears.back()->weight_bytes();
        }
    linears.push_back(f16_linear(e, 0, linear_kind::lm_head, m.hidden_size, m.vocab_size));  // fp16 in every backend
    bytes += linears.back()->weight_bytes();
    const std::int64_t max_rows = 4;
    const device_buffer x = upload(e.ctx, to_half_bits(random_inputs(max_rows, m.intermediate_size, 9)));
    device_buffer y = e.ctx.allocate(static_cast<std::uint64_t>(max_rows * m.vocab_size) * 2, "bench y");
    for (std::int64_t rows : {1, 2, 4}) {
        const auto body = [&](cudaStream_t st) {
            for (auto& lin : linears) lin->forward(x.get(), rows, y.get(), st);
        };
        const double t = time_graph(e.ctx, body, 1, 30);
        g_decode[{bits, rows}] = {t, static_cast<double>(bytes)};
    }
    for (auto _ : state) state.SetIterationTime(g_decode[{bits, 1}].step_s);
    const auto& r = g_decode[{bits, 1}];
    state.counters["tok/s"] = 1.0 / r.step_s;
    state.counters["GB/tok"] = r.bytes * 1e-9;
    state.counters["bw_util"] = r.bytes / r.step_s * 1e-9 / e.stream_gbs;
    state.SetLabel(bits == 16 ? "fp16" : "gptq-int" + std::to_string(bits) + "-g128");
}

void BM_gptq_fused_layer(benchmark::State& state) {
    env& e = the_env();
    const std::int64_t bits = state.range(0), which = state.range(1), rows = state.range(2);
    const bool fuse = state.range(3) != 0;
    const std::int64_t K = 4096, N = which == 0 ? 4096 : 11008;
    const std::size_t members = which == 0 ? 3 : 2;
    static std::map<std::pair<std::int64_t, std::int64_t>, std::vector<std::unique_ptr<device_linear>>> sets;
    auto& lins = sets[{bits, which}];
    std::uint64_t bytes = 0;
    for (const auto& l : lins) bytes += l->weight_bytes();
    while (bytes < (768ull << 20) || lins.size() < 4 * members) {
        lins.push_back(random_gptq_linear(e.ctx, K, N, bits, 128, false, 31));
        bytes += lins.back()->weight_bytes();
    }
    while (lins.size() % members != 0) lins.pop_back();
    const std::size_t groups = lins.size() / members;
    const device_buffer x = upload(e.ctx, to_half_bits(random_inputs(rows, K, 5)));
    device_buffer y[3] = {e.ctx.allocate(static_cast<std::uint64_t>(rows * N) * 2, "bench y0"),
                          e.ctx.allocate(static_cast<std::uint64_t>(rows * N) * 2, "bench y1"),
                          e.ctx.allocate(static_cast<std::uint64_t>(rows * N) * 2, "bench y2")};
    int ran = 0;
    const auto body = [&](cudaStream_t st) {
        ran = 0;
        for (std::size_t gi = 0; gi < groups; ++gi) {
            auto* L = &lins[gi * members];
            auto* f = fuse ? dynamic_cast<fused_linear*>(L[0].get()) : nullptr;
            bool done = false;
            if (f != nullptr && which == 0) {
                device_linear* kv[2] = {L[1].get(), L[2].get()};
                void* ys[3] = {y[0].get(), y[1].get(), y[2].get()};
                done = f->forward_group(kv, 2, x.get(), rows, ys, st);
            } else if (f != nullptr) {
                done = f->forward_swiglu(*L[1], x.get(), rows, y[0].get(), st);
            }
            ran += done ? 1 : 0;
            if (done) continue;
            for (std::size_t i = 0; i < members; ++i) L[i]->forward(x.get(), rows, y[i].get(), st);
            if (which == 1)
                launch_swiglu(y[0].as<const __half>(), y[1].as<const __half>(), rows * N, y[0].as<__half>(),
                              launch_options{st, e.ctx.pdl_enabled()});
        }
    };
    double t = 0;
    for (auto _ : state) {
        t = time_graph(e.ctx, body, static_cast<int>(groups));
        state.SetIterationTime(t);
    }
    const double gbs = static_cast<double>(lins.front()->weight_bytes() * members) / t * 1e-9;
    state.counters["us"] = t * 1e6;
    state.counters["bw_frac"] = gbs / e.stream_gbs;
    state.counters["fused_frac"] = static_cast<double>(ran) / static_cast<double>(groups);
    state.SetLabel(std::string(which == 0 ? "q/k/v" : "gate/up+swiglu") + (fuse ? " fused" : " separate"));
}

struct fused_key {
    std::int64_t bits, fuse, rows;
    auto operator<=>(const fused_key&) const = default;
};
std::map<fused_key, decode_result> g_decode_fused;

/// Per layer as the executor's decode step: q/k/v, o, gate/up + SwiGLU, down (plus the fp16 lm_head), with the
/// fused calls (falling back like the executor where a call declines) or without. The outputs land in distinct
/// buffers of the executor's sizes; values do not matter for time.
void BM_decode_7b_fused(benchmark::State& state) {
    env& e = the_env();
    const std::int64_t bits = state.range(0);
    // 0 separate, 1 fused, 2 fused + RMSNorm kernels, 3 norms and residual adds folded, 4 only the residual adds folded
    // (o/down add into the residual stream; the RMSNorm kernels then have no delta to add): 3 - 4 is the normed
    // prologue's cost net of the kernels it replaces, 4 - 2 the residual epilogue's.
    // 5: as 4, and o/down also write the next RMSNorm in their last CTA (forward_residual_normed): no norm kernels but
    // the first layer's.
    const int mode = static_cast<int>(state.range(1));
    const bool fuse = mode != 0, with_norms = mode >= 2, fold_norm = mode == 3, fold_residual = mode >= 3;
    const bool norm_in_epilogue = mode == 5;
    const model_config m = llama7b();
    std::vector<std::unique_ptr<device_linear>> linears;
    std::uint64_t bytes = 0;
    constexpr linear_kind kinds[] = {linear_kind::q_proj, linear_kind::k_proj, linear_kind::v_proj, linear_kind::o_proj,
                                     linear_kind::gate_proj, linear_kind::up_proj, linear_kind::down_proj};
    for (std::int64_t l = 0; l < m.num_layers; ++l)
        for (linear_kind k : kinds) {
            const std::int64_t K = linear_in_features(m, k), N = linear_out_features(m, k);
            linears.push_back(bits == 16 ? f16_linear(e, l, k, K, N) : random_gptq_linear(e.ctx, K, N, bits, 128, false, 21 + static_cast<std::uint64_t>(k)));
            bytes += linears.back()->weight_bytes();
        }
    linears.push_back(f16_linear(e, 0, linear_kind::lm_head, m.hidden_size, m.vocab_size));
    bytes += linears.back()->weight_bytes();
    const std::int64_t max_rows = 4, H = m.hidden_size, I = m.intermediate_size;
    const device_buffer x = upload(e.ctx, to_half_bits(random_inputs(max_rows, I, 9)));
    const auto out = [&](std::int64_t n, const char* what) { return e.ctx.allocate(static_cast<std::uint64_t>(max_rows * n) * 2, what); };
    device_buffer yq = out(H, "bench q"), yk = out(H, "bench k"), yv = out(H, "bench v"), yo = out(H, "bench o");
    device_buffer yg = out(I, "bench gate"), yu = out(I, "bench up"), yd = out(H, "bench down"), yl = out(m.vocab_size, "bench logits");
    // Modes 2 to 4: the residual stream, its normed copy and one norm weight (values do not matter for time).
    const device_buffer norm_w = upload(e.ctx, to_half_bits(random_inputs(1, H, 10)));
    device_buffer res = out(H, "bench residual"), h = out(H, "bench normed");
    const fused_linear::normed_input normed{res.get(), norm_w.get(), 1e-6};
    int fused_calls = 0, fused_ran = 0;
    for (std::int64_t rows : {1, 2, 4}) {
        const auto body = [&](cudaStream_t st) {
            fused_calls = fused_ran = 0;
            const launch_options lo{st, e.ctx.pdl_enabled()};
            // Mode 2: the RMSNorm kernel (with the residual add of the block output before it) forms h, triggering its
            // successor before its wait as the executor launches it (QBENCH_PDL_EARLY_TRIGGER, default on).
            const launch_options lo_norm{st, e.ctx.pdl_enabled(), true};
            const auto norm_kernel = [&](const device_buffer* delta) {
                launch_rms_norm(res.as<__half>(), delta != nullptr ? delta->as<const __half>() : nullptr, norm_w.as<const __half>(),
                                1e-6, rows, H, h.as<__half>(), lo_norm);
            };
            const void* in = with_norms ? h.get() : x.get();
            const fused_linear::normed_output next_norm{h.get(), norm_w.get(), 1e-6};
            // Adds into the residual (modes 3-5), in mode 5 also forming h; says what it did: 0 nothing, 1 the add,
            // 2 the add and h.
            const auto residual_call = [&](device_linear* lin, const void* act) {
                auto* f = fold_residual ? dynamic_cast<fused_linear*>(lin) : nullptr;
                if (f == nullptr) return 0;
                if (norm_in_epilogue && f->forward_residual_normed(act, rows, res.get(), next_norm, st)) return 2;
                return f->forward_residual(act, rows, res.get(), st) ? 1 : 0;
            };
            bool h_ready = false;  // mode 5: the last residual call formed h
            for (std::int64_t l = 0; l < m.num_layers; ++l) {
                auto* L = &linears[static_cast<std::size_t>(l * 7)];
                device_linear* kv[2] = {L[1].get(), L[2].get()};
                void* qkv[3] = {yq.get(), yk.get(), yv.get()};
                auto* fq = fuse ? dynamic_cast<fused_linear*>(L[0].get()) : nullptr;
                bool qkv_fused = fold_norm && fq != nullptr && fq->forward_group_normed(kv, 2, normed, rows, qkv, st);
                if (!qkv_fused && with_norms && !h_ready) norm_kernel(l == 0 || fold_residual ? nullptr : &yd);
                qkv_fused = qkv_fused || (fq != nullptr && fq->forward_group(kv, 2, in, rows, qkv, st));
                if (!qkv_fused) {
                    L[0]->forward(in, rows, yq.get(), st);
                    L[1]->forward(in, rows, yk.get(), st);
                    L[2]->forward(in, rows, yv.get(), st);
                }
                const int o_call = residual_call(L[3].get(), x.get());
                const bool o_added = o_call > 0;
                h_ready = o_call == 2;
                if (!o_added) L[3]->forward(x.get(), rows, yo.get(), st);
                auto* fg = fuse ? dynamic_cast<fused_linear*>(L[4].get()) : nullptr;
                bool mlp_fused = fold_norm && fg != nullptr && fg->forward_swiglu_normed(*L[5], normed, rows, yg.get(), st);
                if (!mlp_fused && with_norms && !h_ready) norm_kernel(o_added ? nullptr : &yo);
                mlp_fused = mlp_fused || (fg != nullptr && fg->forward_swiglu(*L[5], in, rows, yg.get(), st));
                if (!mlp_fused) {
                    L[4]->forward(in, rows, yg.get(), st);
                    L[5]->forward(in, rows, yu.get(), st);
                    launch_swiglu(yg.as<const __half>(), yu.as<const __half>(), rows * I, yg.as<__half>(), lo);
                }
                const int down_call = residual_call(L[6].get(), yg.get());
                h_ready = down_call == 2;
                if (down_call == 0) L[6]->forward(x.get(), rows, yd.get(), st);
                fused_calls += 2;
                fused_ran += (qkv_fused ? 1 : 0) + (mlp_fused ? 1 : 0);
            }
            if (with_norms && !h_ready) norm_kernel(fold_residual ? nullptr : &yd);  // the final norm (the LM head does not fold here)
            linears.back()->forward(in, rows, yl.get(), st);
        };
        const double t = time_graph(e.ctx, body, 1, 30);
        g_decode_fused[{bits, mode, rows}] = {t, static_cast<double>(bytes)};
        // The executor's configuration (fused, the norm kernels) at one row: where each v3 launch's time goes.
        if ((mode == 2 || mode == 5) && rows == 1 && bits != 16) {
            std::printf("\nBM_decode_7b_fused/%lld/%d, beam 1: ", static_cast<long long>(bits), mode);
            print_launch_trace(e.ctx, body, t);
        }
    }
    const auto& r = g_decode_fused[{bits, mode, 1}];
    for (auto _ : state) state.SetIterationTime(r.step_s);
    state.counters["tok/s"] = 1.0 / r.step_s;
    state.counters["bw_util"] = r.bytes / r.step_s * 1e-9 / e.stream_gbs;
    state.counters["fused_frac"] = fused_calls > 0 ? static_cast<double>(fused_ran) / fused_calls : 0.0;
    static const char* const mode_names[] = {" separate", " fused", " fused + norm kernels", " fused, norms folded",
                                             " fused, residual adds folded", " fused, adds and norms in o/down's last CTA"};
    state.SetLabel(std::string(bits == 16 ? "fp16" : "gptq-int" + std::to_string(bits) + "-g128") + mode_names[mode]);
}

void linear_args(benchmark::internal::Benchmark* b, bool with_bits) {
    for (std::int64_t s = 0; s < 3; ++s)
        for (std::int64_t rows : {1, 2, 3, 4, 8, 16}) {
            if (with_bits)
                for (std::int64_t bits : {2, 3, 4, 8}) b->Args({s, rows, bits});
            else
                b->Args({s, rows});
        }
}

}  // namespace

BENCHMARK(BM_gptq_linear)->Apply([](benchmark::internal::Benchmark* b) { linear_args(b, true); })->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_gptq_linear_l2)->ArgsProduct({{0, 1, 2}, {1}, {4, 8, 2, 3}})->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_stream_pattern)->Args({1, 8, 2})->Args({16, 8, 2})->Args({1, 16, 2})->Args({1, 32, 2})->Args({1, 8, 4})
    ->Args({1, 16, 4})->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_f16_linear)->Apply([](benchmark::internal::Benchmark* b) { linear_args(b, false); })->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_gptq_fused_layer)->ArgsProduct({{4, 8, 2}, {0, 1}, {1, 4}, {0, 1}})->UseManualTime()->Iterations(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_decode_7b_fused)->ArgsProduct({{4, 16, 8, 3, 2}, {0, 1, 2, 3, 4, 5}})->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_phase_stream)->ArgsProduct({{4, 8, 2}, {0, 1, 2, 3}, {0, 1}, {0}, {0}})->ArgsProduct({{4, 8, 2}, {0}, {0, 1}, {1, 2, 3}, {0}})
    ->ArgsProduct({{4, 8, 2}, {4, 5, 6}, {0, 1}, {0, 1}, {0, 48}})->ArgsProduct({{4, 8, 2}, {0, 3}, {0, 1}, {0}, {48}})
    ->ArgsProduct({{4, 8, 2}, {7, 8}, {0, 1}, {0}, {0, 48}})->ArgsProduct({{4, 8, 2}, {9, 10, 11, 12, 13, 14}, {0, 1}, {0}, {0, 48}})
    ->ArgsProduct({{4, 8, 2}, {2}, {0, 1}, {0}, {48}})->ArgsProduct({{4, 8, 2}, {7, 14}, {0, 1}, {2}, {0, 48}})
    ->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_decode_7b)->Arg(16)->Arg(4)->Arg(3)->Arg(2)->Arg(8)->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    if (!g_decode.empty()) {
        const env& e = the_env();
        std::printf("\nLlama-7B decode step, linears only (32 x 7 + fp16 lm_head), CUDA graph, stream %.0f GB/s\n", e.stream_gbs);
        std::printf("%-8s %5s %10s %9s %8s %11s %14s\n", "format", "beam", "step ms", "tok/s", "bw_util", "x fp16", "step/beam1");
        for (const auto& [key, r] : g_decode) {
            const auto f16 = g_decode.find({16, key.second});
            const auto b1 = g_decode.find({key.first, 1});
            std::printf("%-8s %5lld %10.3f %9.1f %8.3f %11.2f %14.3f\n",
                        key.first == 16 ? "fp16" : ("int" + std::to_string(key.first)).c_str(),
                        static_cast<long long>(key.second), r.step_s * 1e3, 1.0 / r.step_s,
                        r.bytes / r.step_s * 1e-9 / e.stream_gbs,
                        f16 != g_decode.end() ? f16->second.step_s / r.step_s : 0.0, r.step_s / b1->second.step_s);
        }
    }
    if (!g_decode_fused.empty()) {
        // One table per pair of modes: `base` against `with`, per width and beam.
        const auto table = [](const char* title, const char* base_name, const char* with_name, std::int64_t base, std::int64_t with) {
            std::printf("\n%s\n%-8s %5s %14s %14s %9s\n", title, "format", "beam", base_name, with_name, "speedup");
            for (const auto& [key, r] : g_decode_fused) {
                if (key.fuse != base) continue;
                const auto f = g_decode_fused.find({key.bits, with, key.rows});
                const bool found = f != g_decode_fused.end();
                std::printf("%-8s %5lld %14.3f %14.3f %9.3f\n", key.bits == 16 ? "fp16" : ("int" + std::to_string(key.bits)).c_str(),
                            static_cast<long long>(key.rows), r.step_s * 1e3, found ? f->second.step_s * 1e3 : 0.0,
                            found ? r.step_s / f->second.step_s : 0.0);
            }
        };
        table("Llama-7B decode step (linears + SwiGLU), separate vs fused launches (fused_linear), CUDA graph", "separate ms",
              "fused ms", 0, 1);
        table("The same with the RMSNorm kernels (and residual adds) in the step, vs the norms folded into the linears",
              "norm kernels", "folded ms", 2, 3);
        table("The RMSNorm kernels with the residual adds in them, vs the adds in the o/down epilogues (forward_residual)",
              "norm kernels", "adds folded", 2, 4);
        table("The RMSNorm kernels, vs the adds and the norms in o/down's launches (forward_residual_normed: last CTA)",
              "norm kernels", "in o/down", 2, 5);
    }
    if (!g_phase.empty()) {
        const env& e = the_env();
        std::printf("\nThe 7B step's phase boundaries (BM_phase_stream, memory only), ms per step and us per boundary beyond "
                    "'no barrier', stream %.0f GB/s\n%-6s %6s %10s %10s %10s %10s %11s %11s %11s\n", e.stream_gbs, "bits",
                    "norms", "launches", "barrier", "b+prefetch", "no barrier", "us/launch", "us/barrier", "us/b+pref");
        for (const auto& [key, t0] : g_phase) {
            const auto [bits, norms, schedule, shape, work] = key;
            if (schedule != 0 || shape != 0 || work != 0) continue;
            const auto get = [&, bits = bits, norms = norms](std::int64_t s) {
                const auto f = g_phase.find({bits, norms, s, 0, 0});
                return f != g_phase.end() ? f->second : 0.0;
            };
            const double boundaries = norms != 0 ? 32 * 6 - 2 : 32 * 4 - 1, t3 = get(3);
            const auto per = [&](double t) { return t > 0 && t3 > 0 ? (t - t3) / boundaries * 1e6 : 0.0; };
            std::printf("%-6lld %6lld %10.3f %10.3f %10.3f %10.3f %11.2f %11.2f %11.2f\n", static_cast<long long>(bits),
                        static_cast<long long>(norms), t0 * 1e3, get(1) * 1e3, get(2) * 1e3, t3 * 1e3, per(t0), per(get(1)),
                        per(get(2)));
        }
        std::printf("\nOne kernel per phase, bare vs shaped like v3 (and bare with 12 requests in flight per warp), ms per step and "
                    "us per launch beyond bare\n%-6s %6s %10s %10s %10s %10s %11s %11s\n",
                    "bits", "norms", "bare", "x staged", "+reduced", "bare, 12", "us staged", "us reduced");
        for (const auto& [key, t0] : g_phase) {
            const auto [bits, norms, schedule, shape, work] = key;
            if (schedule != 0 || shape != 0 || work != 0) continue;
            const auto f1 = g_phase.find({bits, norms, 0, 1, 0}), f2 = g_phase.find({bits, norms, 0, 2, 0});
            const auto f3 = g_phase.find({bits, norms, 0, 3, 0});
            if (f1 == g_phase.end() || f2 == g_phase.end()) continue;
            const double launches = 32 * 4;
            std::printf("%-6lld %6lld %10.3f %10.3f %10.3f %10.3f %11.2f %11.2f\n", static_cast<long long>(bits),
                        static_cast<long long>(norms), t0 * 1e3, f1->second * 1e3, f2->second * 1e3,
                        f3 != g_phase.end() ? f3->second * 1e3 : 0.0, (f1->second - t0) / launches * 1e6,
                        (f2->second - t0) / launches * 1e6);
        }
        std::printf("\nOne kernel per phase (bare) vs one persistent kernel fed through a shared-memory ring by the bulk copy "
                    "engine, and kernels per phase with such a ring, ms per step (bw_frac of the stream)\n"
                    "%-6s %6s %6s %16s %16s %16s %16s %16s %16s %16s %16s %16s\n", "bits", "norms", "work", "launches",
                    "ring 12 x 8 KB", "ring 6 x 8 KB", "launches, r12", "launches, r6", "overlap, r12", "overlap, r6", "no barrier",
                    "ring, no barrier");
        for (const auto& [key, t0] : g_phase) {
            const auto [bits, norms, schedule, shape, work] = key;
            if (schedule != 0 || shape != 0) continue;
            const auto r12 = g_phase.find({bits, norms, 4, 0, work}), r6 = g_phase.find({bits, norms, 4, 1, work});
            const auto l12 = g_phase.find({bits, norms, 5, 0, work}), l6 = g_phase.find({bits, norms, 5, 1, work});
            const auto o12 = g_phase.find({bits, norms, 6, 0, work}), o6 = g_phase.find({bits, norms, 6, 1, work});
            if (r12 == g_phase.end() && r6 == g_phase.end() && l12 == g_phase.end() && l6 == g_phase.end() &&
                o12 == g_phase.end() && o6 == g_phase.end() && g_phase.find({bits, norms, 7, 0, work}) == g_phase.end())
                continue;
            const auto nb = g_phase.find({bits, norms, 3, 0, work}), rnb = g_phase.find({bits, norms, 7, 0, work});
            const double bytes = phase_step_bytes(bits);
            const auto cell = [&](double t) {
                char buf[32];
                std::snprintf(buf, sizeof(buf), "%.3f (%.3f)", t * 1e3, t > 0 ? bytes / t * 1e-9 / e.stream_gbs : 0.0);
                return std::string(t > 0 ? buf : "-");
            };
            const auto time_of = [&](auto f) { return f != g_phase.end() ? f->second : 0.0; };
            std::printf("%-6lld %6lld %6lld %16s %16s %16s %16s %16s %16s %16s %16s %16s\n", static_cast<long long>(bits),
                        static_cast<long long>(norms), static_cast<long long>(work), cell(t0).c_str(), cell(time_of(r12)).c_str(),
                        cell(time_of(r6)).c_str(), cell(time_of(l12)).c_str(), cell(time_of(l6)).c_str(),
                        cell(time_of(o12)).c_str(), cell(time_of(o6)).c_str(), cell(time_of(nb)).c_str(), cell(time_of(rnb)).c_str());
        }
    }
    if (!g_phase.empty()) {
        std::printf("\nGrid barriers with release / acquire vs relaxed (no fence), ms per step and us per barrier beyond the "
                    "same kernel without barriers\n%-6s %6s %6s %14s %14s %14s %12s %12s %12s %12s %12s\n", "bits", "norms", "work",
                    "no barrier", "b+prefetch", "b+pref rlx", "ring no bar", "ring", "ring rlx", "ring flags", "us b+p/rlx");
        for (const auto& [key, t0] : g_phase) {
            const auto [bits, norms, schedule, shape, work] = key;
            if (schedule != 7 || shape != 0) continue;  // one row per (bits, norms, work) the relaxed ring ran for
            const auto get = [&, bits = bits, norms = norms, work = work](std::int64_t s) {
                const auto f = g_phase.find({bits, norms, s, 0, work});
                return f != g_phase.end() ? f->second : 0.0;
            };
            const double boundaries = norms != 0 ? 32 * 6 - 2 : 32 * 4 - 1;
            const auto per = [&](double t, double base) { return t > 0 && base > 0 ? (t - base) / boundaries * 1e6 : 0.0; };
            const double nb = get(3), bp = get(2), bpr = get(9), ring = get(4), rr = get(8), rf = get(10);
            const double linear_boundaries = 32 * 4 - 1;  // ring_flags syncs between linear phases only
            std::printf("%-6lld %6lld %6lld %14.3f %14.3f %14.3f %12.3f %12.3f %12.3f %12.3f %5.2f/%-5.2f  ring %5.2f/%-5.2f  flags %5.2f\n",
                        static_cast<long long>(bits), static_cast<long long>(norms), static_cast<long long>(work), nb * 1e3,
                        bp * 1e3, bpr * 1e3, t0 * 1e3, ring * 1e3, rr * 1e3, rf * 1e3, per(bp, nb), per(bpr, nb), per(ring, t0),
                        per(rr, t0), rf > 0 && t0 > 0 ? (rf - t0) / linear_boundaries * 1e6 : 0.0);
        }
    }
    if (!g_phase.empty()) {
        std::printf("\nThe persistent ring's grid barrier, its memory ordering taken apart: us per barrier beyond 'ring, no "
                    "barrier'\n%-6s %6s %6s %12s %12s %12s %12s %12s %12s %12s\n", "bits", "norms", "work", "acq_rel", "relaxed",
                    "release only", "acquire once", "rlx arrival", "data flags", "flags hinted");
        for (const auto& [key, t0] : g_phase) {
            const auto [bits, norms, schedule, shape, work] = key;
            if (schedule != 7 || shape != 0) continue;
            const double boundaries = norms != 0 ? 32 * 6 - 2 : 32 * 4 - 1, linear_boundaries = 32 * 4 - 1;
            const auto per = [&, bits = bits, norms = norms, work = work, t0 = t0](std::int64_t s, double n) {
                const auto f = g_phase.find({bits, norms, s, 0, work});
                return f != g_phase.end() ? (f->second - t0) / n * 1e6 : 0.0;
            };
            std::printf("%-6lld %6lld %6lld %12.2f %12.2f %12.2f %12.2f %12.2f %12.2f %12.2f\n", static_cast<long long>(bits),
                        static_cast<long long>(norms), static_cast<long long>(work), per(4, boundaries), per(8, boundaries),
                        per(11, boundaries), per(12, boundaries), per(13, boundaries), per(10, linear_boundaries),
                        per(14, linear_boundaries));
        }
    }
    if (!g_phase.empty()) {
        std::printf("\nThe persistent ring with each stage one 8 KB copy vs gathered by 16 copies of 512 bytes (kernel v3's "
                    "layout), ms per step\n%-6s %6s %6s %14s %14s %14s %14s\n", "bits", "norms", "work", "no bar, 1",
                    "no bar, 16", "flags hint, 1", "flags hint, 16");
        for (const auto& [key, t0] : g_phase) {
            const auto [bits, norms, schedule, shape, work] = key;
            if (schedule != 7 || shape != 2) continue;
            const auto ms = [&, bits = bits, norms = norms, work = work](std::int64_t s, std::int64_t sh) {
                const auto f = g_phase.find({bits, norms, s, sh, work});
                return f != g_phase.end() ? f->second * 1e3 : 0.0;
            };
            std::printf("%-6lld %6lld %6lld %14.3f %14.3f %14.3f %14.3f\n", static_cast<long long>(bits),
                        static_cast<long long>(norms), static_cast<long long>(work), ms(7, 0), t0 * 1e3, ms(14, 0), ms(14, 2));
        }
    }
    benchmark::Shutdown();
    return 0;
}
