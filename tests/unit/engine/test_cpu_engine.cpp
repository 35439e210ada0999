// The CPU reference engine end to end on small random checkpoints: loading and its errors, a hand-computed model,
// KV-cache decode against full recomputation, greedy / beam / sampling generation, the calibration hook.
#include "backends/fp16/fp16_backend.hpp"
#include "memory_source.hpp"
#include "qbench/common/half.hpp"
#include "qbench/config/cell.hpp"
#include "qbench/engine/cpu_executor.hpp"
#include "qbench/engine/decoding.hpp"
#include "qbench/engine/prompt.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <set>

using namespace qbench;
using qbench::test::memory_source;
using qbench::test::random_checkpoint;
using qbench::test::tiny_config;

namespace {

const backend& fp16() {
    static const std::unique_ptr<backend> b = make_fp16_backend();
    return *b;
}

cpu_model load_random_model(const model_config& c, std::uint64_t seed, float linear_gain = 1.0f) {
    const memory_source source = random_checkpoint(c, seed, linear_gain);
    return load_cpu_model(c, source, fp16(), cell_spec{});
}

prompt text_prompt(std::vector<std::int32_t> tokens, std::int64_t image_tokens = 0, std::int64_t image_offset = 1) {
    prompt p;
    p.tokens = std::move(tokens);
    p.image_tokens = image_tokens;
    p.image_offset = image_offset;
    p.image_seed = 5;
    return p;
}

double sequence_log_prob(cpu_executor& exec, const prompt& p, const std::vector<std::int32_t>& seq) {
    const auto rows = exec.teacher_forced_logits(p, seq);
    double total = 0;
    for (std::size_t i = 0; i < seq.size(); ++i) total += log_softmax(rows[i])[seq[i]];
    return total;
}

std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const input_error& e) {
        return e.what();
    }
    return "(no input_error)";
}

}  // namespace

TEST_CASE("load_cpu_model reads every tensor and reports missing or mis-shaped ones", "[engine][load]") {
    const model_config c = tiny_config(16, 24, 2, 4, 2, 20);
    memory_source source = random_checkpoint(c, 1);
    const cpu_model model = load_cpu_model(c, source, fp16(), cell_spec{});
    REQUIRE(model.layers.size() == 2);
    CHECK(model.embed.size() == 20 * 16);
    CHECK(model.lm_head->out_features() == 20);
    CHECK(model.layers[1].k_proj->out_features() == 8);
    CHECK(model.layers[0].o_proj->format_name() == "f16");
    CHECK(model.weight_bytes() == static_cast<std::uint64_t>(c.total_params()) * 2);

    SECTION("missing linear") {
        source.erase("model.layers.1.mlp.up_proj.weight");
        const std::string what = message_of([&] { load_cpu_model(c, source, fp16(), cell_spec{}); });
        CHECK_THAT(what, Catch::Contains("model.layers.1.mlp.up_proj.weight") && Catch::Contains("missing") &&
                             Catch::Contains("memory:test-checkpoint"));
    }
    SECTION("mis-shaped linear") {
        source.add("model.layers.0.self_attn.k_proj.weight", test::random_f16(1, "x", {16, 16}, 0.1f, 0.0f));
        const std::string what = message_of([&] { load_cpu_model(c, source, fp16(), cell_spec{}); });
        CHECK_THAT(what, Catch::Contains("model.layers.0.self_attn.k_proj.weight") && Catch::Contains("[16, 16]") &&
                             Catch::Contains("[8, 16]"));
    }
    SECTION("linear of the wrong dtype") {
        const std::vector<float> ones(20 * 16, 1.0f);
        source.add("lm_head.weight", make_f32_tensor(ones, {20, 16}));
        const std::string what = message_of([&] { load_cpu_model(c, source, fp16(), cell_spec{}); });
        CHECK_THAT(what, Catch::Contains("lm_head.weight") && Catch::Contains("F32") && Catch::Contains("F16"));
    }
    SECTION("missing embedding, mis-shaped norm") {
        source.erase("model.embed_tokens.weight");
        CHECK_THAT(message_of([&] { load_cpu_model(c, source, fp16(), cell_spec{}); }),
                   Catch::Contains("model.embed_tokens.weight"));
        source = random_checkpoint(c, 1);
        source.add("model.layers.1.post_attention_layernorm.weight", test::random_f16(1, "n", {15}, 0.1f, 1.0f));
        CHECK_THAT(message_of([&] { load_cpu_model(c, source, fp16(), cell_spec{}); }),
                   Catch::Contains("model.layers.1.post_attention_layernorm.weight") && Catch::Contains("[15]"));
    }
    SECTION("impossible shapes") {
        model_config bad = c;
        bad.num_kv_heads = 3;
        CHECK_THROWS_AS(load_cpu_model(bad, source, fp16(), cell_spec{}), input_error);
        bad = c;
        bad.num_heads = 5;
        CHECK_THROWS_AS(load_cpu_model(bad, source, fp16(), cell_spec{}), input_error);
    }
}

