// Micro-benchmarks of the bnb kernels at Llama-7B shapes (Google Benchmark, CUDA events, manual time), next to the
// fp16 GEMV and cuBLAS in the same process, plus a whole decode-step "linear stack" of Llama-7B (all 224 linears and
// the fp16 lm_head, captured in one CUDA graph) for every format.
//
// Counters: GB_per_s = bytes the kernel must read (weights with their scales) / time; frac_4500 = that over
// 4500 GB/s (PERF.md's streaming figure); frac_stream = over the streaming bandwidth measured at start-up here.
// Weights rotate over enough copies that the working set is >= 512 MiB, so the 60 MB L2 cannot serve them.
#include "backends/bnb/bnb_kernels.cuh"
#include "backends/fp16/fp16_gemv.cuh"
#include "cuda/swiglu.cuh"
#include "gpu_bnb_util.hpp"
#include "qbench/common/counter_rng.hpp"

#include <benchmark/benchmark.h>
#include <cublasLt.h>
#include <cublas_v2.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

using namespace qbench;
using namespace qbench::bnb;
using namespace qbench::bnb::test;

namespace {

constexpr double k_reference_gbs = 4500.0;
constexpr std::uint64_t k_working_set = 512ull << 20;
constexpr int k_launches_per_iteration = 20;

struct shape {
    std::int64_t n, k;
    const char* name;
};
const shape k_shapes[] = {{4096, 4096, "qkvo"}, {11008, 4096, "gate_up"}, {4096, 11008, "down"}};

// ---- fills and the streaming reference --------------------------------------------------------------------------

__global__ void fill_bytes_kernel(std::uint8_t* p, std::uint64_t n, std::uint64_t seed) {
    for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x)
        p[i] = static_cast<std::uint8_t>(random_bits(seed, i) >> 24);
}
__global__ void fill_half_kernel(__half* p, std::uint64_t n, std::uint64_t seed, float scale, float offset) {
    for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x)
        p[i] = __float2half_rn(offset + scale * normal01(seed, i));
}
void fill_bytes(void* p, std::uint64_t n, std::uint64_t seed) {
    fill_bytes_kernel<<<1024, 256>>>(static_cast<std::uint8_t*>(p), n, seed);
}
void fill_half(__half* p, std::uint64_t n, std::uint64_t seed, float scale, float offset = 0.0f) {
    fill_half_kernel<<<1024, 256>>>(p, n, seed, scale, offset);
}

__global__ void stream_read_kernel(const uint4* p, std::uint64_t n, unsigned* sink) {
    unsigned acc = 0;
    for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x) {
        const uint4 v = __ldg(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) *sink = acc;  // keeps the loads alive
}

double g_stream_gbs = 0;

double measure_stream_gbs() {
    const std::uint64_t bytes = 4ull << 30;
    dev<uint4> buf(bytes / 16);
    dev<unsigned> sink(1);
    fill_bytes(buf.get(), bytes, 7);
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    std::vector<float> ms;
    for (int i = 0; i < 12; ++i) {
        cudaEventRecord(a);
        stream_read_kernel<<<sms * 8, 512>>>(buf.get(), bytes / 16, sink.get());
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        float t = 0;
        cudaEventElapsedTime(&t, a, b);
        if (i >= 2) ms.push_back(t);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(ms.begin(), ms.end());
    return static_cast<double>(bytes) / (ms[ms.size() / 2] * 1e-3) / 1e9;
}

// ---- timing -----------------------------------------------------------------------------------------------------

class event_timer {
public:
    event_timer() {
        cudaEventCreate(&m_a);
        cudaEventCreate(&m_b);
    }
    ~event_timer() {
        cudaEventDestroy(m_a);
        cudaEventDestroy(m_b);
    }
    template <class F>
    double seconds(cudaStream_t s, F&& body) {
        cudaEventRecord(m_a, s);
        body();
        cudaEventRecord(m_b, s);
        cudaEventSynchronize(m_b);
        float ms = 0;
        cudaEventElapsedTime(&ms, m_a, m_b);
        return ms * 1e-3;
    }

private:
    cudaEvent_t m_a{}, m_b{};
};

template <class Launch>
void run_timed(benchmark::State& state, double bytes_per_launch, Launch&& launch) {
    event_timer timer;
    for (int w = 0; w < 3; ++w) launch(w);  // warm-up: module load, occupancy queries
    cuda_ok(cudaDeviceSynchronize(), "warm-up");
    int rotation = 0;
    double total = 0;
    for (auto _ : state) {
        const double s = timer.seconds(nullptr, [&] {
            for (int i = 0; i < k_launches_per_iteration; ++i) launch(rotation++);
        });
        state.SetIterationTime(s / k_launches_per_iteration);
        total += s;
    }
    cuda_ok(cudaGetLastError(), "benchmark");
    const double gbs = bytes_per_launch * static_cast<double>(state.iterations()) * k_launches_per_iteration / total / 1e9;
    state.counters["GB_per_s"] = gbs;
    state.counters["MB"] = bytes_per_launch / 1e6;
    state.counters["frac_4500"] = gbs / k_reference_gbs;
    state.counters["frac_stream"] = g_stream_gbs > 0 ? gbs / g_stream_gbs : 0.0;
}

// The same measurement inside a CUDA graph: k_launches_per_iteration launches over rotating weight copies captured
// once (with programmatic dependent launch when `pdl`), replayed per iteration, as a decode step runs them.
// launch(i, options) enqueues launch i.
template <class Launch>
void run_graph_timed(benchmark::State& state, double bytes_per_launch, bool pdl, Launch&& launch) {
    cudaStream_t stream;
    cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    const launch_options o{stream, pdl};
    for (int w = 0; w < 3; ++w) launch(w, o);  // warm-up outside the capture: module load, occupancy queries
    cuda_ok(cudaStreamSynchronize(stream), "warm-up");
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "capture");
    for (int i = 0; i < k_launches_per_iteration; ++i) launch(i, o);
    cuda_ok(cudaStreamEndCapture(stream, &graph), "end capture");
    cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
    for (int i = 0; i < 3; ++i) cudaGraphLaunch(exec, stream);
    cuda_ok(cudaStreamSynchronize(stream), "graph warm-up");
    event_timer timer;
    double total = 0;
    for (auto _ : state) {
        const double s = timer.seconds(stream, [&] { cudaGraphLaunch(exec, stream); });
        state.SetIterationTime(s / k_launches_per_iteration);
        total += s;
    }
    cuda_ok(cudaGetLastError(), "benchmark");
    const double gbs = bytes_per_launch * static_cast<double>(state.iterations()) * k_launches_per_iteration / total / 1e9;
    state.counters["GB_per_s"] = gbs;
    state.counters["MB"] = bytes_per_launch / 1e6;
    state.counters["frac_4500"] = gbs / k_reference_gbs;
    state.counters["frac_stream"] = g_stream_gbs > 0 ? gbs / g_stream_gbs : 0.0;
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
}

