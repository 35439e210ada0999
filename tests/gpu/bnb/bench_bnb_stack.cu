// Whole-stack benchmarks: one Llama-7B decode step's linears (224 of them, then the fp16 lm_head) captured in one
// CUDA graph and replayed, per format; BM_linear_stack_7b_fused runs the same stack through the fused team kernels.
// Counters are per decode step (tokens_per_s, GB_per_token) rather than per launch. The weights of a format are built
// once per process and cached here. Registered with their argument lists in bench_bnb.cu.
#include "bench_bnb_common.cuh"
#include "bench_bnb_timing.cuh"

#include "backends/fp16/fp16_gemv.cuh"
#include "cuda/swiglu.cuh"

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace bnb_bench {

namespace {

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

// Runs step() once (warm-up), then times its CUDA graph per iteration (time_graph_replays) and sets the stack's
// counters: tokens_per_s, GB_per_token and the bandwidth of `bytes` per step. Destroys the stream.
template <class Step>
void time_stack(benchmark::State& state, cudaStream_t stream, double bytes, const char* warm_up, Step&& step) {
    step();
    cuda_ok(cudaStreamSynchronize(stream), warm_up);
    const double per_step = time_graph_replays(state, stream, 1, step) / static_cast<double>(state.iterations());
    state.counters["tokens_per_s"] = 1.0 / per_step;
    state.counters["GB_per_token"] = bytes / 1e9;
    set_bandwidth_counters(state, bytes, per_step);
    cudaStreamDestroy(stream);
}

}  // namespace

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
    time_stack(state, stream, bytes, "stack warm-up", step);  // step() once outside the capture first
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
    time_stack(state, stream, bytes, "fused stack warm-up", step);  // step() once outside the capture first
}

}  // namespace bnb_bench