TEST_CASE("a hand-computed 1-layer model: H=8, 2 heads of 4, 1 kv head, vocab 6, 2 tokens", "[engine][golden]") {
    const std::int64_t H = 8, I = 6, V = 6, d = 4;
    const model_config c = tiny_config(H, I, 1, 2, 1, V);
    const memory_source source = random_checkpoint(c, 42);
    cpu_executor exec(load_cpu_model(c, source, fp16(), cell_spec{}));
    const std::vector<std::int32_t> tokens{1, 4};
    const auto logits = exec.full_logits(text_prompt(tokens), {}, 2);

    // Independent plain-double implementation, rounding to fp16 where the contract says.
    auto w = [&](const std::string& name) { return to_float_vector(source.read(name)); };
    auto r16 = [](double x) { return static_cast<double>(round_to_half(static_cast<float>(x))); };
    const auto E = w("model.embed_tokens.weight");
    const auto Wq = w("model.layers.0.self_attn.q_proj.weight"), Wk = w("model.layers.0.self_attn.k_proj.weight"),
               Wv = w("model.layers.0.self_attn.v_proj.weight"), Wo = w("model.layers.0.self_attn.o_proj.weight"),
               Wg = w("model.layers.0.mlp.gate_proj.weight"), Wu = w("model.layers.0.mlp.up_proj.weight"),
               Wd = w("model.layers.0.mlp.down_proj.weight"), Wlm = w("lm_head.weight"),
               n_in = w("model.layers.0.input_layernorm.weight"),
               n_post = w("model.layers.0.post_attention_layernorm.weight"), n_final = w("model.norm.weight");
    using vec = std::vector<double>;
    auto rms = [&](const vec& x, const std::vector<float>& g) {
        double ss = 0;
        for (double e : x) ss += e * e;
        const double inv = 1 / std::sqrt(ss / x.size() + 1e-5);
        vec y(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) y[i] = r16(r16(x[i] * inv) * g[i]);
        return y;
    };
    auto matvec = [&](const std::vector<float>& W, const vec& x, std::size_t out) {
        vec y(out, 0.0);
        for (std::size_t o = 0; o < out; ++o) {
            double acc = 0;
            for (std::size_t i = 0; i < x.size(); ++i) acc += W[o * x.size() + i] * x[i];
            y[o] = r16(acc);
        }
        return y;
    };
    // Rotate-half RoPE on one head of 4 at position t: pairs (0, 2) and (1, 3), frequencies 1 and 10000^-1/2.
    auto rope = [&](vec& z, std::size_t head, int t) {
        for (std::size_t i = 0; i < 2; ++i) {
            const double angle = t * std::pow(10000.0, -2.0 * i / 4);
            const double a = z[head * d + i], b = z[head * d + i + 2];
            z[head * d + i] = r16(a * std::cos(angle) - b * std::sin(angle));
            z[head * d + i + 2] = r16(b * std::cos(angle) + a * std::sin(angle));
        }
    };
    std::vector<vec> h(2, vec(H)), q(2), k(2), v(2);
    for (int t = 0; t < 2; ++t) {
        for (int j = 0; j < H; ++j) h[t][j] = E[tokens[t] * H + j];
        const vec x = rms(h[t], n_in);
        q[t] = matvec(Wq, x, 8);
        k[t] = matvec(Wk, x, 4);  // one kv head serves both query heads
        v[t] = matvec(Wv, x, 4);
        rope(q[t], 0, t);
        rope(q[t], 1, t);
        rope(k[t], 0, t);
    }
    std::vector<double> expected;
    for (int t = 0; t < 2; ++t) {
        vec attn(8);
        for (int head = 0; head < 2; ++head) {
            vec s;
            for (int p = 0; p <= t; ++p) {
                double dot = 0;
                for (int i = 0; i < d; ++i) dot += q[t][head * d + i] * k[p][i];
                s.push_back(dot / 2.0);  // sqrt(head_dim) = 2
            }
            double m = s[0], z = 0;
            for (double e : s) m = std::max(m, e);
            for (double& e : s) z += (e = std::exp(e - m));
            for (int i = 0; i < d; ++i) {
                double acc = 0;
                for (int p = 0; p <= t; ++p) acc += s[p] / z * v[p][i];
                attn[head * d + i] = r16(acc);
            }
        }
        const vec o = matvec(Wo, attn, H);
        for (int j = 0; j < H; ++j) h[t][j] = r16(h[t][j] + o[j]);
        const vec x = rms(h[t], n_post);
        const vec g = matvec(Wg, x, I), u = matvec(Wu, x, I);
        vec act(I);
        for (int j = 0; j < I; ++j) act[j] = r16(g[j] / (1 + std::exp(-g[j])) * u[j]);
        const vec down = matvec(Wd, act, H);
        for (int j = 0; j < H; ++j) h[t][j] = r16(h[t][j] + down[j]);
        const vec lm = matvec(Wlm, rms(h[t], n_final), V);
        expected.insert(expected.end(), lm.begin(), lm.end());
    }
    REQUIRE(logits.size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
        INFO("logit " << i);
        CHECK(logits[i] == expected[i]);  // same rounding points: equal unless a value sits on an fp16 tie
    }
    // The two positions differ (the second saw both tokens), and logits are fp16 values.
    CHECK(std::vector<float>(logits.begin(), logits.begin() + V) != std::vector<float>(logits.begin() + V, logits.end()));
    for (float l : logits) CHECK(l == round_to_half(l));
}