int copies_for(std::uint64_t bytes) { return static_cast<int>(std::max<std::uint64_t>(2, k_working_set / std::max<std::uint64_t>(bytes, 1) + 1)); }

// ---- 4-bit ------------------------------------------------------------------------------------------------------

// Copies of one quantized weight (quantized on the GPU from random normal fp16, as at load time).
struct weights_4bit {
    std::vector<dev<std::uint8_t>> packed, codes;
    std::vector<dev<float>> absmax, nested_absmax;
    dev<float> nested_code;
    std::vector<device_4bit_view> views;
    std::uint64_t bytes = 0;

    weights_4bit(std::int64_t n, std::int64_t k, quant_type t, bool dq, int copies) {
        const std::int64_t count = n * k, blocks = (count + 63) / 64, nested = (blocks + 255) / 256;
        dev<__half> f16(static_cast<std::size_t>(count));
        fill_half(f16.get(), count, 11, 0.02f);
        const auto& map = dynamic_map_signed();
        nested_code = dev<float>(std::vector<float>(map.begin(), map.end()));
        dev<float> am(static_cast<std::size_t>(blocks)), offset(1);
        dev<std::uint8_t> p0(static_cast<std::size_t>((count + 1) / 2));
        launch_quantize_4bit(f16.get(), count, t, 64, p0.get(), am.get(), {});
        dev<std::uint8_t> c0(dq ? static_cast<std::size_t>(blocks) : 0);
        dev<float> n0(dq ? static_cast<std::size_t>(nested) : 0);
        float off = 0;
        if (dq) {
            launch_absmax_mean(am.get(), blocks, offset.get(), {});
            launch_double_quantize(am.get(), blocks, offset.get(), nested_code.get(), 256, c0.get(), n0.get(), {});
            off = offset.download()[0];
        }
        bytes = p0.size() + (dq ? c0.size() + n0.size() * 4 : am.size() * 4);
        for (int c = 0; c < copies; ++c) {
            packed.emplace_back(p0.size());
            cudaMemcpy(packed.back().get(), p0.get(), p0.size(), cudaMemcpyDeviceToDevice);
            device_4bit_view v;
            v.packed = packed.back().get();
            v.rows = n;
            v.cols = k;
            v.blocksize_log2 = 6;
            std::memcpy(v.code, code_book(t).data(), sizeof(v.code));
            if (dq) {
                codes.emplace_back(c0.size());
                nested_absmax.emplace_back(n0.size());
                cudaMemcpy(codes.back().get(), c0.get(), c0.size(), cudaMemcpyDeviceToDevice);
                cudaMemcpy(nested_absmax.back().get(), n0.get(), n0.size() * 4, cudaMemcpyDeviceToDevice);
                v.absmax = nullptr;
                v.absmax_codes = codes.back().get();
                v.nested_absmax = nested_absmax.back().get();
                v.nested_code = nested_code.get();
                v.nested_blocksize = 256;
                v.nested_offset = off;
            } else {
                absmax.emplace_back(am.size());
                cudaMemcpy(absmax.back().get(), am.get(), am.size() * 4, cudaMemcpyDeviceToDevice);
                v.absmax = absmax.back().get();
            }
            views.push_back(v);
        }
        cuda_ok(cudaDeviceSynchronize(), "weights_4bit");
    }
};

