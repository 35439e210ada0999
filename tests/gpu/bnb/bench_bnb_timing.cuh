#pragma once
// How bench_bnb times a kernel: CUDA events around a batch of launches (one by one, or replayed from a CUDA graph),
// reported as Google Benchmark manual time plus the bandwidth counters. Header-only templates, as the launch is a
// lambda of the calling benchmark; the streaming reference they divide by is measured in bench_bnb_timing.cu.
//
// Counters: GB_per_s = bytes the kernel must read (weights with their scales) / time; frac_4500 = that over
// 4500 GB/s (PERF.md's streaming figure); frac_stream = over the streaming bandwidth measured at start-up.
#include "bench_bnb_common.cuh"

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

namespace bnb_bench {

inline constexpr double k_reference_gbs = 4500.0;
inline constexpr int k_launches_per_iteration = 20;

// Streaming read bandwidth, GB/s: set by main() from measure_stream_gbs() before the benchmarks run; 0 = unknown.
extern double g_stream_gbs;
double measure_stream_gbs();

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

// GB_per_s, frac_4500 and frac_stream of `bytes` read in `seconds`.
inline void set_bandwidth_counters(benchmark::State& state, double bytes, double seconds) {
    const double gbs = bytes / seconds / 1e9;
    state.counters["GB_per_s"] = gbs;
    state.counters["frac_4500"] = gbs / k_reference_gbs;
    state.counters["frac_stream"] = g_stream_gbs > 0 ? gbs / g_stream_gbs : 0.0;
}

// Captures enqueue() on `stream` once as a CUDA graph, replays it three times (warm-up), then times one replay per
// benchmark iteration (manual time: a replay's seconds / `per_replay`); returns the seconds of all timed replays.
// The caller runs the work once outside the capture first (module load, occupancy queries).
template <class Enqueue>
double time_graph_replays(benchmark::State& state, cudaStream_t stream, int per_replay, Enqueue&& enqueue) {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "capture");
    enqueue();
    cuda_ok(cudaStreamEndCapture(stream, &graph), "end capture");
    cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
    for (int i = 0; i < 3; ++i) cudaGraphLaunch(exec, stream);
    cuda_ok(cudaStreamSynchronize(stream), "graph warm-up");
    event_timer timer;
    double total = 0;
    for (auto _ : state) {
        const double s = timer.seconds(stream, [&] { cudaGraphLaunch(exec, stream); });
        state.SetIterationTime(s / per_replay);
        total += s;
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    return total;
}

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
    set_bandwidth_counters(state, bytes_per_launch, total / (static_cast<double>(state.iterations()) * k_launches_per_iteration));
    state.counters["MB"] = bytes_per_launch / 1e6;
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
    const double total = time_graph_replays(state, stream, k_launches_per_iteration, [&] {
        for (int i = 0; i < k_launches_per_iteration; ++i) launch(i, o);
    });
    cuda_ok(cudaGetLastError(), "benchmark");
    set_bandwidth_counters(state, bytes_per_launch, total / (static_cast<double>(state.iterations()) * k_launches_per_iteration));
    state.counters["MB"] = bytes_per_launch / 1e6;
    cudaStreamDestroy(stream);
}

}  // namespace bnb_bench