TEST_CASE("KV-cache decode equals full recomputation", "[engine][kv]") {
    const auto [kv_heads, label] = GENERATE(table<std::int64_t, const char*>({{4, "MHA"}, {2, "GQA"}, {1, "MQA"}}));
    INFO(label);
    const model_config c = tiny_config(32, 48, 2, 4, kv_heads, 40);
    cpu_executor exec(load_random_model(c, 3));
    const prompt p = text_prompt({1, 7, 9, 12, 30, 5}, 4, 3);

    cpu_kv_cache cache = make_kv_cache(exec.model(), 1, p.length() + 6);
    std::vector<float> logits = exec.prefill(p, cache);
    CHECK(logits == exec.full_logits(p, {}, 1));
    std::vector<std::int32_t> fed;
    for (int step = 0; step < 5; ++step) {
        const std::int32_t token = argmax_token(logits);
        fed.push_back(token);
        logits = exec.decode(std::vector<std::int32_t>{token}, cache);
        const std::vector<float> full = exec.full_logits(p, fed, 1);
        REQUIRE(logits.size() == full.size());
        CHECK(logits == full);  // bit-equal: every row is computed in the same order either way
    }

    // generate() returns those tokens, and teacher forcing on them reproduces each step's argmax.
    generation_config g;
    g.max_new_tokens = 6;
    const generation_output out = exec.generate(p, g);
    CHECK(std::equal(fed.begin(), fed.end(), out.tokens.begin()));
    const auto rows = exec.teacher_forced_logits(p, out.tokens);
    REQUIRE(rows.size() == out.tokens.size());
    for (std::size_t i = 0; i < rows.size(); ++i) CHECK(argmax_token(rows[i]) == out.tokens[i]);
    CHECK(out.beam_scores[0] == Approx(sequence_log_prob(exec, p, out.tokens)).epsilon(1e-12));
}

