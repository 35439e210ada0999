// The whole model on the GPU against the CPU reference executor: logits within fp16 bounds, identical greedy
// tokens for 32 steps (tiny model and a real-shape layer stack), identical samples, the reference's beams; and the
// folded RMSNorm path against the separate kernels, bit for bit.
#include "cuda/cuda_check.cuh"
#include "cuda/device_context.cuh"

#include "backends/fp16/fp16_backend.hpp"

#include "qbench/common/counter_rng.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/config/catalog.hpp"
#include "qbench/config/cell.hpp"
#include "qbench/engine/cpu_executor.hpp"
#include "qbench/engine/cpu_model.hpp"
#include "qbench/engine/cuda_api.hpp"
#include "qbench/engine/decoding.hpp"
#include "qbench/engine/prompt.hpp"
#include "qbench/io/synthetic_checkpoint.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

using namespace qbench;

namespace {

device_context& context() {
    static device_context* ctx = new device_context();
    return *ctx;
}

model_config catalog_model(const std::string& name) {
    static const catalog cat = load_catalog(default_configs_dir());
    const model_config* m = cat.find_model(name);
    REQUIRE(m != nullptr);
    return *m;
}

std::uint64_t fresh_seed() {
    static std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

// Both executors over the same synthetic checkpoint and the fp16 backend.
struct pair_of_executors {
    model_config model;
    std::unique_ptr<tensor_source> source;
    std::unique_ptr<backend> fp16 = make_fp16_backend();
    cell_spec cell;
    std::unique_ptr<cpu_executor> cpu;
    std::unique_ptr<cuda_executor> gpu;

    pair_of_executors(model_config m, std::uint64_t seed) : model(std::move(m)) {
        source = make_synthetic_source(model, seed);
        cell.model = model.name;
        cell.framework = "fp16";
        cell.bits = 16;
        cell.seed = seed;
        const auto t0 = std::chrono::steady_clock::now();
        gpu = make_cuda_executor(model, *source, *fp16, cell, context());
        const auto t1 = std::chrono::steady_clock::now();
        cpu = std::make_unique<cpu_executor>(load_cpu_model(model, *source, *fp16, cell));
        const auto& r = gpu->load_report();
        std::printf("%s: GPU load %.2f s (read %.2f, upload %.2f, rest %.2f), %.1f MB linear weights; CPU load %.2f s\n",
                    model.name.c_str(), r.total_s, r.read_s, r.upload_s, r.quantize_s, r.weight_bytes / 1e6,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count());
        (void)t0;
    }
};

prompt test_prompt(const model_config& m, std::int64_t text, std::int64_t image, std::uint64_t seed) {
    generation_options o;
    o.prompt_tokens = text;
    o.image_tokens = image;
    return make_prompt(m, o, seed);
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& ref) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        num += (static_cast<double>(a[i]) - ref[i]) * (static_cast<double>(a[i]) - ref[i]);
        den += static_cast<double>(ref[i]) * ref[i];
    }
    return std::sqrt(num / den);
}

// First step where the sequences differ (size when none).
std::size_t first_difference(const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b) {
    std::size_t i = 0;
    while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
    return i;
}

// Two logits of one distribution are a near-tie when they are within two fp16 units in the last place: the
// executors round the logits to fp16 after summing in fp32 (GPU) or double (CPU), so either may come out on top.
bool near_tie(float a, float b) {
    const float m = std::max(std::fabs(a), std::fabs(b));
    const float ulp = std::ldexp(1.0f, std::max(std::ilogb(std::max(m, 6.1e-5f)) - 10, -24));
    return std::fabs(a - b) <= 2.0f * ulp;
}