// Args: shape, type (0 nf4, 1 fp4), dq, m, kernel variant (0 = default; gemv_4bit_variant_name), graph (1: 20
// launches in a CUDA graph with PDL, as in a decode step; 0: launched one by one, launch gaps included).
void BM_bnb_gemv_4bit(benchmark::State& state) {
    const shape s = k_shapes[state.range(0)];
    const quant_type t = state.range(1) ? quant_type::fp4 : quant_type::nf4;
    const bool dq = state.range(2) != 0;
    const std::int64_t m = state.range(3);
    const int variant = static_cast<int>(state.range(4));
    const bool graph = state.range(5) != 0;
    const std::uint64_t one = static_cast<std::uint64_t>(s.n * s.k / 2 + s.n * s.k / 64 * 4);
    weights_4bit w(s.n, s.k, t, dq, copies_for(one));
    dev<__half> x(static_cast<std::size_t>(m * s.k)), y(static_cast<std::size_t>(m * s.n));
    fill_half(x.get(), x.size(), 3, 1.0f);
    state.SetLabel(std::string(s.name) + " " + format_name_4bit(t, 64, dq) + " " + gemv_4bit_variant_name(variant) +
                   (graph ? " graph+pdl" : ""));
    if (graph) {
        run_graph_timed(state, static_cast<double>(w.bytes), true, [&](int i, const launch_options& o) {
            launch_gemv_4bit(w.views[static_cast<std::size_t>(i) % w.views.size()], x.get(), m, y.get(), o, variant);
        });
        return;
    }
    run_timed(state, static_cast<double>(w.bytes), [&](int i) {
        launch_gemv_4bit(w.views[static_cast<std::size_t>(i) % w.views.size()], x.get(), m, y.get(), {nullptr, false},
                         variant);
    });
}