TEST_CASE("decode over several sequences equals decoding each alone", "[engine][kv]") {
    const model_config c = tiny_config(32, 48, 2, 4, 2, 40);
    cpu_executor exec(load_random_model(c, 4));
    const prompt p = text_prompt({1, 20, 21, 22});
    cpu_kv_cache cache = make_kv_cache(exec.model(), 1, p.length() + 3);
    exec.prefill(p, cache);
    cache.reorder(std::vector<std::int32_t>{0, 0, 0});
    const std::vector<std::int32_t> tokens{5, 17, 5};
    const std::vector<float> batched = exec.decode(tokens, cache);
    for (int s = 0; s < 3; ++s) {
        const std::vector<float> alone = exec.full_logits(p, std::vector<std::int32_t>{tokens[s]}, 1);
        CHECK(std::equal(alone.begin(), alone.end(), batched.begin() + s * 40));
    }
}

TEST_CASE("beam width 1 is greedy; beams are distinct and sorted", "[engine][beam]") {
    const model_config c = tiny_config(32, 48, 2, 4, 2, 40);
    cpu_executor exec(load_random_model(c, 5));
    const prompt p = text_prompt({1, 3, 4, 5, 6}, 2, 2);
    generation_config greedy;
    greedy.max_new_tokens = 7;
    generation_config beam1 = greedy;
    beam1.mode = decode_mode::beam;
    const auto a = exec.generate(p, greedy);
    const auto b = exec.generate(p, beam1);
    CHECK(a.tokens == b.tokens);
    CHECK(a.tokens.size() == 7);
    CHECK(exec.last_timing().step_ms.size() == 6);

    generation_config beam4 = greedy;
    beam4.mode = decode_mode::beam;
    beam4.beam_width = 4;
    const auto r = exec.generate(p, beam4);
    REQUIRE(r.beams.size() == 4);
    CHECK(r.tokens == r.beams[0]);
    CHECK(std::set<std::vector<std::int32_t>>(r.beams.begin(), r.beams.end()).size() == 4);
    for (std::size_t j = 0; j < 4; ++j) {
        CHECK(r.beams[j].size() == 7);
        if (j > 0) CHECK(r.beam_scores[j - 1] >= r.beam_scores[j]);
        CHECK(r.beam_scores[j] == Approx(sequence_log_prob(exec, p, r.beams[j])).epsilon(1e-12));
    }
    CHECK(r.beam_scores[0] >= a.beam_scores[0] - 1e-12);  // here beam search finds at least the greedy score

    beam4.mode = decode_mode::greedy;
    CHECK_THROWS_AS(exec.generate(p, beam4), qbench::error);
}

