// Google Benchmark micro-benchmarks of the fp16 small-batch linear at Llama-7B shapes.
//
//   BM_f16_gemv/shape/rows/variant/pdl  our GEMV, back-to-back launches over rotated weight copies (the working set is
//                                     several times the 60 MB L2, so every launch streams from HBM)
//   BM_cublas_f16/shape/rows          cublasGemmEx (fp16 in/out, fp32 compute) on the same copies
//   BM_llama7b_linears/rows/impl      one decode token's linears (32 layers x q,k,v,o,gate,up,down + lm_head, all
//                                     distinct weights, 13.2 GB) as one CUDA graph: impl 0 = GEMV (default
//                                     variant) with PDL, 1 = without PDL, 2 = cuBLAS. Its utilization is the
//                                     ceiling of a decode step's.
// Counters: GB/s of weights read and util = GB/s over the stream bandwidth measured at start (PERF.md's method).
// Time is device time from CUDA events (UseManualTime), per launch (per token for the graph benchmark).
#include "backends/fp16/fp16_gemv.cuh"

#include "cuda/cuda_check.cuh"
#include "cuda/device_context.cuh"

#include <benchmark/benchmark.h>

#include <cstdio>
#include <vector>

using namespace qbench;

namespace {

struct linear_shape {
    const char* name;
    std::int64_t n, k;
};
// Llama-7B (Vicuna-7B v0): q/k/v/o, gate/up, down, lm_head.
constexpr linear_shape k_shapes[] = {{"qkvo", 4096, 4096}, {"gate_up", 11008, 4096}, {"down", 4096, 11008},
                                     {"lm_head", 32001, 4096}};
constexpr std::uint64_t k_rotation_bytes = 480ull << 20;  // 8x the L2
// Kernel variants: 0 = the default; 1 = mma k_split 8 strided, activations at use (v3's kernel); 2 = mma k_split 8
// contiguous, activations prefetched; 3 = fp32-FMA (2 rows per warp, pipelined); 4 = the same, 1 row per warp;
// 5 = mma k_split 8 strided, prefetched; 6 = mma k_split 4 contiguous, prefetched; 7 = mma k_split 8 contiguous,
// activations at use; 8 = fp32-FMA, 4 rows per warp; 9 = variant 2 with one round (not two) of weights requested
// before the PDL wait.
const f16_gemv_variant k_variants[] = {{},
                                       {f16_gemv_kind::mma, 8, 0, true, f16_mma_layout::strided, 0},
                                       {f16_gemv_kind::mma, 8, 0, true, f16_mma_layout::contiguous, 1},
                                       {f16_gemv_kind::ffma, 0, 2, true},
                                       {f16_gemv_kind::ffma, 0, 1, true},
                                       {f16_gemv_kind::mma, 8, 0, true, f16_mma_layout::strided, 1},
                                       {f16_gemv_kind::mma, 4, 0, true, f16_mma_layout::contiguous, 1},
                                       {f16_gemv_kind::mma, 8, 0, true, f16_mma_layout::contiguous, 0},
                                       {f16_gemv_kind::ffma, 0, 4, true},
                                       {f16_gemv_kind::mma, 8, 0, true, f16_mma_layout::contiguous, 1, 1}};

device_context& ctx() {
    static device_context* c = new device_context();
    return *c;
}

double stream_gbs() {
    static const double gbs = ctx().measure_stream_bandwidth_gbs();
    return gbs;
}

// Weight copies of one shape, filled with a non-zero pattern (fp16 0x3c3c ~ 1.06: never time on zeros).
struct weight_set {
    std::vector<device_buffer> copies;
    device_buffer x, y;
    weight_set(std::int64_t n, std::int64_t k, std::int64_t rows) {
        const std::uint64_t bytes = static_cast<std::uint64_t>(n * k) * 2;
        const std::uint64_t count = std::max<std::uint64_t>(2, (k_rotation_bytes + bytes - 1) / bytes);
        for (std::uint64_t i = 0; i < count; ++i) {
            copies.push_back(ctx().allocate(bytes, "bench weights"));
            QB_CUDA_CHECK(cudaMemset(copies.back().get(), 0x3c, bytes));
        }
        x = ctx().allocate(static_cast<std::uint64_t>(rows * k) * 2, "bench x");
        y = ctx().allocate(static_cast<std::uint64_t>(rows * n) * 2, "bench y");
        QB_CUDA_CHECK(cudaMemset(x.get(), 0x2e, x.size()));  // ~0.1: sums stay finite
    }
};

void cublas_forward(const __half* w, const __half* x, __half* y, std::int64_t rows, std::int64_t n, std::int64_t k,
                    cudaStream_t stream) {
    const float alpha = 1.0f, beta = 0.0f;
    QB_CUBLAS_CHECK(cublasGemmEx(ctx().cublas_on(stream), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                                 static_cast<int>(rows), static_cast<int>(k), &alpha, w, CUDA_R_16F,
                                 static_cast<int>(k), x, CUDA_R_16F, static_cast<int>(k), &beta, y, CUDA_R_16F,
                                 static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// Times `launches` calls of `one(i)` (i = launch index) with events; reports per-launch time and bandwidth.
template <class F>
void run_timed(benchmark::State& state, std::uint64_t bytes_per_launch, int launches, F one) {
    cudaStream_t st = ctx().stream();
    cudaEvent_t start, stop;
    QB_CUDA_CHECK(cudaEventCreate(&start));
    QB_CUDA_CHECK(cudaEventCreate(&stop));
    for (int i = 0; i < launches; ++i) one(i);  // warm-up
    QB_CUDA_CHECK(cudaStreamSynchronize(st));
    double seconds = 0;
    for (auto _ : state) {
        QB_CUDA_CHECK(cudaEventRecord(start, st));
        for (int i = 0; i < launches; ++i) one(i);
        QB_CUDA_CHECK(cudaEventRecord(stop, st));
        QB_CUDA_CHECK(cudaEventSynchronize(stop));
        float ms = 0;
        QB_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
        state.SetIterationTime(ms * 1e-3 / launches);
        seconds += ms * 1e-3 / launches;
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    const double gbs = static_cast<double>(bytes_per_launch) * static_cast<double>(state.iterations()) / seconds / 1e9;
    state.counters["GB/s"] = gbs;
    state.counters["util"] = gbs / stream_gbs();
}

void BM_f16_gemv(benchmark::State& state) {
    const linear_shape s = k_shapes[state.range(0)];
    const std::int64_t rows = state.range(1);
    const f16_gemv_variant variant = k_variants[state.range(2)];
    const bool pdl = state.range(3) != 0 && ctx().pdl_enabled();
    weight_set ws(s.n, s.k, rows);
    state.SetLabel(std::string(s.name) + " " + f16_gemv_path(ws.copies[0].get(), ws.x.get(), rows, s.n, s.k, variant) +
                   (pdl ? " pdl" : ""));
    const int launches = static_cast<int>(ws.copies.size()) * 4;
    run_timed(state, static_cast<std::uint64_t>(s.n * s.k) * 2, launches, [&](int i) {
        launch_f16_gemv(ws.copies[i % ws.copies.size()].as<__half>(), ws.x.as<__half>(), ws.y.as<__half>(), rows, s.n,
                        s.k, {ctx().stream(), pdl}, variant);
    });
}

void BM_cublas_f16(benchmark::State& state) {
    const linear_shape s = k_shapes[state.range(0)];
    const std::int64_t rows = state.range(1);
    weight_set ws(s.n, s.k, rows);
    state.SetLabel(std::string(s.name) + " cublasGemmEx");
    const int launches = static_cast<int>(ws.copies.size()) * 4;
    run_timed(state, static_cast<std::uint64_t>(s.n * s.k) * 2, launches, [&](int i) {
        cublas_forward(ws.copies[i % ws.copies.size()].as<__half>(), ws.x.as<__half>(), ws.y.as<__half>(), rows, s.n,
                       s.k, ctx().stream());
    });
}

// One token's linears of Llama-7B as a CUDA graph. impl 0-2 as in the header; 3-5 = the fused layout a decode step
// uses (q/k/v as one grouped launch, o, gate/up with the SwiGLU epilogue, down; lm_head) with the default variant /
// all-mma contiguous prefetched / all-mma strided at use / 4 with one round ahead / fp32-FMA, with PDL.
void BM_llama7b_linears(benchmark::State& state) {
    const std::int64_t rows = state.range(0);
    const int impl = static_cast<int>(state.range(1));
    const bool fused = impl >= 3;
    const bool pdl = (impl == 0 || fused) && ctx().pdl_enabled();
    const f16_gemv_variant variant = impl == 4   ? k_variants[2]
                                     : impl == 5 ? k_variants[1]
                                     : impl == 6 ? k_variants[9]
                                     : impl == 7 ? k_variants[3]
                                                 : f16_gemv_variant{};
    const std::int64_t H = 4096, I = 11008, V = 32001, L = 32;
    struct lin {
        std::int64_t n, k;
    };
    std::vector<lin> order;
    for (int l = 0; l < L; ++l)
        for (const lin x : {lin{H, H}, lin{H, H}, lin{H, H}, lin{H, H}, lin{I, H}, lin{I, H}, lin{H, I}}) order.push_back(x);
    order.push_back({V, H});
    std::vector<device_buffer> weights;
    std::uint64_t bytes = 0;
    for (const lin& x : order) {
        weights.push_back(ctx().allocate(static_cast<std::uint64_t>(x.n * x.k) * 2, "7B weights"));
        QB_CUDA_CHECK(cudaMemset(weights.back().get(), 0x3c, weights.back().size()));
        bytes += weights.back().size();
    }
    device_buffer x = ctx().allocate(static_cast<std::uint64_t>(rows * I) * 2, "x");
    device_buffer y = ctx().allocate(static_cast<std::uint64_t>(rows * V) * 2, "y");
    device_buffer y2 = ctx().allocate(static_cast<std::uint64_t>(rows * I) * 2, "y2");
    device_buffer y3 = ctx().allocate(static_cast<std::uint64_t>(rows * I) * 2, "y3");
    QB_CUDA_CHECK(cudaMemset(x.get(), 0x2e, x.size()));
    cudaStream_t st = ctx().stream();
    auto w = [&](std::size_t i) { return weights[i].as<__half>(); };
    auto enqueue = [&] {
        if (fused) {
            for (int l = 0; l < L; ++l) {
                const std::size_t b = static_cast<std::size_t>(l) * 7;
                const f16_gemv_segment qkv[3] = {{w(b), y.as<__half>(), H}, {w(b + 1), y2.as<__half>(), H},
                                                 {w(b + 2), y3.as<__half>(), H}};
                launch_f16_gemv_group(qkv, 3, x.as<__half>(), rows, H, {st, pdl}, variant);
                launch_f16_gemv(w(b + 3), x.as<__half>(), y.as<__half>(), rows, H, H, {st, pdl}, variant);
                launch_f16_gemv_swiglu(w(b + 4), w(b + 5), x.as<__half>(), y2.as<__half>(), rows, I, H, {st, pdl},
                                       variant);
                launch_f16_gemv(w(b + 6), x.as<__half>(), y.as<__half>(), rows, H, I, {st, pdl}, variant);
            }
            launch_f16_gemv(w(order.size() - 1), x.as<__half>(), y.as<__half>(), rows, V, H, {st, pdl}, variant);
            return;
        }
        for (std::size_t i = 0; i < order.size(); ++i) {
            if (impl == 2 || rows > k_f16_gemv_max_rows)
                cublas_forward(w(i), x.as<__half>(), y.as<__half>(), rows, order[i].n, order[i].k, st);
            else
                launch_f16_gemv(w(i), x.as<__half>(), y.as<__half>(), rows, order[i].n, order[i].k, {st, pdl});
        }
    };
    enqueue();  // warm-up outside the capture (module loading, cuBLAS heuristics)
    QB_CUDA_CHECK(cudaStreamSynchronize(st));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    QB_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    enqueue();
    QB_CUDA_CHECK(cudaStreamEndCapture(st, &graph));
    QB_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    const char* names[] = {"gemv",          "gemv",          "cublas", "fused-default", "fused-mma-contig-xpre",
                           "fused-mma-strided", "fused-mma-ahead1", "fused-ffma"};
    state.SetLabel(std::string(names[impl]) + (pdl ? " pdl" : "") + " graph " +
                   (impl == 2 ? std::string() : f16_gemv_path(w(0), x.get(), rows, H, H, variant)));
    run_timed(state, bytes, 3, [&](int) { QB_CUDA_CHECK(cudaGraphLaunch(exec, st)); });
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
}

void shape_args(benchmark::internal::Benchmark* b) {
    b->ArgNames({"shape", "rows", "variant", "pdl"});
    for (int s = 0; s < 4; ++s) {
        for (int rows : {1, 2, 4})
            for (int variant : {1, 2, 3, 9}) b->Args({s, rows, variant, 1});
        for (int variant : {2, 3}) b->Args({s, 8, variant, 1});
        b->Args({s, 1, 0, 0});  // the default without PDL
    }
}

}  // namespace

// Fixed iteration counts: an iteration is a batch of launches whose device time is far below its wall time (event
// synchronization), so Google Benchmark's min-time search would take seconds per case.
BENCHMARK(BM_f16_gemv)->Apply(shape_args)->UseManualTime()->Iterations(30)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_cublas_f16)
    ->ArgNames({"shape", "rows"})
    ->ArgsProduct({{0, 1, 2, 3}, {1, 4, 16}})
    ->UseManualTime()
    ->Iterations(30)
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_llama7b_linears)
    ->ArgNames({"rows", "impl"})
    ->ArgsProduct({{1, 2, 4}, {0, 2, 3, 6, 7}})
    ->UseManualTime()
    ->Iterations(10)
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        std::printf("SKIP: no CUDA device\n");
        return 77;
    }
    std::printf("stream bandwidth (16-byte reads): %.0f GB/s on %s, PDL %s\n", stream_gbs(), ctx().properties().name,
                ctx().pdl_enabled() ? "on" : "off");
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