// bitsandbytes' batch > 1 strategy: dequantize the whole weight to fp16, then cuBLAS.
void BM_bnb_dequant_cublas(benchmark::State& state) {
    const shape s = k_shapes[state.range(0)];
    const std::int64_t m = state.range(1);
    const std::uint64_t one = static_cast<std::uint64_t>(s.n * s.k / 2 + s.n * s.k / 64 * 4);
    weights_4bit w(s.n, s.k, quant_type::nf4, false, copies_for(one));
    dev<__half> x(static_cast<std::size_t>(m * s.k)), y(static_cast<std::size_t>(m * s.n)), tmp(static_cast<std::size_t>(s.n * s.k));
    fill_half(x.get(), x.size(), 3, 1.0f);
    cublasHandle_t h;
    cublasCreate(&h);
    const float alpha = 1, beta = 0;
    state.SetLabel(std::string(s.name) + " bnb-nf4-bs64 dequant+cublas");
    run_timed(state, static_cast<double>(w.bytes), [&](int i) {
        launch_dequantize_4bit(w.views[static_cast<std::size_t>(i) % w.views.size()], tmp.get(), {nullptr, false});
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(s.n), static_cast<int>(m), static_cast<int>(s.k), &alpha,
                     tmp.get(), CUDA_R_16F, static_cast<int>(s.k), x.get(), CUDA_R_16F, static_cast<int>(s.k), &beta,
                     y.get(), CUDA_R_16F, static_cast<int>(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    });
    cublasDestroy(h);
}

// ---- int8 -------------------------------------------------------------------------------------------------------

struct weights_int8 {
    std::vector<dev<std::int8_t>> cb;
    std::vector<dev<float>> scb;
    std::uint64_t bytes = 0;
    weights_int8(std::int64_t n, std::int64_t k, int copies) {
        dev<__half> f16(static_cast<std::size_t>(n * k));
        fill_half(f16.get(), f16.size(), 13, 0.02f);
        dev<std::int8_t> c0(static_cast<std::size_t>(n * k));
        dev<float> s0(static_cast<std::size_t>(n));
        launch_quantize_int8_rows(f16.get(), n, k, c0.get(), s0.get(), {});
        bytes = c0.size() + s0.size() * 4;
        for (int c = 0; c < copies; ++c) {
            cb.emplace_back(c0.size());
            scb.emplace_back(s0.size());
            cudaMemcpy(cb.back().get(), c0.get(), c0.size(), cudaMemcpyDeviceToDevice);
            cudaMemcpy(scb.back().get(), s0.get(), s0.size() * 4, cudaMemcpyDeviceToDevice);
        }
        cuda_ok(cudaDeviceSynchronize(), "weights_int8");
    }
};

// x with ~0.4% outlier columns of |x| ~ 8 (what LLM.int8() decomposes), the rest unit normal.
void fill_activations_with_outliers(__half* x, std::int64_t m, std::int64_t k) {
    fill_half(x, static_cast<std::uint64_t>(m * k), 5, 1.0f);
    std::vector<std::uint16_t> host(static_cast<std::size_t>(m * k));
    cudaMemcpy(host.data(), x, host.size() * 2, cudaMemcpyDeviceToHost);
    for (std::int64_t r = 0; r < m; ++r)
        for (std::int64_t c = 17; c < k; c += 256) host[static_cast<std::size_t>(r * k + c)] = float_to_half(9.0f);
    cudaMemcpy(x, host.data(), host.size() * 2, cudaMemcpyHostToDevice);
}

// Args: shape, m, threshold x10, GEMV variant (0 default, 1 block-owned rows, 2 warp-owned). m <= 8: quantize + GEMV;
// larger: quantize + cuBLASLt + epilogue.
void BM_bnb_int8(benchmark::State& state) {
    const shape s = k_shapes[state.range(0)];
    const std::int64_t m = state.range(1);
    const float threshold = static_cast<float>(state.range(2)) / 10.0f;
    const int variant = static_cast<int>(state.range(3));
    weights_int8 w(s.n, s.k, copies_for(static_cast<std::uint64_t>(s.n * s.k)));
    dev<__half> x(static_cast<std::size_t>(m * s.k)), y(static_cast<std::size_t>(m * s.n));
    fill_activations_with_outliers(x.get(), m, s.k);
    dev<std::int8_t> q(static_cast<std::size_t>(m * s.k));
    dev<float> rs(static_cast<std::size_t>(m));
    dev<std::uint32_t> mask(static_cast<std::size_t>((s.k + 31) / 32));
    dev<std::int32_t> cols(static_cast<std::size_t>(s.k)), count(1), product(static_cast<std::size_t>(m * s.n));
    cublasLtHandle_t lt;
    cublasLtCreate(&lt);
    dev<std::uint8_t> ws(32u << 20);
    const bool gemv = m <= k_gemv_int8_max_rows;
    state.SetLabel(std::string(s.name) + " " + format_name_int8(threshold) + (gemv ? (variant == 1 ? " quant+gemv-block" : variant == 2 ? " quant+gemv-warp" : " quant+gemv") : " quant+cublaslt+epilogue"));
    run_timed(state, static_cast<double>(w.bytes), [&](int i) {
        const std::size_t c = static_cast<std::size_t>(i) % w.cb.size();
        int8_act_buffers act{q.get(), rs.get(), mask.get(), cols.get(), count.get()};
        launch_quantize_int8_activations(x.get(), m, s.k, threshold, act, {nullptr, false});
        if (gemv) {
            if (!(threshold > 0)) act.outlier_mask = nullptr;
            launch_gemv_int8(w.cb[c].get(), w.scb[c].get(), s.n, s.k, x.get(), act, m, y.get(), {nullptr, false},
                             variant);
        } else {
            if (!cublaslt_int8_gemm(lt, q.get(), w.cb[c].get(), product.get(), m, s.n, s.k, ws.get(), ws.size(), nullptr))
                launch_int8_matmul_plain(q.get(), w.cb[c].get(), m, s.n, s.k, product.get(), {nullptr, false});
            launch_int8_gemm_epilogue(product.get(), w.cb[c].get(), w.scb[c].get(), s.n, s.k, x.get(), act, m, y.get(),
                                      {nullptr, false});
        }
    });
    cublasLtDestroy(lt);
}

// Args: shape, threshold x10, config (gemv_int8_fused_config_name): the one-kernel batch-1 LLM.int8().
void BM_bnb_int8_fused(benchmark::State& state) {
    const shape s = k_shapes[state.range(0)];
    const float threshold = static_cast<float>(state.range(1)) / 10.0f;
    const int config = static_cast<int>(state.range(2));
    const bool graph = state.range(3) != 0;
    weights_int8 w(s.n, s.k, copies_for(static_cast<std::uint64_t>(s.n * s.k)));
    dev<__half> x(static_cast<std::size_t>(s.k)), y(static_cast<std::size_t>(s.n));
    fill_activations_with_outliers(x.get(), 1, s.k);
    state.SetLabel(std::string(s.name) + " " + format_name_int8(threshold) + " fused " + gemv_int8_fused_config_name(config) +
                   (graph ? " graph+pdl" : ""));
    if (graph) {
        run_graph_timed(state, static_cast<double>(w.bytes), true, [&](int i, const launch_options& o) {
            const std::size_t c = static_cast<std::size_t>(i) % w.cb.size();
            launch_gemv_int8_fused(w.cb[c].get(), w.scb[c].get(), s.n, s.k, x.get(), threshold, y.get(), o, config);
        });
        return;
    }
    run_timed(state, static_cast<double>(w.bytes), [&](int i) {
        const std::size_t c = static_cast<std::size_t>(i) % w.cb.size();
        launch_gemv_int8_fused(w.cb[c].get(), w.scb[c].get(), s.n, s.k, x.get(), threshold, y.get(), {nullptr, false},
                               config);
    });
}

// ---- fp16 baselines ---------------------------------------------------------------------------------------------

struct weights_f16 {
    std::vector<dev<__half>> w;
    weights_f16(std::int64_t n, std::int64_t k, int copies) {
        for (int c = 0; c < copies; ++c) {
            w.emplace_back(static_cast<std::size_t>(n * k));
            fill_half(w.back().get(), w.back().size(), 17 + c, 0.02f);
        }
        cuda_ok(cudaDeviceSynchronize(), "weights_f16");
    }
};

// The fp16 backend's GEMV (what an fp16 decode cell runs) at the same shapes.
void BM_fp16_gemv(benchmark::State& state) {
    const shape s = k_shapes[state.range(0)];
    const std::int64_t m = state.range(1);
    weights_f16 w(s.n, s.k, copies_for(static_cast<std::uint64_t>(s.n * s.k * 2)));
    dev<__half> x(static_cast<std::size_t>(m * s.k)), y(static_cast<std::size_t>(m * s.n));
    fill_half(x.get(), x.size(), 3, 1.0f);
    state.SetLabel(std::string(s.name) + " f16 " + f16_gemv_path(w.w[0].get(), x.get(), m, s.n, s.k));
    run_timed(state, static_cast<double>(s.n * s.k * 2), [&](int i) {
        launch_f16_gemv(w.w[static_cast<std::size_t>(i) % w.w.size()].get(), x.get(), y.get(), m, s.n, s.k, {nullptr, false});
    });
}

void BM_fp16_cublas(benchmark::State& state) {
    const shape s = k_shapes[state.range(0)];
    const std::int64_t m = state.range(1);
    weights_f16 w(s.n, s.k, copies_for(static_cast<std::uint64_t>(s.n * s.k * 2)));
    dev<__half> x(static_cast<std::size_t>(m * s.k)), y(static_cast<std::size_t>(m * s.n));
    fill_half(x.get(), x.size(), 3, 1.0f);
    cublasHandle_t h;
    cublasCreate(&h);
    const float alpha = 1, beta = 0;
    state.SetLabel(std::string(s.name) + " f16 cublasGemmEx");
    run_timed(state, static_cast<double>(s.n * s.k * 2), [&](int i) {
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(s.n), static_cast<int>(m), static_cast<int>(s.k), &alpha,
                     w.w[static_cast<std::size_t>(i) % w.w.size()].get(), CUDA_R_16F, static_cast<int>(s.k), x.get(),
                     CUDA_R_16F, static_cast<int>(s.k), &beta, y.get(), CUDA_R_16F, static_cast<int>(s.n),
                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    });
    cublasDestroy(h);
}

// ---- Llama-7B linear stack: one decode step's linears in a CUDA graph -----------------------------------------------

// Format: 0 fp16, 1 nf4, 2 nf4+dq, 3 fp4, 4 int8 (threshold 6), 5 int8 (threshold 0). Arg 1: PDL on/off.
// Arg 2: the 4-bit GEMV variant (gemv_4bit_variant_name), or for int8 the fused config (gemv_int8_fused_config_name),
// -1 = the two-kernel path (activation quantization, then the int8 GEMV).
// Per layer q, k, v, o (4096x4096), gate, up (11008x4096), down (4096x11008); 32 layers; then lm_head
// 32000x4096 in fp16 (transformers keeps it unquantized). Bytes = all weights and scales read once.
constexpr int k_stack_layers = 32;
const shape k_stack_per_layer[7] = {{4096, 4096, ""}, {4096, 4096, ""}, {4096, 4096, ""}, {4096, 4096, ""},
                                    {11008, 4096, ""}, {11008, 4096, ""}, {4096, 11008, ""}};
const char* const k_stack_names[] = {"f16",         "bnb-nf4-bs64", "bnb-nf4-bs64-dq", "bnb-fp4-bs64",
                                     "bnb-int8-t6", "bnb-int8-t0"};

// The weights of a format are made once per process and shared by its configurations and by the fused stack (setup
// dominates the device time otherwise); int8 thresholds 6 and 0 share theirs. Order: layer by layer q, k, v, o, gate,
// up, down.
struct stack_weights {
    std::vector<std::unique_ptr<weights_4bit>> w4;
    std::vector<std::unique_ptr<weights_int8>> w8;
    std::vector<std::unique_ptr<weights_f16>> w16;
    double bytes = 0;
};

const stack_weights& stack_weights_of(int format) {
    constexpr int layers = k_stack_layers;
    const auto& per_layer = k_stack_per_layer;
    static std::map<int, std::unique_ptr<stack_weights>> cache;
    const int kind = std::min(format, 4);
    if (!cache[kind]) {
        auto sw = std::make_unique<stack_weights>();
        for (int l = 0; l < layers; ++l)
            for (const shape& s : per_layer) {
                if (format == 0) {
                    sw->w16.push_back(std::make_unique<weights_f16>(s.n, s.k, 1));
                    sw->bytes += static_cast<double>(s.n * s.k * 2);
                } else if (format <= 3) {
                    sw->w4.push_back(std::make_unique<weights_4bit>(s.n, s.k, format == 3 ? quant_type::fp4 : quant_type::nf4,
                                                                    format == 2, 1));
                    sw->bytes += static_cast<double>(sw->w4.back()->bytes);
                } else {
                    sw->w8.push_back(std::make_unique<weights_int8>(s.n, s.k, 1));
                    sw->bytes += static_cast<double>(sw->w8.back()->bytes);
                }
            }
        cache[kind] = std::move(sw);
    }
    return *cache[kind];
}

void BM_linear_stack_7b(benchmark::State& state) {
    const int format = static_cast<int>(state.range(0));
    const bool pdl = state.range(1) != 0;
    const int variant = static_cast<int>(state.range(2));
    constexpr int layers = k_stack_layers;
    const auto& per_layer = k_stack_per_layer;
    std::string kernel = format >= 1 && format <= 3 ? gemv_4bit_variant_name(variant)
                         : format >= 4 ? (variant < 0 ? "quant+gemv" : gemv_int8_fused_config_name(variant))
                                       : "";
    state.SetLabel(std::string("7b linears+f16 head ") + k_stack_names[format] + (pdl ? " pdl " : " ") + kernel);
    const stack_weights& sw = stack_weights_of(format);
    const auto& w4 = sw.w4;
    const auto& w8 = sw.w8;
    const auto& w16 = sw.w16;
    double bytes = sw.bytes;
    weights_f16 head(32000, 4096, 1);
    bytes += 32000.0 * 4096 * 2;
    dev<__half> x(11008), y(32000);
    fill_activations_with_outliers(x.get(), 1, 11008);
    dev<std::int8_t> q(11008);
    dev<float> rs(1);
    dev<std::uint32_t> mask(344);
    dev<std::int32_t> cols(11008), count(1);
    const float threshold = format == 4 ? 6.0f : 0.0f;

    cudaStream_t stream;
    cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    const launch_options o{stream, pdl};
    auto step = [&] {
        std::size_t i = 0;
        for (int l = 0; l < layers; ++l)
            for (const shape& s : per_layer) {
                // x is reused as every layer's input (values do not matter for speed; all layers read it).
                if (format == 0) launch_f16_gemv(w16[i]->w[0].get(), x.get(), y.get(), 1, s.n, s.k, o);
                else if (format <= 3) launch_gemv_4bit(w4[i]->views[0], x.get(), 1, y.get(), o, variant);
                else if (variant >= 0) {
                    launch_gemv_int8_fused(w8[i]->cb[0].get(), w8[i]->scb[0].get(), s.n, s.k, x.get(), threshold,
                                           y.get(), o, variant);
                } else {
                    int8_act_buffers act{q.get(), rs.get(), mask.get(), cols.get(), count.get()};
                    launch_quantize_int8_activations(x.get(), 1, s.k, threshold, act, o);
                    if (!(threshold > 0)) act.outlier_mask = nullptr;
                    launch_gemv_int8(w8[i]->cb[0].get(), w8[i]->scb[0].get(), s.n, s.k, x.get(), act, 1, y.get(), o);
                }
                ++i;
            }
        launch_f16_gemv(head.w[0].get(), x.get(), y.get(), 1, 32000, 4096, o);
    };
    step();  // warm-up outside the capture
    cuda_ok(cudaStreamSynchronize(stream), "stack warm-up");
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "capture");
    step();
    cuda_ok(cudaStreamEndCapture(stream, &graph), "end capture");
    cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
    for (int i = 0; i < 3; ++i) cudaGraphLaunch(exec, stream);
    cuda_ok(cudaStreamSynchronize(stream), "graph warm-up");
    event_timer timer;
    double total = 0;
    for (auto _ : state) {
        const double s = timer.seconds(stream, [&] { cudaGraphLaunch(exec, stream); });
        state.SetIterationTime(s);
        total += s;
    }
    const double per_step = total / static_cast<double>(state.iterations());
    state.counters["tokens_per_s"] = 1.0 / per_step;
    state.counters["GB_per_token"] = bytes / 1e9;
    state.counters["GB_per_s"] = bytes / per_step / 1e9;
    state.counters["frac_4500"] = bytes / per_step / 1e9 / k_reference_gbs;
    state.counters["frac_stream"] = g_stream_gbs > 0 ? bytes / per_step / 1e9 / g_stream_gbs : 0.0;
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
}

