#pragma once
// What bench_gptq's translation units share: the Llama-7B shapes, the device environment (one per process, made on
// first use: the context, the measured streaming bandwidth, a synthetic fp16 source) and the graph timer.
#include "cuda/cuda_check.cuh"
#include "cuda/device_context.cuh"
#include "qbench/io/synthetic_checkpoint.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

namespace qbench::gptq::test {

inline model_config llama7b() {
    model_config m;
    m.name = "llama-7b-shapes";
    m.hidden_size = 4096;
    m.intermediate_size = 11008;
    m.num_layers = 32;
    m.num_heads = 32;
    m.num_kv_heads = 32;
    m.vocab_size = 32000;
    return m;
}

struct env {
    device_context ctx;
    double stream_gbs = 0;
    std::unique_ptr<tensor_source> fp16_source;
    env() {
        stream_gbs = ctx.measure_stream_bandwidth_gbs();
        fp16_source = make_synthetic_source(llama7b(), 1);
        std::printf("device: %s, streaming bandwidth %.0f GB/s, PDL %s\n", ctx.properties().name, stream_gbs,
                    ctx.pdl_enabled() ? "on" : "off");
    }
};
inline env& the_env() {
    static env e;
    return e;
}

/// Times a captured sequence of forwards: median over repetitions of (graph time / forwards).
inline double time_graph(device_context& ctx, const std::function<void(cudaStream_t)>& body, int forwards, int reps = 20) {
    cudaStream_t st = ctx.stream();
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    body(st);  // warm up outside the graph (first launches, cuBLAS heuristics)
    QB_CUDA_CHECK(cudaStreamSynchronize(st));
    QB_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    body(st);
    QB_CUDA_CHECK(cudaStreamEndCapture(st, &graph));
    QB_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    cudaEvent_t a, b;
    QB_CUDA_CHECK(cudaEventCreate(&a));
    QB_CUDA_CHECK(cudaEventCreate(&b));
    for (int i = 0; i < 3; ++i) QB_CUDA_CHECK(cudaGraphLaunch(exec, st));
    std::vector<double> times;
    for (int r = 0; r < reps; ++r) {
        QB_CUDA_CHECK(cudaEventRecord(a, st));
        QB_CUDA_CHECK(cudaGraphLaunch(exec, st));
        QB_CUDA_CHECK(cudaEventRecord(b, st));
        QB_CUDA_CHECK(cudaEventSynchronize(b));
        float ms = 0;
        QB_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
        times.push_back(ms * 1e-3 / forwards);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    std::sort(times.begin(), times.end());
    return times[times.size() / 2];
}

}  // namespace qbench::gptq::test