// The GPU's tokens must be the CPU's. Where they diverge, the divergence must be a near-tie in the CPU's own logits;
// then (greedy) the GPU is teacher-forced along the CPU's tokens and every one of its choices must be the CPU's or
// another near-tie. Returns the number of near-ties met.
int check_follows(pair_of_executors& ex, const prompt& p, const std::vector<std::int32_t>& gpu,
                  const std::vector<std::int32_t>& cpu, bool greedy) {
    REQUIRE(gpu.size() == cpu.size());
    const std::size_t k = first_difference(gpu, cpu);
    if (k == cpu.size()) return 0;
    const auto cpu_logits = ex.cpu->teacher_forced_logits(p, cpu);
    const auto& lk = cpu_logits[k];
    std::printf("%s: tokens diverge at step %zu: CPU %d (logit %.5f), GPU %d (logit %.5f)\n", ex.model.name.c_str(),
                k, cpu[k], lk[cpu[k]], gpu[k], lk[gpu[k]]);
    INFO("divergence at step " << k << ": CPU token " << cpu[k] << " logit " << lk[cpu[k]] << ", GPU token " << gpu[k]
                               << " logit " << lk[gpu[k]]);
    CHECK(near_tie(lk[cpu[k]], lk[gpu[k]]));
    int ties = 1;
    if (!greedy) return ties;
    const auto gpu_logits = ex.gpu->teacher_forced_logits(p, cpu);
    for (std::size_t i = 0; i < cpu.size(); ++i) {
        const std::int32_t choice = argmax_token(gpu_logits[i]);
        if (choice == cpu[i]) continue;
        CAPTURE(i, cpu[i], choice, cpu_logits[i][cpu[i]], cpu_logits[i][choice]);
        CHECK(near_tie(cpu_logits[i][cpu[i]], cpu_logits[i][choice]));
        ++ties;
    }
    return ties;
}

void check_logits(pair_of_executors& ex, const prompt& p, std::int64_t forced_count, std::uint64_t seed,
                  double bound) {
    std::vector<std::int32_t> forced;
    for (std::int64_t i = 0; i < forced_count; ++i)
        forced.push_back(static_cast<std::int32_t>(3 + random_bits(seed, 77 + i) % (ex.model.vocab_size - 3)));
    const auto g = ex.gpu->teacher_forced_logits(p, forced);
    const auto c = ex.cpu->teacher_forced_logits(p, forced);
    REQUIRE(g.size() == c.size());
    double worst = 0;
    std::int64_t top1 = 0;
    for (std::size_t i = 0; i < g.size(); ++i) {
        worst = std::max(worst, rel_l2(g[i], c[i]));
        top1 += argmax_token(g[i]) == argmax_token(c[i]);
    }
    std::printf("%s: teacher-forced logits, %zu rows: worst relative L2 error %.2e, top-1 agreement %lld/%zu\n",
                ex.model.name.c_str(), g.size(), worst, static_cast<long long>(top1), g.size());
    CHECK(worst < bound);
}

void check_greedy(pair_of_executors& ex, const prompt& p, std::int64_t steps) {
    generation_config g;
    g.max_new_tokens = steps;
    const generation_output go = ex.gpu->generate(p, g);
    const generation_output co = ex.cpu->generate(p, g);
    const int ties = check_follows(ex, p, go.tokens, co.tokens, true);
    REQUIRE(go.beam_scores.size() == 1);
    if (ties == 0) CHECK(go.beam_scores[0] == Approx(co.beam_scores[0]).epsilon(1e-3));
    CHECK(ex.gpu->last_timing().step_ms.size() == static_cast<std::size_t>(steps - 1));
    CHECK(ex.gpu->last_timing().prefill_ms > 0);
}

}  // namespace