// The same stack as the executor runs it with fused linears (cuda/fused_linear.hpp), default kernel shapes: per layer
// q/k/v as one team launch, o, gate/up with the SwiGLU product in the epilogue, down (4 launches instead of 7 + 1).
// Arg fuse 0 is the unfused reference of the same work: 7 linears and launch_swiglu (8 launches per layer).
// Format as BM_linear_stack_7b (1..5); bytes: all weights and scales once, plus the fp16 head.
void BM_linear_stack_7b_fused(benchmark::State& state) {
    const int format = static_cast<int>(state.range(0));
    const bool pdl = state.range(1) != 0;
    const bool fuse = state.range(2) != 0;
    state.SetLabel(std::string("7b linears+swiglu+f16 head ") + k_stack_names[format] + (pdl ? " pdl" : "") +
                   (fuse ? " fused qkv,gate/up" : " separate"));
    const stack_weights& sw = stack_weights_of(format);
    double bytes = sw.bytes;
    weights_f16 head(32000, 4096, 1);
    bytes += 32000.0 * 4096 * 2;
    // x is reused as every linear's input; q/k/v, gate/up and the product get their own outputs.
    dev<__half> x(11008), y(3 * 4096), g(11008), u(11008), act(11008), head_out(32000);
    fill_activations_with_outliers(x.get(), 1, 11008);
    const float threshold = format == 4 ? 6.0f : 0.0f;
    cudaStream_t stream;
    cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    const launch_options o{stream, pdl};
    auto linear = [&](std::size_t i, const __half* in, __half* out) {
        const shape& s = k_stack_per_layer[i % 7];
        if (format <= 3) launch_gemv_4bit(sw.w4[i]->views[0], in, 1, out, o);
        else launch_gemv_int8_fused(sw.w8[i]->cb[0].get(), sw.w8[i]->scb[0].get(), s.n, s.k, in, threshold, out, o);
    };
    auto int8_weight = [&](std::size_t i) {
        return int8_team_weight{sw.w8[i]->cb[0].get(), sw.w8[i]->scb[0].get(), k_stack_per_layer[i % 7].n};
    };
    __half* const qkv_out[3] = {y.get(), y.get() + 4096, y.get() + 2 * 4096};
    auto step = [&] {
        for (int l = 0; l < k_stack_layers; ++l) {
            const std::size_t i = static_cast<std::size_t>(l) * 7;  // q of this layer
            if (!fuse) {
                for (std::size_t j = 0; j < 3; ++j) linear(i + j, x.get(), qkv_out[j]);
                linear(i + 3, x.get(), y.get());
                linear(i + 4, x.get(), g.get());
                linear(i + 5, x.get(), u.get());
                launch_swiglu(g.get(), u.get(), 11008, act.get(), o);
            } else if (format <= 3) {
                const device_4bit_view qkv[3] = {sw.w4[i]->views[0], sw.w4[i + 1]->views[0], sw.w4[i + 2]->views[0]};
                launch_gemv_4bit_team_group(qkv, 3, x.get(), qkv_out, o);
                linear(i + 3, x.get(), y.get());
                launch_gemv_4bit_team_swiglu(sw.w4[i + 4]->views[0], sw.w4[i + 5]->views[0], x.get(), act.get(), o);
            } else {
                const int8_team_weight qkv[3] = {int8_weight(i), int8_weight(i + 1), int8_weight(i + 2)};
                launch_gemv_int8_fused_group(qkv, 3, 4096, x.get(), threshold, qkv_out, o);
                linear(i + 3, x.get(), y.get());
                launch_gemv_int8_fused_swiglu(int8_weight(i + 4), int8_weight(i + 5), 4096, x.get(), threshold,
                                              act.get(), o);
            }
            linear(i + 6, act.get(), y.get());
        }
        launch_f16_gemv(head.w[0].get(), x.get(), head_out.get(), 1, 32000, 4096, o);
    };
    step();  // warm-up outside the capture
    cuda_ok(cudaStreamSynchronize(stream), "fused stack warm-up");
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "capture");
    step();
    cuda_ok(cudaStreamEndCapture(stream, &graph), "end capture");
    cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
    for (int i = 0; i < 3; ++i) cudaGraphLaunch(exec, stream);
    cuda_ok(cudaStreamSynchronize(stream), "graph warm-up");
    event_timer timer;
    double total = 0;
    for (auto _ : state) {
        const double s = timer.seconds(stream, [&] { cudaGraphLaunch(exec, stream); });
        state.SetIterationTime(s);
        total += s;
    }
    const double per_step = total / static_cast<double>(state.iterations());
    state.counters["tokens_per_s"] = 1.0 / per_step;
    state.counters["GB_per_token"] = bytes / 1e9;
    state.counters["GB_per_s"] = bytes / per_step / 1e9;
    state.counters["frac_4500"] = bytes / per_step / 1e9 / k_reference_gbs;
    state.counters["frac_stream"] = g_stream_gbs > 0 ? bytes / per_step / 1e9 / g_stream_gbs : 0.0;
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
}

