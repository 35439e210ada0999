// The GPTQ algorithm on the GPU against the CPU reference (label gpu): per-layer GPTQ (cuSOLVER + column-loop kernel +
// cuBLAS lazy updates) on small layers, the Hessian, the calibration forward against the CPU engine's layer
// forward, and quantize_model on the GPU against the CPU path on a tiny model.
#include "gptq_gpu_test_util.hpp"

#include "backends/fp16/fp16_backend.hpp"
#include "backends/gptq/gptq_algorithm_cuda.cuh"
#include "backends/gptq/gptq_algorithm_ref.hpp"
#include "backends/gptq/gptq_artifact.hpp"
#include "backends/gptq/gptq_backend.hpp"
#include "backends/gptq/gptq_calibration.cuh"
#include "backends/gptq/gptq_quantize.hpp"

#include "qbench/engine/cpu_forward.hpp"
#include "qbench/engine/cpu_model.hpp"
#include "qbench/io/synthetic_checkpoint.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

using namespace qbench;
using namespace qbench::gptq;
using namespace qbench::gptq::test;
namespace fs = std::filesystem;

namespace {
std::vector<float> correlated_inputs(std::int64_t tokens, std::int64_t K, std::uint64_t seed) {
    const std::int64_t rank = 16;
    const auto kmix = stream_key(1234, hash_string("mix"));
    const auto kz = stream_key(seed, hash_string("z"));
    std::vector<float> mix(sz(rank * K));
    for (std::int64_t i = 0; i < rank * K; ++i) mix[sz(i)] = normal01(kmix, static_cast<std::uint64_t>(i));
    std::vector<float> x(sz(tokens * K));
    for (std::int64_t t = 0; t < tokens; ++t) {
        float z[16];
        for (std::int64_t r = 0; r < rank; ++r) z[r] = normal01(kz, static_cast<std::uint64_t>(t * 100000 + r));
        for (std::int64_t k = 0; k < K; ++k) {
            float v = 0.3f * normal01(kz, static_cast<std::uint64_t>(t * 100000 + 100 + k));
            for (std::int64_t r = 0; r < rank; ++r) v += 0.5f * z[r] * mix[sz(r * K + k)];
            if (k % 61 == 5) v *= 6.0f;
            x[sz(t * K + k)] = round_to_half(v);
        }
    }
    return x;
}

model_config small_model() {
    model_config m;
    m.name = "tiny-gptq-gpu";
    m.hf_name = "qbench/tiny-gptq-gpu";
    m.hidden_size = 128;
    m.intermediate_size = 352;
    m.num_layers = 2;
    m.num_heads = 4;
    m.num_kv_heads = 2;
    m.vocab_size = 256;
    m.max_position = 128;
    m.rms_norm_eps = 1e-5;
    return m;
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
        den += static_cast<double>(b[i]) * b[i];
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}
}  // namespace

TEST_CASE("GPTQ on the GPU agrees with the CPU reference", "[gpu][gptq][algorithm]") {
    device_context ctx;
    gptq_gpu alg(ctx);
    struct cfg_case {
        std::int64_t bits, gs;
        bool sym, act, stat;
        std::int64_t K;
    };
    const cfg_case cases[] = {{4, 128, true, false, false, 256},  {3, -1, false, false, false, 256},
                              {2, 32, true, true, false, 256},    {8, 64, true, true, true, 256},
                              {4, 32, false, false, false, 256},  {4, 128, true, true, false, 688},
                              {3, 128, false, false, true, 688}};
    const std::int64_t N = 96, T = 1024;
    int idx = 0;
    for (const auto& c : cases) {
        const std::int64_t K = c.K;
        const auto x = correlated_inputs(T, K, 500 + idx);
        const auto held = correlated_inputs(256, K, 900 + idx);
        hessian_accumulator acc(K);
        for (std::int64_t s = 0; s < 8; ++s) acc.add_batch(std::span<const float>(x).subspan(sz(s * T / 8 * K), sz(T / 8 * K)), T / 8, 1);
        const auto h = acc.finalize();
        const auto key = stream_key(700 + idx, hash_string("w"));
        std::vector<float> w(sz(N * K));
        for (std::size_t i = 0; i < w.size(); ++i) w[i] = round_to_half(normal01(key, i) / std::sqrt(static_cast<float>(K)));
        gptq_config cfg;
        cfg.bits = c.bits;
        cfg.group_size = c.gs;
        cfg.sym = c.sym;
        cfg.act_order = c.act;
        cfg.static_groups = c.stat;
        const gptq_result cpu = gptq_quantize_ref(w, N, K, h, cfg);

        const device_buffer wd = upload(ctx, to_half_bits(w));
        device_buffer hd = upload(ctx, h);
        device_buffer wq = ctx.allocate(sz(N * K) * 2, "wq");
        const gptq_result gpu = alg.quantize(wd.as<const __half>(), N, K, hd.as<float>(), cfg, wq.as<__half>());

        std::int64_t same = 0;
        for (std::size_t i = 0; i < cpu.q.codes.size(); ++i) same += cpu.q.codes[i] == gpu.q.codes[i];
        const double agree = static_cast<double>(same) / static_cast<double>(cpu.q.codes.size());
        const auto wc = cpu.q.dequantize(), wg = gpu.q.dequantize();
        const double ec = relative_output_error(w, wc, N, K, held, 256);
        const double eg = relative_output_error(w, wg, N, K, held, 256);
        INFO("case " << idx << " bits " << c.bits << " gs " << c.gs << " act " << c.act << " static " << c.stat << " K " << K
                     << ": codes agree " << agree << ", loss cpu " << cpu.loss << " gpu " << gpu.loss << ", held-out error cpu "
                     << ec << " gpu " << eg);
        std::printf("  gptq gpu-vs-cpu case %d: bits %lld gs %lld act %d static %d K %lld: agree %.4f loss %.4g/%.4g err %.4f/%.4f\n",
                    idx, static_cast<long long>(c.bits), static_cast<long long>(c.gs), c.act, c.stat,
                    static_cast<long long>(K), agree, cpu.loss, gpu.loss, ec, eg);
        CHECK(gpu.perm == cpu.perm);
        CHECK(gpu.q.g_idx == cpu.q.g_idx);
        CHECK(agree > 0.95);
        CHECK(gpu.loss == Approx(cpu.loss).epsilon(0.05));
        CHECK(std::abs(eg - ec) < 0.1 * ec + 1e-4);
        CHECK(gpu.damp_used == cpu.damp_used);
        // The fake-quantized weight the GPU hands to the calibration forward is the result's own dequantization.
        const auto wq_h = download<std::uint16_t>(wq.get(), sz(N * K));
        CHECK(wq_h == to_half_bits(wg));
        ++idx;
    }
}

