// Per-linear benchmarks at the three Llama-7B weight shapes: each bnb kernel (4-bit GEMV, dequantize + cuBLAS,
// int8 two-kernel and fused) next to the fp16 GEMV and cuBLAS, timed over rotating weight copies so every launch
// streams its weight from HBM. Registered with their argument lists in bench_bnb.cu.
#include "bench_bnb_common.cuh"
#include "bench_bnb_timing.cuh"

#include "backends/fp16/fp16_gemv.cuh"

#include <cublasLt.h>
#include <cublas_v2.h>

#include <string>

namespace bnb_bench {

namespace {

// Arg "shape" indexes this.
const shape k_shapes[] = {{4096, 4096, "qkvo"}, {11008, 4096, "gate_up"}, {4096, 11008, "down"}};

}  // namespace

// ---- 4-bit ------------------------------------------------------------------------------------------------------

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

// The fp16 baselines' operands: shape range(0), m = range(1) rows, weight copies rotating beyond L2, x filled.
struct f16_operands {
    explicit f16_operands(const benchmark::State& state)
        : s(k_shapes[state.range(0)]), m(state.range(1)),
          w(s.n, s.k, copies_for(static_cast<std::uint64_t>(s.n * s.k * 2))),
          x(static_cast<std::size_t>(m * s.k)), y(static_cast<std::size_t>(m * s.n)) {
        fill_half(x.get(), x.size(), 3, 1.0f);
    }
    const __half* weight(int i) const { return w.w[static_cast<std::size_t>(i) % w.w.size()].get(); }
    shape s;
    std::int64_t m;
    weights_f16 w;
    dev<__half> x, y;
};

// The fp16 backend's GEMV (what an fp16 decode cell runs) at the same shapes.
void BM_fp16_gemv(benchmark::State& state) {
    f16_operands f(state);
    const shape& s = f.s;
    state.SetLabel(std::string(s.name) + " f16 " + f16_gemv_path(f.weight(0), f.x.get(), f.m, s.n, s.k));
    run_timed(state, static_cast<double>(s.n * s.k * 2), [&](int i) {
        launch_f16_gemv(f.weight(i), f.x.get(), f.y.get(), f.m, s.n, s.k, {nullptr, false});
    });
}

void BM_fp16_cublas(benchmark::State& state) {
    f16_operands f(state);
    const shape& s = f.s;
    cublasHandle_t h;
    cublasCreate(&h);
    const float alpha = 1, beta = 0;
    state.SetLabel(std::string(s.name) + " f16 cublasGemmEx");
    run_timed(state, static_cast<double>(s.n * s.k * 2), [&](int i) {
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(s.n), static_cast<int>(f.m), static_cast<int>(s.k), &alpha,
                     f.weight(i), CUDA_R_16F, static_cast<int>(s.k), f.x.get(), CUDA_R_16F, static_cast<int>(s.k), &beta,
                     f.y.get(), CUDA_R_16F, static_cast<int>(s.n),
                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    });
    cublasDestroy(h);
}

}  // namespace bnb_bench