void fused_stack_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"format", "pdl", "fuse"});
    for (int f = 1; f <= 5; ++f)
        for (int fuse : {1, 0}) b->Args({f, 1, fuse});
    b->Args({1, 0, 1});
    b->Args({1, 0, 0});
}

// Launch shapes in the order the device call measures them (it has a time limit): the default and the 32-warp
// shapes (register budgets of 64 and 56, bnb_team_geometry.cuh) first, the older experimental shapes after. Found by name,
// so the lists follow the config tables.
bool is_32_warp_config(const char* name) { return std::strstr(name, "-r64") != nullptr || std::strstr(name, "-r56") != nullptr; }
std::vector<int> team_configs_where(const char* (*name)(int), bool first) {
    std::vector<int> configs;
    for (int c = 0; c < gemv_team_configs(); ++c)
        if ((c == 0 || is_32_warp_config(name(c))) == first) configs.push_back(c);
    return configs;
}

// Per layer, first: nf4, nf4-dq and fp4 in the default and the 32-warp shapes, graph + PDL.
void gemv_args_first(benchmark::internal::Benchmark* b) {
    b->ArgNames({"shape", "fp4", "dq", "m", "variant", "graph"});
    for (int s = 0; s < 3; ++s)
        for (int v : team_configs_where(gemv_team_config_name, true)) {
            b->Args({s, 0, 0, 1, v, 1});
            b->Args({s, 0, 1, 1, v, 1});
            b->Args({s, 1, 0, 1, v, 1});
        }
}
// Then the older shapes, the variants past the team configs, no graph, batches.
void gemv_args_rest(benchmark::internal::Benchmark* b) {
    b->ArgNames({"shape", "fp4", "dq", "m", "variant", "graph"});
    const int v2 = k_gemv_4bit_v2_id;
    for (int s = 0; s < 3; ++s) {
        for (int v : team_configs_where(gemv_team_config_name, false)) {
            b->Args({s, 0, 0, 1, v, 1});
            b->Args({s, 0, 1, 1, v, 1});
            b->Args({s, 1, 0, 1, v, 1});
        }
        for (int v = gemv_team_configs(); v < k_gemv_4bit_variants; ++v) b->Args({s, 0, 0, 1, v, 1});
        b->Args({s, 0, 0, 1, 0, 0});
        b->Args({s, 0, 0, 1, v2, 0});
        for (int m : {2, 8}) b->Args({s, 0, 0, m, 0, 0});
    }
}