TEST_CASE("the GPU Hessian equals (2/n) sum x x^T", "[gpu][gptq][hessian]") {
    device_context ctx;
    const model_config m = small_model();
    calib_forward fwd(ctx, m, 64, 2);
    const std::int64_t K = 352, T = 512;
    const auto x = correlated_inputs(T, K, 31);
    hessian_accumulator acc(K);
    acc.add_batch(x, T, 4);
    const auto ref = acc.finalize();
    const device_buffer xd = upload(ctx, to_half_bits(x));
    device_buffer hd = ctx.allocate(sz(K * K) * 4, "h");
    QB_CUDA_CHECK(cudaMemsetAsync(hd.get(), 0, sz(K * K) * 4, ctx.stream()));
    fwd.hessian_add(hd.as<float>(), xd.as<const __half>(), T / 2, K);
    fwd.hessian_add(hd.as<float>(), xd.as<const __half>() + T / 2 * K, T / 2, K);
    fwd.symmetrize_hessian(hd.as<float>(), K);
    QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
    auto h = download<float>(hd.get(), sz(K * K));
    for (auto& v : h) v *= 2.0f / 4.0f;
    CHECK(rel_diff(h, ref) < 1e-5);
    // Exactly symmetric: the factorization reads one triangle, the act-order permutation both.
    int asymmetric = 0;
    for (std::int64_t r = 0; r < K; ++r)
        for (std::int64_t c = 0; c < r; ++c) asymmetric += h[sz(r * K + c)] != h[sz(c * K + r)];
    CHECK(asymmetric == 0);
}

TEST_CASE("the calibration forward matches the CPU engine's layer forward", "[gpu][gptq][calibration]") {
    device_context ctx;
    const model_config m = small_model();
    const auto src = make_synthetic_source(m, 5);
    cell_spec fp16_cell;
    fp16_cell.framework = "fp16";
    fp16_cell.bits = 16;
    const cpu_model model = load_cpu_model(m, *src, *make_fp16_backend(), fp16_cell);
    const std::int64_t S = 3, T = 48, H = m.hidden_size;
    std::vector<std::int32_t> tokens(sz(S * T));
    for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<std::int32_t>((i * 37 + 11) % m.vocab_size);
    const auto hidden = embed_tokens(model, tokens);
    std::map<linear_kind, std::vector<float>> seen;
    const linear_observer obs = [&](std::int64_t, linear_kind k, const float* x, std::int64_t rows, std::int64_t in) {
        seen[k].assign(x, x + rows * in);
    };
    std::vector<float> out = hidden;
    cpu_layer_forward(model, 0, out, T, &obs);

    calib_forward fwd(ctx, m, T, S);
    std::vector<device_buffer> keep;
    calib_layer_weights w;
    for (linear_kind k : {linear_kind::q_proj, linear_kind::k_proj, linear_kind::v_proj, linear_kind::o_proj,
                          linear_kind::gate_proj, linear_kind::up_proj, linear_kind::down_proj}) {
        keep.push_back(upload(ctx, to_half_bits(to_float_vector(src->read(linear_prefix(0, k) + ".weight")))));
        w.linear[static_cast<std::size_t>(k)] = keep.back().as<const __half>();
    }
    keep.push_back(upload(ctx, to_half_bits(to_float_vector(src->read("model.layers.0.input_layernorm.weight")))));
    w.input_norm = keep.back().as<const __half>();
    keep.push_back(upload(ctx, to_half_bits(to_float_vector(src->read("model.layers.0.post_attention_layernorm.weight")))));
    w.post_norm = keep.back().as<const __half>();
    const device_buffer hd = upload(ctx, to_half_bits(hidden));
    device_buffer od = ctx.allocate(sz(S * T * H) * 2, "out");
    fwd.run(w, hd.as<const __half>(), S, calib_stage::down_in, nullptr);
    QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
    for (linear_kind k : {linear_kind::q_proj, linear_kind::o_proj, linear_kind::gate_proj, linear_kind::down_proj}) {
        const auto st = stage_of(k);
        const auto got = download<std::uint16_t>(fwd.input(st), sz(S * T * fwd.width(st)));
        std::vector<float> g(got.size());
        for (std::size_t i = 0; i < g.size(); ++i) g[i] = half_to_float(got[i]);
        INFO("stage input of " << linear_module_path(k));
        CHECK(rel_diff(g, seen.at(k)) < 1e-2);
    }
    fwd.run(w, hd.as<const __half>(), S, calib_stage::output, od.as<__half>());
    QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
    const auto got = download<std::uint16_t>(od.get(), sz(S * T * H));
    std::vector<float> g(got.size());
    for (std::size_t i = 0; i < g.size(); ++i) g[i] = half_to_float(got[i]);
    CHECK(rel_diff(g, out) < 1e-2);
}

