#pragma once
// What the files of bench_bnb share: the layer shape, the device fills, the weight copies every benchmark reads
// (bench_bnb_fixtures.cu), and the benchmark bodies (bench_bnb_linear.cu, bench_bnb_stack.cu) that bench_bnb.cu
// registers. Measuring lives in bench_bnb_timing.cuh.
//
// A named namespace rather than an anonymous one, so the files link to each other. The using-directives sit inside it
// so names resolve as if they were at file scope: the qbench, qbench::bnb and test names all appear at global scope.
#include "backends/bnb/bnb_kernels.cuh"
#include "gpu_bnb_util.hpp"

#include <benchmark/benchmark.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <vector>

namespace bnb_bench {

using namespace qbench;
using namespace qbench::bnb;
using namespace qbench::bnb::test;

// Weights rotate over enough copies that the working set is >= this, so the 60 MB L2 cannot serve them.
inline constexpr std::uint64_t k_working_set = 512ull << 20;

struct shape {
    std::int64_t n, k;
    const char* name;
};

// ---- fills (bench_bnb_fixtures.cu) ------------------------------------------------------------------------------

void fill_bytes(void* p, std::uint64_t n, std::uint64_t seed);
void fill_half(__half* p, std::uint64_t n, std::uint64_t seed, float scale, float offset = 0.0f);
// x with ~0.4% outlier columns of |x| ~ 8 (what LLM.int8() decomposes), the rest unit normal.
void fill_activations_with_outliers(__half* x, std::int64_t m, std::int64_t k);

// How many copies of a weight of `bytes` fill k_working_set (at least 2).
int copies_for(std::uint64_t bytes);

// ---- weight copies (bench_bnb_fixtures.cu) ----------------------------------------------------------------------

// Copies of one quantized weight (quantized on the GPU from random normal fp16, as at load time).
struct weights_4bit {
    std::vector<dev<std::uint8_t>> packed, codes;
    std::vector<dev<float>> absmax, nested_absmax;
    dev<float> nested_code;
    std::vector<device_4bit_view> views;
    std::uint64_t bytes = 0;

    weights_4bit(std::int64_t n, std::int64_t k, quant_type t, bool dq, int copies);
};

struct weights_int8 {
    std::vector<dev<std::int8_t>> cb;
    std::vector<dev<float>> scb;
    std::uint64_t bytes = 0;
    weights_int8(std::int64_t n, std::int64_t k, int copies);
};

struct weights_f16 {
    std::vector<dev<__half>> w;
    weights_f16(std::int64_t n, std::int64_t k, int copies);
};

// ---- the benchmarks; their arguments are documented where they are defined --------------------------------------

// Per linear at the Llama-7B shapes (bench_bnb_linear.cu).
void BM_bnb_gemv_4bit(benchmark::State& state);
void BM_bnb_dequant_cublas(benchmark::State& state);
void BM_bnb_int8(benchmark::State& state);
void BM_bnb_int8_fused(benchmark::State& state);
void BM_fp16_gemv(benchmark::State& state);
void BM_fp16_cublas(benchmark::State& state);

// One decode step's linears of Llama-7B in a CUDA graph (bench_bnb_stack.cu).
void BM_linear_stack_7b(benchmark::State& state);
void BM_linear_stack_7b_fused(benchmark::State& state);

}  // namespace bnb_bench