TEST_CASE("beam search against brute force over every sequence of a 6-token vocabulary", "[engine][beam]") {
    const model_config c = tiny_config(8, 16, 1, 2, 1, 6);
    const prompt p = text_prompt({1, 4, 2}, 2, 1);
    const std::int64_t V = 6;

    SECTION("beam width V over 2 steps is exhaustive: its beams are the 6 best of all 36 sequences") {
        cpu_executor exec(load_random_model(c, 11, 3.0f));
        std::vector<std::pair<double, std::vector<std::int32_t>>> all;
        for (std::int32_t a = 0; a < V; ++a)
            for (std::int32_t b = 0; b < V; ++b) {
                const std::vector<std::int32_t> seq{a, b};
                all.emplace_back(sequence_log_prob(exec, p, seq), seq);
            }
        std::stable_sort(all.begin(), all.end(), [](const auto& x, const auto& y) { return x.first > y.first; });
        generation_config g;
        g.mode = decode_mode::beam;
        g.beam_width = V;
        g.max_new_tokens = 2;
        const auto out = exec.generate(p, g);
        for (std::int64_t j = 0; j < V; ++j) {
            CHECK(out.beams[j] == all[j].second);
            CHECK(out.beam_scores[j] == Approx(all[j].first).epsilon(1e-12));
        }
    }

    SECTION("a model where beam 2 beats greedy: every step checked against brute-force prefix scores") {
        const int steps = 5;
        // Find a seed whose greedy and beam-2 answers differ, with beam 2 scoring higher.
        std::optional<cpu_executor> exec;
        generation_config greedy;
        greedy.max_new_tokens = steps;
        generation_config beam = greedy;
        beam.mode = decode_mode::beam;
        beam.beam_width = 2;
        generation_output g_out, b_out;
        for (std::uint64_t seed = 1; seed < 200 && !exec; ++seed) {
            cpu_executor candidate(load_random_model(c, seed, 3.0f));
            g_out = candidate.generate(p, greedy);
            b_out = candidate.generate(p, beam);
            if (g_out.tokens != b_out.tokens && b_out.beam_scores[0] > g_out.beam_scores[0] + 1e-6)
                exec.emplace(load_random_model(c, seed, 3.0f));
        }
        REQUIRE(exec.has_value());

        // Brute force: the log-probability of a whole prefix by teacher forcing (no KV cache, no reorder).
        std::map<std::vector<std::int32_t>, double> memo;
        auto score = [&](const std::vector<std::int32_t>& seq) {
            auto it = memo.find(seq);
            return it != memo.end() ? it->second : (memo[seq] = sequence_log_prob(*exec, p, seq));
        };
        auto extended = [](std::vector<std::int32_t> seq, std::int32_t v) {
            seq.push_back(v);
            return seq;
        };
        // Greedy = the best one-token extension at every step.
        std::vector<std::int32_t> greedy_seq;
        for (int len = 0; len < steps; ++len) {
            std::int32_t best = 0;
            for (std::int32_t v = 1; v < V; ++v)
                if (score(extended(greedy_seq, v)) > score(extended(greedy_seq, best))) best = v;
            greedy_seq.push_back(best);
        }
        CHECK(g_out.tokens == greedy_seq);
        // Beam 2: keep the two best extensions of the kept prefixes (ties by beam, then token).
        std::vector<std::vector<std::int32_t>> beams{{}};
        for (int len = 0; len < steps; ++len) {
            std::vector<std::vector<std::int32_t>> candidates;
            for (const auto& b : beams)
                for (std::int32_t v = 0; v < V; ++v) candidates.push_back(extended(b, v));
            std::stable_sort(candidates.begin(), candidates.end(),
                             [&](const auto& x, const auto& y) { return score(x) > score(y); });
            beams.assign(candidates.begin(), candidates.begin() + 2);
        }
        CHECK(b_out.beams == beams);
        CHECK(b_out.beam_scores[0] == Approx(score(beams[0])).epsilon(1e-12));
        CHECK(b_out.beam_scores[1] == Approx(score(beams[1])).epsilon(1e-12));
        CHECK(score(b_out.tokens) > score(g_out.tokens));
    }
}

TEST_CASE("sampling generation is deterministic per seed and respects top_k", "[engine][sample]") {
    const model_config c = tiny_config(32, 48, 2, 4, 2, 40);
    cpu_executor exec(load_random_model(c, 6));
    const prompt p = text_prompt({1, 8, 9});
    generation_config g;
    g.mode = decode_mode::sample;
    g.max_new_tokens = 12;
    g.seed = 21;
    const auto a = exec.generate(p, g);
    CHECK(exec.generate(p, g).tokens == a.tokens);
    bool some_differ = false;
    for (std::uint64_t seed = 22; seed < 26; ++seed) {
        g.seed = seed;
        some_differ = some_differ || exec.generate(p, g).tokens != a.tokens;
    }
    CHECK(some_differ);

    g.top_k = 2;
    const auto k2 = exec.generate(p, g);
    const auto rows = exec.teacher_forced_logits(p, k2.tokens);
    for (std::size_t i = 0; i < rows.size(); ++i) {
        // The chosen token is one of the two largest logits of its step.
        std::vector<float> sorted = rows[i];
        std::sort(sorted.begin(), sorted.end(), std::greater<>());
        CHECK(rows[i][k2.tokens[i]] >= sorted[1]);
    }
    g.top_k = 1;
    generation_config greedy;
    greedy.max_new_tokens = 12;
    CHECK(exec.generate(p, g).tokens == exec.generate(p, greedy).tokens);
}

