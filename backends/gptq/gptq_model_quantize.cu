// quantize_model on the GPU: calibration hidden states stay on the device; per layer, the stages of
// sequential_groups() collect Hessians with cuBLAS, the algorithm runs with cuSOLVER/cuBLAS, and the quantized
// layer's output becomes the next layer's input.
#include "backends/gptq/gptq_algorithm_cuda.cuh"
#include "backends/gptq/gptq_calibration.cuh"
#include "backends/gptq/gptq_quantize_internal.hpp"

#include "cuda/cuda_check.cuh"
#include "cuda/device_context.cuh"
#include "cuda/embedding.cuh"

#include <map>
#include <set>

namespace qbench::gptq {

namespace {
using clock_type = std::chrono::steady_clock;

linear_kind owner_of(linear_kind k) {
    if (k == linear_kind::k_proj || k == linear_kind::v_proj) return linear_kind::q_proj;
    if (k == linear_kind::up_proj) return linear_kind::gate_proj;
    return k;
}

device_buffer upload_f16(device_context& ctx, const std::vector<std::uint16_t>& v, const char* what) {
    device_buffer b = ctx.allocate(v.size() * 2, what);
    ctx.upload(b.get(), v.data(), v.size() * 2);
    return b;
}

__global__ void scale_kernel(float* h, std::int64_t n, float f) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        h[i] *= f;
}
}  // namespace