// Fused int8, first: the default and the 32-warp shapes, graph + PDL, both thresholds.
void int8_fused_args_first(benchmark::internal::Benchmark* b) {
    b->ArgNames({"shape", "t10", "config", "graph"});
    for (int s = 0; s < 3; ++s)
        for (int t10 : {60, 0})
            for (int c : team_configs_where(gemv_int8_fused_config_name, true)) b->Args({s, t10, c, 1});
}
void int8_fused_args_rest(benchmark::internal::Benchmark* b) {
    b->ArgNames({"shape", "t10", "config", "graph"});
    for (int s = 0; s < 3; ++s)
        for (int t10 : {60, 0}) {
            for (int c : team_configs_where(gemv_int8_fused_config_name, false)) b->Args({s, t10, c, 1});
            b->Args({s, t10, 0, 0});
        }
}

// Formats (BM_linear_stack_7b): 1 nf4, 2 nf4-dq, 3 fp4, 4 int8-t6, 5 int8-t0.
constexpr int k_stack_nf4 = 1, k_stack_int8_t6 = 4;

// The stack, first: the defaults with PDL, fp16, then the 32-warp shapes for nf4 and int8-t6, then for the rest.
void stack_args_first(benchmark::internal::Benchmark* b) {
    b->ArgNames({"format", "pdl", "variant"});
    for (int f = 1; f <= 5; ++f) b->Args({f, 1, 0});
    b->Args({0, 1, 0});
    const std::vector<int> new_4bit = team_configs_where(gemv_team_config_name, true);
    const std::vector<int> new_int8 = team_configs_where(gemv_int8_fused_config_name, true);
    auto new_shapes = [&](int f) {
        for (int v : f >= 4 ? new_int8 : new_4bit)
            if (v != 0) b->Args({f, 1, v});
    };
    new_shapes(k_stack_nf4);
    new_shapes(k_stack_int8_t6);
    for (int f = 1; f <= 5; ++f)
        if (f != k_stack_nf4 && f != k_stack_int8_t6) new_shapes(f);
}
// Then every older shape, no PDL, v2 and the two-kernel int8 path.
void stack_args_rest(benchmark::internal::Benchmark* b) {
    b->ArgNames({"format", "pdl", "variant"});
    for (int f = 1; f <= 5; ++f)
        for (int v : team_configs_where(f >= 4 ? gemv_int8_fused_config_name : gemv_team_config_name, false))
            if (v != 0) b->Args({f, 1, v});
    for (int f = 0; f <= 5; ++f) b->Args({f, 0, 0});
    b->Args({1, 0, k_gemv_4bit_v2_id});  // v2 as last measured
    b->Args({4, 1, -1});  // int8 two-kernel path
    b->Args({5, 1, -1});
}

}  // namespace

