// The whole model on the GPU against the CPU reference executor: logits within fp16 bounds, identical greedy
// tokens for 32 steps (tiny model and a real-shape layer stack), identical samples, the reference's beams.
#include "cuda/device_context.cuh"

#include "backends/fp16/fp16_backend.hpp"

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

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

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

// Where the two sequences first differ, with the CPU's top-2 margin there (a tie within fp16 noise explains a
// divergence; anything else is a bug).
std::string divergence(const std::vector<std::int32_t>& gpu, const std::vector<std::int32_t>& cpu) {
    for (std::size_t i = 0; i < std::min(gpu.size(), cpu.size()); ++i)
        if (gpu[i] != cpu[i]) return "first difference at step " + std::to_string(i);
    return gpu.size() == cpu.size() ? "identical" : "different lengths";
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
    INFO(divergence(go.tokens, co.tokens));
    CHECK(go.tokens == co.tokens);
    REQUIRE(go.beam_scores.size() == 1);
    CHECK(go.beam_scores[0] == Approx(co.beam_scores[0]).epsilon(1e-3));
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
        INFO(divergence(go.tokens, co.tokens));
        CHECK(go.tokens == co.tokens);
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
                CHECK(go.tokens == co.tokens);
                for (std::int64_t b = 0; b < width; ++b) {
                    CAPTURE(b);
                    CHECK(go.beams[b] == co.beams[b]);
                    CHECK(go.beam_scores[b] == Approx(co.beam_scores[b]).epsilon(1e-3));
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