void quantize_model_cuda(const model_config& model, const weight_store& weights, const gptq_quantize_options& options,
                         async_linear_writer& writer, gptq_quantize_report& report) {
    device_context ctx;
    ctx.set_pdl_enabled(false);
    report.device = std::string("cuda: ") + ctx.properties().name;
    const cudaStream_t st = ctx.stream();
    const launch_options lo{st, false};
    gptq_gpu alg(ctx);

    const std::int64_t T = options.gptq.calibration_seq_len;
    const std::int64_t S = options.gptq.calibration_samples;
    const std::int64_t S_ho = quality_sequence_count(options);
    const std::int64_t H = model.hidden_size;
    const std::int64_t chunk = options.chunk_sequences > 0 ? options.chunk_sequences
                                                           : std::max<std::int64_t>(1, 16384 / std::max<std::int64_t>(1, T));
    const gptq_config cfg = algorithm_config(options);
    const std::int64_t total_seq = S + S_ho;
    const std::uint64_t hidden_bytes = static_cast<std::uint64_t>(total_seq * T * H) * 2;

    // Layer-0 input: the embeddings of the calibration and held-out tokens.
    auto t0 = clock_type::now();
    device_buffer h_cur = ctx.allocate(hidden_bytes, "gptq: calibration hidden states");
    device_buffer h_next = ctx.allocate(hidden_bytes, "gptq: calibration hidden states (next)");
    {
        auto tokens = calibration_tokens(model, S, T, options.seed, "gptq-calibration");
        const auto held = calibration_tokens(model, S_ho, T, options.seed, "gptq-heldout");
        tokens.insert(tokens.end(), held.begin(), held.end());
        device_buffer tok = ctx.allocate(tokens.size() * 4, "gptq: calibration tokens");
        ctx.upload(tok.get(), tokens.data(), tokens.size() * 4);
        const device_buffer table = upload_f16(ctx, weights.tensor_f16("model.embed_tokens.weight"), "gptq: embeddings");
        launch_embed_tokens(table.as<const __half>(), model.vocab_size, H, tok.as<const std::int32_t>(), total_seq * T,
                            h_cur.as<__half>(), lo);
        QB_CUDA_CHECK(cudaStreamSynchronize(st));
    }
    report.read_s += seconds_since(t0);
    // Chunks of sequences: calibration ones, then held-out ones (never mixed: only the former enter Hessians).
    std::vector<std::pair<std::int64_t, std::int64_t>> chunks;
    for (std::int64_t s0 = 0; s0 < S; s0 += chunk) chunks.emplace_back(s0, std::min(chunk, S - s0));
    for (std::int64_t s0 = 0; s0 < S_ho; s0 += chunk) chunks.emplace_back(S + s0, std::min(chunk, S_ho - s0));
    calib_forward fwd(ctx, model, T, std::min(chunk, std::max<std::int64_t>(S, S_ho)));

    for (std::int64_t l = 0; l < model.num_layers; ++l) {
        t0 = clock_type::now();
        std::map<linear_kind, device_buffer> orig, quant;
        calib_layer_weights w;
        for (linear_kind k : k_layer_linears) {
            orig[k] = upload_f16(ctx, weights.linear_f16(l, k), "gptq: fp16 layer weight");
            w.linear[static_cast<std::size_t>(k)] = orig[k].as<const __half>();
        }
        const std::string lp = "model.layers." + std::to_string(l) + ".";
        const device_buffer in_norm = upload_f16(ctx, weights.tensor_f16(lp + "input_layernorm.weight"), "gptq: norm");
        const device_buffer post_norm = upload_f16(ctx, weights.tensor_f16(lp + "post_attention_layernorm.weight"), "gptq: norm");
        w.input_norm = in_norm.as<const __half>();
        w.post_norm = post_norm.as<const __half>();
        report.read_s += seconds_since(t0);

        for (const auto& group : sequential_groups(options.true_sequential)) {
            t0 = clock_type::now();
            // Hessians of the group's distinct inputs, and the held-out rows of those inputs.
            std::map<linear_kind, device_buffer> hess, held;
            calib_stage upto = calib_stage::attn_in;
            for (linear_kind k : group) {
                if (owner_of(k) != k) continue;
                const std::int64_t K = linear_in_features(model, k);
                hess[k] = ctx.allocate(static_cast<std::uint64_t>(K * K) * 4, "gptq: Hessian");
                QB_CUDA_CHECK(cudaMemsetAsync(hess[k].get(), 0, static_cast<std::size_t>(K * K) * 4, st));
                if (S_ho > 0) held[k] = ctx.allocate(static_cast<std::uint64_t>(S_ho * T * K) * 2, "gptq: held-out inputs");
                upto = std::max(upto, stage_of(k));
            }
            for (const auto& [s0, n] : chunks) {
                fwd.run(w, h_cur.as<const __half>() + s0 * T * H, n, upto, nullptr);
                for (auto& [k, hb] : hess) {
                    const std::int64_t K = linear_in_features(model, k);
                    const __half* x = fwd.input(stage_of(k));
                    if (s0 < S) {
                        fwd.hessian_add(hb.as<float>(), x, n * T, K);
                    } else {
                        QB_CUDA_CHECK(cudaMemcpyAsync(held[k].as<__half>() + (s0 - S) * T * K, x,
                                                      static_cast<std::size_t>(n * T * K) * 2, cudaMemcpyDeviceToDevice, st));
                    }
                }
            }
            for (auto& [k, hb] : hess) {
                const std::int64_t K = linear_in_features(model, k);
                fwd.symmetrize_hessian(hb.as<float>(), K);
                scale_kernel<<<1024, 256, 0, st>>>(hb.as<float>(), K * K, static_cast<float>(2.0 / static_cast<double>(S)));
                QB_CUDA_CHECK_LAUNCH(st);
            }
            QB_CUDA_CHECK(cudaStreamSynchronize(st));
            report.forward_s += seconds_since(t0);

            for (linear_kind k : group) {
                const std::string prefix = linear_prefix(l, k);
                const std::int64_t K = linear_in_features(model, k), N = linear_out_features(model, k);
                const auto ta = clock_type::now();
                // The algorithm overwrites its Hessian; linears that share an input each get a fresh copy.
                device_buffer hcopy = ctx.allocate(static_cast<std::uint64_t>(K * K) * 4, "gptq: Hessian copy");
                QB_CUDA_CHECK(cudaMemcpyAsync(hcopy.get(), hess.at(owner_of(k)).get(), static_cast<std::size_t>(K * K) * 4,
                                              cudaMemcpyDeviceToDevice, st));
                quant[k] = ctx.allocate(static_cast<std::uint64_t>(N * K) * 2, "gptq: fake-quantized weight");
                gptq_result r;
                try {
                    r = alg.quantize(orig[k].as<const __half>(), N, K, hcopy.as<float>(), cfg, quant[k].as<__half>());
                } catch (const out_of_memory&) {
                    throw;
                } catch (const cuda_error&) {
                    throw;
                } catch (const unsupported_error&) {
                    throw;
                } catch (const error& e) {
                    throw error(prefix + ": " + e.what());  // which layer, for the cell's reason
                }
                hcopy.reset();
                gptq_layer_report lr = layer_report(prefix, K, N, r, seconds_since(ta));
                report.algorithm_s += lr.seconds;
                if (S_ho > 0) {
                    const auto tq = clock_type::now();
                    const auto [eg, er] = alg.relative_errors(held.at(owner_of(k)).as<const __half>(), S_ho * T,
                                                              orig[k].as<const __half>(), quant[k].as<const __half>(), N, K, cfg);
                    lr.gptq_relative_error = eg;
                    lr.rtn_relative_error = er;
                    report.quality_s += seconds_since(tq);
                }
                report.layers.push_back(lr);
                report.write_s += writer.submit(prefix, std::move(r.q));
                // true_sequential: later groups of this layer see this linear quantized.
                if (options.true_sequential) w.linear[static_cast<std::size_t>(k)] = quant[k].as<const __half>();
            }
        }
        for (linear_kind k : k_layer_linears) w.linear[static_cast<std::size_t>(k)] = quant.at(k).as<const __half>();
        // The quantized layer's output: the next layer's input.
        t0 = clock_type::now();
        for (const auto& [s0, n] : chunks)
            fwd.run(w, h_cur.as<const __half>() + s0 * T * H, n, calib_stage::output, h_next.as<__half>() + s0 * T * H);
        QB_CUDA_CHECK(cudaStreamSynchronize(st));
        std::swap(h_cur, h_next);
        report.forward_s += seconds_since(t0);
        ctx.sample_device_memory();
        if (options.on_layer)
            options.on_layer(l + 1, model.num_layers, report.read_s + report.forward_s + report.algorithm_s + report.quality_s + report.write_s);
    }
    const auto mem = ctx.memory();
    report.vram_peak_bytes = mem.allocated_peak;
    report.device_peak_bytes = mem.device_peak;
}

}  // namespace qbench::gptq