// Fixed iteration counts: each benchmark function runs once (its setup fills hundreds of MB of weights).
// Registered in the order the device call (which has a time limit) should measure them: the stack's defaults and
// 32-warp shapes, the fused stack (it carries its own unfused reference), the per-layer defaults and 32-warp shapes,
// then the older experimental shapes.
BENCHMARK(BM_linear_stack_7b)->Apply(stack_args_first)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(50);
BENCHMARK(BM_linear_stack_7b_fused)->Apply(fused_stack_args)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(50);
BENCHMARK(BM_bnb_gemv_4bit)->Apply(gemv_args_first)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(60);
BENCHMARK(BM_bnb_int8_fused)->Apply(int8_fused_args_first)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(60);
BENCHMARK(BM_linear_stack_7b)->Apply(stack_args_rest)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(50);
BENCHMARK(BM_bnb_gemv_4bit)->Apply(gemv_args_rest)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(60);
BENCHMARK(BM_bnb_int8_fused)->Apply(int8_fused_args_rest)->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(60);
BENCHMARK(BM_bnb_int8)->ArgNames({"shape", "m", "t10", "variant"})->ArgsProduct({{0, 1, 2}, {1}, {60, 0}, {1}})->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(60);
BENCHMARK(BM_fp16_gemv)->ArgNames({"shape", "m"})->ArgsProduct({{0, 1, 2}, {1}})->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(60);
BENCHMARK(BM_fp16_cublas)->ArgNames({"shape", "m"})->ArgsProduct({{0, 1, 2}, {1}})->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(60);
BENCHMARK(BM_bnb_dequant_cublas)->ArgNames({"shape", "m"})->ArgsProduct({{0, 1, 2}, {4, 16}})->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(40);
BENCHMARK(BM_bnb_int8)->ArgNames({"shape", "m", "t10", "variant"})->ArgsProduct({{0, 1, 2}, {4, 16}, {60}, {0}})->UseManualTime()->Unit(benchmark::kMicrosecond)->Iterations(40);

int main(int argc, char** argv) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        std::printf("SKIP: no CUDA device\n");
        return 77;
    }
    g_stream_gbs = measure_stream_gbs();
    std::printf("streaming read bandwidth (4 GiB, 16-byte loads, median of 10): %.0f GB/s\n", g_stream_gbs);
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