TEST_CASE("quantize_model on the GPU makes an artifact as good as the CPU path's", "[gpu][gptq][quantize]") {
    const fs::path cache = fs::temp_directory_path() / ("qbench-gptq-gpu-" + std::to_string(::getpid()));
    fs::remove_all(cache);
    const model_config m = small_model();
    const auto fp16_dir = ensure_synthetic_checkpoint(m, 9, cache / "checkpoints");
    gptq_quantize_options o;
    o.bits = 4;
    o.gptq.group_size = 32;
    o.gptq.desc_act = true;
    o.gptq.calibration_samples = 16;
    o.gptq.calibration_seq_len = 64;
    o.quality_sequences = 2;
    o.seed = 9;
    const auto gpu_dir = cache / "gpu";
    const auto cpu_dir = cache / "cpu";
    const auto src = open_checkpoint(fp16_dir);
    const auto rg = quantize_model(m, *src, o, gpu_dir, true);
    const auto rc = quantize_model(m, *src, o, cpu_dir, false);
    std::printf("  tiny model: GPU mean error gptq %.4f rtn %.4f (%.2f s), CPU gptq %.4f rtn %.4f (%.2f s)\n",
                rg.mean_gptq_relative_error, rg.mean_rtn_relative_error, rg.quantize_time_s, rc.mean_gptq_relative_error,
                rc.mean_rtn_relative_error, rc.quantize_time_s);
    CHECK(rg.mean_gptq_relative_error < rg.mean_rtn_relative_error);
    CHECK(rg.mean_gptq_relative_error == Approx(rc.mean_gptq_relative_error).epsilon(0.25));
    CHECK(rg.vram_peak_bytes > 0);
    REQUIRE(artifact_complete(gpu_dir));

    // The GPU artifact's layers on the GPU equal its layers on the CPU reference.
    device_context ctx;
    const auto art = open_checkpoint(gpu_dir);
    cell_spec cell;
    cell.framework = "gptq";
    cell.bits = 4;
    const auto backend = make_gptq_backend();
    for (linear_kind k : {linear_kind::q_proj, linear_kind::v_proj, linear_kind::o_proj, linear_kind::up_proj, linear_kind::down_proj}) {
        const std::int64_t K = linear_in_features(m, k), N = linear_out_features(m, k);
        const linear_request req{*art, linear_prefix(1, k), k, K, N, cell};
        const auto cl = backend->load_cpu_linear(req);
        const auto dl = backend->load_device_linear(req, ctx);
        CHECK(dl->weight_bytes() > 0);
        for (std::int64_t rows : {1, 3, 12}) {
            const auto x = random_inputs(rows, K, 77 + rows);
            std::vector<float> yc(sz(rows * N));
            cl->forward(x.data(), rows, yc.data());
            const device_buffer xd = upload(ctx, to_half_bits(x));
            device_buffer yd = ctx.allocate(sz(rows * N) * 2, "y");
            dl->forward(xd.get(), rows, yd.get(), ctx.stream());
            QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
            const auto yg = download<std::uint16_t>(yd.get(), sz(rows * N));
            std::vector<double> ref(yc.begin(), yc.end());
            const auto c = compare(yg, ref, yg.size());
            INFO(linear_module_path(k) << " rows " << rows << " path " << dl->kernel_path(rows) << " rel " << c.rel_l2);
            CHECK(c.nonfinite == 0);
            CHECK(c.rel_l2 < 5e-3);
        }
    }
    fs::remove_all(cache);
}