TEST_CASE("cuda executor: tiny model equals the CPU reference", "[gpu][executor]") {
    const std::uint64_t seed = fresh_seed();
    CAPTURE(seed);
    pair_of_executors ex(catalog_model("tiny"), seed);
    const prompt p = test_prompt(ex.model, 16, -1, seed);

    SECTION("teacher-forced logits within fp16 bounds") { check_logits(ex, p, 12, seed, 5e-3); }

    SECTION("greedy: identical tokens for 32 steps, with and without graphs, repeatable") {
        check_greedy(ex, p, 32);
        CHECK(ex.gpu->graphs_used());
        generation_config g;
        g.max_new_tokens = 32;
        const auto with_graphs = ex.gpu->generate(p, g).tokens;
        ex.gpu->set_graphs_enabled(false);
        const auto without = ex.gpu->generate(p, g).tokens;
        CHECK_FALSE(ex.gpu->graphs_used());
        ex.gpu->set_graphs_enabled(true);
        CHECK(with_graphs == without);
    }

    SECTION("sampling: identical tokens") {
        generation_config g;
        g.max_new_tokens = 24;
        g.mode = decode_mode::sample;
        g.temperature = 0.8;
        g.top_k = 40;
        g.top_p = 0.9;
        g.seed = seed ^ 0xabcdull;
        const auto go = ex.gpu->generate(p, g);
        const auto co = ex.cpu->generate(p, g);
        check_follows(ex, p, go.tokens, co.tokens, false);
        // A second run replays the captured graph: the same draws.
        CHECK(ex.gpu->generate(p, g).tokens == go.tokens);
    }

    SECTION("beam search: the reference's beams") {
        for (const std::int64_t width : {2, 4}) {
            CAPTURE(width);
            generation_config g;
            g.max_new_tokens = 20;
            g.mode = decode_mode::beam;
            g.beam_width = width;
            for (int rep = 0; rep < 2; ++rep) {  // eager warm-up, then graph replay
                const auto go = ex.gpu->generate(p, g);
                const auto co = ex.cpu->generate(p, g);
                REQUIRE(go.beams.size() == static_cast<std::size_t>(width));
                if (go.beams == co.beams) {
                    for (std::int64_t b = 0; b < width; ++b) {
                        CAPTURE(b);
                        CHECK(go.beam_scores[b] == Approx(co.beam_scores[b]).epsilon(1e-3));
                    }
                } else {
                    // Near-equal candidates can swap under fp16 noise; the best beam's score must still agree.
                    std::printf("tiny: beam %lld results differ from the CPU's (best scores %.4f vs %.4f)\n",
                                static_cast<long long>(width), go.beam_scores[0], co.beam_scores[0]);
                    CHECK(go.beam_scores[0] == Approx(co.beam_scores[0]).epsilon(2e-3));
                }
            }
        }
    }

    SECTION("zero new tokens and a bad token id") {
        generation_config g;
        g.max_new_tokens = 0;
        const auto out = ex.gpu->generate(p, g);
        CHECK(out.tokens.empty());
        REQUIRE(out.beams.size() == 1);
        prompt bad = p;
        bad.tokens[1] = static_cast<std::int32_t>(ex.model.vocab_size);
        CHECK_THROWS_AS(ex.gpu->generate(bad, generation_config{}), error);
    }

    SECTION("bytes per decode step") {
        const std::uint64_t linear = ex.gpu->load_report().weight_bytes;
        CHECK(linear == static_cast<std::uint64_t>(ex.model.linear_params() + ex.model.vocab_size * ex.model.hidden_size) * 2);
        const std::uint64_t b1 = ex.gpu->bytes_per_decode_step(1, 100), b4 = ex.gpu->bytes_per_decode_step(4, 100);
        CHECK(b4 - b1 == 3 * (100 * static_cast<std::uint64_t>(ex.model.kv_bytes_per_token()) + ex.model.hidden_size * 2));
    }
}

TEST_CASE("cuda executor: a real-shape layer stack (Vicuna-7B layers) equals the CPU reference", "[gpu][executor]") {
    const std::uint64_t seed = fresh_seed();
    CAPTURE(seed);
    model_config m = catalog_model("vicuna-7b-v0");
    m.num_layers = 2;
    pair_of_executors ex(m, seed);
    const prompt p = test_prompt(ex.model, 12, 8, seed);
    check_logits(ex, p, 4, seed, 5e-3);
    check_greedy(ex, p, 32);
}

TEST_CASE("cuda executor: a model over the VRAM budget is out_of_memory(vram)", "[gpu][executor]") {
    std::uint64_t fixed = 0;
    {
        device_context probe;
        const auto f = probe.memory();
        fixed = f.context + f.libraries + f.workspace;
    }
    device_context_options options;
    options.budget_bytes = fixed + (1ull << 20);  // 1 MiB for a model of about 4 MB
    const model_config m = catalog_model("tiny");
    const auto source = make_synthetic_source(m, 1);
    const auto fp16 = make_fp16_backend();
    cell_spec cell;
    cell.framework = "fp16";
    bool thrown = false;
    try {
        device_context small(options);
        try {
            make_cuda_executor(m, *source, *fp16, cell, small);
        } catch (const out_of_memory&) {
            CHECK(small.memory().allocated_current == small.memory().workspace);  // the rest was released
            throw;
        }
    } catch (const out_of_memory& e) {
        thrown = true;
        CHECK(e.kind() == memory_kind::vram);
        CHECK(e.requested_bytes() > e.available_bytes());
    }
    CHECK(thrown);
}

