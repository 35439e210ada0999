// Micro-benchmarks of the bnb kernels at Llama-7B shapes (Google Benchmark, CUDA events, manual time), next to the
// fp16 GEMV and cuBLAS in the same process, plus a whole decode-step "linear stack" of Llama-7B (all 224 linears and
// the fp16 lm_head, captured in one CUDA graph) for every format.
//
// This file decides what runs and in which order: the argument lists, every BENCHMARK registration and main(). The
// registrations stay in this one translation unit because their order is the run order, and static initialisation
// order across translation units is unspecified. The rest of the tool:
//   bench_bnb_common.cuh   shared declarations (shape, fills, weight copies, the benchmark bodies)
//   bench_bnb_fixtures.cu  device fills, the activations with outliers, the rotating weight copies
//   bench_bnb_timing.cuh   event timing and the bandwidth counters (GB_per_s, frac_4500, frac_stream)
//   bench_bnb_timing.cu    the streaming read bandwidth measured at start-up
//   bench_bnb_linear.cu    per-linear benchmarks (4-bit, int8, fp16 GEMV, cuBLAS)
//   bench_bnb_stack.cu     the whole Llama-7B linear stack in a CUDA graph, plain and fused
#include "bench_bnb_common.cuh"
#include "bench_bnb_timing.cuh"

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <vector>

// Unqualified, so BENCHMARK(...) registers the same names as before the split (the macro stringifies its argument).
using namespace bnb_bench;

namespace {

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