TEST_CASE("cpu_layer_forward: sequences back to back are independent; the observer sees every linear input",
          "[engine][calibration]") {
    const model_config c = tiny_config(32, 48, 1, 4, 2, 40);
    const cpu_model model = load_random_model(c, 8);
    const std::int64_t T = 5, H = 32;
    std::vector<float> both = embed_tokens(model, std::vector<std::int32_t>{1, 2, 3, 4, 5, 1, 9, 8, 7, 6});
    std::vector<float> first(both.begin(), both.begin() + T * H), second(both.begin() + T * H, both.end());

    std::vector<std::pair<linear_kind, std::int64_t>> calls;
    const linear_observer observer = [&](std::int64_t layer, linear_kind kind, const float* x, std::int64_t rows,
                                         std::int64_t in) {
        CHECK(layer == 0);
        CHECK(in == linear_in_features(c, kind));
        CHECK(std::isfinite(x[rows * in - 1]));
        calls.emplace_back(kind, rows);
    };
    cpu_layer_forward(model, 0, both, T, &observer);
    cpu_layer_forward(model, 0, first, T, nullptr);
    cpu_layer_forward(model, 0, second, T, nullptr);
    CHECK(std::equal(first.begin(), first.end(), both.begin()));
    CHECK(std::equal(second.begin(), second.end(), both.begin() + T * H));

    using k = linear_kind;
    const std::vector<k> order{k::q_proj, k::k_proj, k::v_proj, k::o_proj, k::gate_proj, k::up_proj, k::down_proj};
    REQUIRE(calls.size() == order.size());
    for (std::size_t i = 0; i < order.size(); ++i) {
        CHECK(calls[i].first == order[i]);
        CHECK(calls[i].second == 2 * T);
    }
    CHECK_THROWS_AS(cpu_layer_forward(model, 0, first, 3, nullptr), qbench::error);
}

TEST_CASE("make_prompt: MiniGPT-4 layout, deterministic text ids", "[engine][prompt]") {
    model_config c = tiny_config(32, 48, 1, 4, 2, 40);
    c.minigpt4_image_tokens = 32;
    generation_options o;
    o.prompt_tokens = 20;
    const prompt p = make_prompt(c, o, 9);
    REQUIRE(p.tokens.size() == 20);
    CHECK(p.tokens[0] == c.bos_token_id);
    for (std::size_t i = 1; i < p.tokens.size(); ++i) CHECK((p.tokens[i] >= 3 && p.tokens[i] < 40));
    CHECK(p.image_tokens == 32);
    CHECK(p.image_offset == 15);
    CHECK(p.length() == 52);
    CHECK(make_prompt(c, o, 9).tokens == p.tokens);
    CHECK(make_prompt(c, o, 10).tokens != p.tokens);
    o.image_tokens = 0;
    CHECK(make_prompt(c, o, 9).image_tokens == 0);

    const auto image = image_embeddings(p, 32);
    REQUIRE(image.size() == 32u * 32u);
    CHECK(image[33] == round_to_half(normal01(stream_key(9, hash_string("image")), 33)));

    // The image rows sit between tokens[0, offset) and tokens[offset, end).
    const cpu_model model = load_random_model(c, 2);
    const auto rows = embed_prompt(model, p);
    REQUIRE(rows.size() == 52u * 32u);
    CHECK(std::equal(image.begin(), image.end(), rows.begin() + 15 * 32));
    CHECK(std::equal(rows.begin() + 47 * 32, rows.begin() + 48 * 32, model.embed.begin() + p.tokens[15] * 32));
}

TEST_CASE("the tiny model generates quickly and deterministically", "[engine][tiny]") {
    // models-and-instances.md §1.4: H=256, I=688, L=2, 8 heads, 4 kv heads, vocab 512.
    model_config c = tiny_config(256, 688, 2, 8, 4, 512);
    c.minigpt4_image_tokens = 32;
    cpu_executor exec(load_random_model(c, 12));
    generation_options o;
    o.prompt_tokens = 18;
    const prompt p = make_prompt(c, o, 1);
    REQUIRE(p.length() == 50);
    generation_config g;
    g.max_new_tokens = 8;
    const auto start = std::chrono::steady_clock::now();
    const auto a = exec.generate(p, g);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    WARN("tiny model: 50-token prompt + 8 greedy tokens in " << ms << " ms (prefill "
                                                                << exec.last_timing().prefill_ms << " ms)");
    CHECK(a.tokens.size() == 8);
    CHECK(exec.last_timing().step_ms.size() == 7);
    CHECK(exec.last_timing().prefill_ms > 0);
    CHECK(exec.generate(p, g).tokens == a.tokens);
    // Generated tokens are not all the same (the model is not degenerate).
    CHECK(std::set<std::int32_t>(a.tokens.begin(), a.tokens.end()).size() > 1);
}