namespace {

// Runs the same requests with the folded RMSNorm on and off (QBENCH_FP16_FOLD_NORM, read at each generate): every
// logit, token and beam score must be identical, in prefill (rows <= 8 fold too) and in captured decode steps.
void check_fold_matches_separate(cuda_executor& gpu, const model_config& model, std::uint64_t seed) {
    generation_options go;
    go.prompt_tokens = 4;
    go.image_tokens = 0;
    const prompt p = make_prompt(model, go, seed);
    std::vector<std::int32_t> forced;  // prompt + 3 forced tokens: 7 rows, a folded prefill
    for (int i = 0; i < 4; ++i)
        forced.push_back(static_cast<std::int32_t>(3 + random_bits(seed, 500 + i) % (model.vocab_size - 3)));
    generation_config greedy;
    greedy.max_new_tokens = 16;
    generation_config beam;
    beam.max_new_tokens = 12;
    beam.mode = decode_mode::beam;
    beam.beam_width = 4;
    struct results {
        std::vector<std::vector<float>> logits;
        generation_output greedy, beam;
        std::string path1, path4;
    };
    auto run = [&](const char* fold) {
        ::setenv("QBENCH_FP16_FOLD_NORM", fold, 1);
        results r;
        r.logits = gpu.teacher_forced_logits(p, forced);
        for (int rep = 0; rep < 2; ++rep) {  // eager warm-up step, then the captured graph
            r.greedy = gpu.generate(p, greedy);
            r.beam = gpu.generate(p, beam);
        }
        r.path1 = gpu.kernel_path(1);
        r.path4 = gpu.kernel_path(4);
        return r;
    };
    const results off = run("0");
    const results on = run("1");
    ::unsetenv("QBENCH_FP16_FOLD_NORM");
    int dev = 0, major = 0;
    QB_CUDA_CHECK(cudaGetDevice(&dev));
    QB_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    CAPTURE(on.path1, off.path1, on.path4, off.path4);
    if (major >= 8) {  // the mma GEMV folds; sm_75 keeps the separate kernels (residual add folded only)
        CHECK(on.path1.ends_with("+fold-norm"));
        CHECK(on.path4.ends_with("+fold-norm"));
        CHECK(off.path1.ends_with("+norm-kernel"));
    }
    CHECK(gpu.kernel_path(64).find("fold") == std::string::npos);  // cuBLAS rows: nothing folds
    REQUIRE(on.logits.size() == off.logits.size());
    for (std::size_t i = 0; i < on.logits.size(); ++i) {
        CAPTURE(i);
        CHECK(on.logits[i] == off.logits[i]);
    }
    CHECK(on.greedy.tokens == off.greedy.tokens);
    CHECK(on.greedy.beam_scores == off.greedy.beam_scores);
    CHECK(on.beam.beams == off.beam.beams);
    CHECK(on.beam.beam_scores == off.beam.beam_scores);
}

}  // namespace

TEST_CASE("cuda executor: the folded RMSNorm equals the separate kernels bit for bit", "[gpu][executor][fold]") {
    const std::uint64_t seed = fresh_seed();
    CAPTURE(seed);
    const auto fp16 = make_fp16_backend();
    for (const char* name : {"tiny", "vicuna-7b-v0"}) {
        CAPTURE(name);
        model_config m = catalog_model(name);
        m.num_layers = std::min<std::int64_t>(m.num_layers, 2);
        const auto source = make_synthetic_source(m, seed);
        cell_spec cell;
        cell.model = m.name;
        cell.framework = "fp16";
        cell.bits = 16;
        cell.seed = seed;
        auto gpu = make_cuda_executor(m, *source, *fp16, cell, context());
        check_fold_matches_separate(*gpu, m, seed);
    }
}
