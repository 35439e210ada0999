// The decode rules: argmax ties, sampling (determinism, top-k, top-p, the inverse-CDF draw), beam steps.
#include "qbench/common/counter_rng.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/engine/decoding.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <set>
#include <vector>

using namespace qbench;

TEST_CASE("argmax_token: largest logit, ties to the lowest id", "[engine][decode]") {
    CHECK(argmax_token(std::vector<float>{1.0f, 3.0f, 3.0f, 2.0f}) == 1);
    CHECK(argmax_token(std::vector<float>{-5.0f}) == 0);
    CHECK(argmax_token(std::vector<float>{-2.0f, -1.0f, -3.0f}) == 1);
    CHECK(argmax_token(std::vector<float>{NAN, 0.5f, 0.25f}) == 1);
}

TEST_CASE("log_softmax in double", "[engine][decode]") {
    const auto lp = log_softmax(std::vector<float>{0.0f, std::log(3.0f)});
    CHECK(lp[0] == Approx(std::log(0.25)).epsilon(1e-7));
    CHECK(lp[1] == Approx(std::log(0.75)).epsilon(1e-7));
}

TEST_CASE("sample_token: the draw is the contract's inverse CDF", "[engine][sample]") {
    generation_config g;
    g.mode = decode_mode::sample;
    g.seed = 1234;
    const std::vector<float> flat(4, 0.5f);  // uniform: token = floor(4u), ties ordered by id
    for (std::int64_t step = 0; step < 50; ++step)
        for (std::int64_t seq = 0; seq < 3; ++seq) {
            const double u = uniform01(stream_key(g.seed, static_cast<std::uint64_t>(step)), static_cast<std::uint64_t>(seq));
            CHECK(sample_token(flat, g, step, seq) == static_cast<std::int32_t>(std::floor(u * 4)));
        }
}

TEST_CASE("sample_token: deterministic per seed, follows the distribution", "[engine][sample]") {
    // probabilities 0.5, 0.3, 0.15, 0.05 placed at ids 2, 0, 3, 1
    const std::vector<float> logits{std::log(0.3f), std::log(0.05f), std::log(0.5f), std::log(0.15f)};
    generation_config g;
    g.mode = decode_mode::sample;
    g.seed = 7;
    const int n = 4000;
    std::vector<int> counts(4, 0);
    std::vector<std::int32_t> first_run;
    for (int step = 0; step < n; ++step) {
        const std::int32_t t = sample_token(logits, g, step, 0);
        ++counts[t];
        first_run.push_back(t);
    }
    CHECK(counts[2] / double(n) == Approx(0.5).margin(0.03));
    CHECK(counts[0] / double(n) == Approx(0.3).margin(0.03));
    CHECK(counts[3] / double(n) == Approx(0.15).margin(0.03));
    CHECK(counts[1] / double(n) == Approx(0.05).margin(0.02));

    std::vector<std::int32_t> again, other_seed;
    generation_config g2 = g;
    g2.seed = 8;
    for (int step = 0; step < n; ++step) {
        again.push_back(sample_token(logits, g, step, 0));
        other_seed.push_back(sample_token(logits, g2, step, 0));
    }
    CHECK(again == first_run);
    CHECK(other_seed != first_run);
}

TEST_CASE("sample_token: top_k and top_p filters", "[engine][sample]") {
    const std::vector<float> logits{std::log(0.3f), std::log(0.05f), std::log(0.5f), std::log(0.15f)};
    generation_config g;
    g.mode = decode_mode::sample;
    g.seed = 99;

    SECTION("top_k = 1 is argmax") {
        g.top_k = 1;
        for (int step = 0; step < 200; ++step) CHECK(sample_token(logits, g, step, 0) == 2);
    }
    SECTION("top_k = 2 keeps ids 2 and 0 with renormalized odds 5:3") {
        g.top_k = 2;
        int twos = 0;
        for (int step = 0; step < 4000; ++step) {
            const auto t = sample_token(logits, g, step, 0);
            REQUIRE((t == 2 || t == 0));
            twos += t == 2;
        }
        CHECK(twos / 4000.0 == Approx(0.625).margin(0.03));
    }
    SECTION("top_k ties keep the lower ids") {
        g.top_k = 2;
        const std::vector<float> tied{1.0f, 2.0f, 2.0f, 2.0f};
        for (int step = 0; step < 300; ++step) {
            const auto t = sample_token(tied, g, step, 0);
            CHECK((t == 1 || t == 2));
        }
    }
    SECTION("top_p = 0.75 keeps the smallest prefix reaching 0.75: ids 2 and 0") {
        g.top_p = 0.75;
        std::set<std::int32_t> seen;
        for (int step = 0; step < 2000; ++step) seen.insert(sample_token(logits, g, step, 0));
        CHECK(seen == std::set<std::int32_t>{0, 2});
    }
    SECTION("top_p = 0.5 keeps only the top token (mass 0.5 reaches it)") {
        g.top_p = 0.5;
        for (int step = 0; step < 300; ++step) CHECK(sample_token(logits, g, step, 0) == 2);
        // Exactly representable: two tokens of probability 0.5 each; the first (lower id) alone reaches 0.5.
        const std::vector<float> halves{0.0f, 0.0f};
        for (int step = 0; step < 300; ++step) CHECK(sample_token(halves, g, step, 0) == 0);
    }
    SECTION("top_p after top_k: probabilities renormalized over the top-k first") {
        g.top_k = 3;  // 0.5, 0.3, 0.15 -> 0.526, 0.316, 0.158
        g.top_p = 0.84;  // 0.526 + 0.316 = 0.842 >= 0.84
        std::set<std::int32_t> seen;
        for (int step = 0; step < 2000; ++step) seen.insert(sample_token(logits, g, step, 0));
        CHECK(seen == std::set<std::int32_t>{0, 2});
    }
    SECTION("a high temperature flattens the distribution") {
        g.temperature = 1000.0;
        std::vector<int> counts(4, 0);
        for (int step = 0; step < 4000; ++step) ++counts[sample_token(logits, g, step, 0)];
        for (int c : counts) CHECK(c / 4000.0 == Approx(0.25).margin(0.03));
    }
    SECTION("temperature 0 is rejected") {
        g.temperature = 0.0;
        CHECK_THROWS_AS(sample_token(logits, g, 0, 0), qbench::error);
    }
}

TEST_CASE("beam_step: top B over B x V, ties by flat index", "[engine][beam]") {
    SECTION("initial scores expand beam 0 only") {
        const std::vector<float> logits{0.0f, 1.0f, 2.0f, /* beam 1 */ 0.0f, 1.0f, 2.0f};
        const auto choice = beam_step(logits, 3, initial_beam_scores(2));
        CHECK(choice.parents == std::vector<std::int32_t>{0, 0});
        CHECK(choice.tokens == std::vector<std::int32_t>{2, 1});
        const double lse = std::log(1 + std::exp(1.0) + std::exp(2.0));
        CHECK(choice.scores[0] == Approx(2.0 - lse).epsilon(1e-12));
        CHECK(choice.scores[1] == Approx(1.0 - lse).epsilon(1e-12));
    }
    SECTION("ties go to the lower b * V + v") {
        const std::vector<float> logits(6, 0.0f);
        const std::vector<double> scores{-1.0, -1.0};
        const auto choice = beam_step(logits, 3, scores);
        CHECK(choice.parents == std::vector<std::int32_t>{0, 0});
        CHECK(choice.tokens == std::vector<std::int32_t>{0, 1});
    }
    SECTION("a strong second beam takes both slots") {
        const std::vector<float> logits{0.0f, 0.0f, 0.0f, /* beam 1 */ 5.0f, 5.0f, -5.0f};
        const std::vector<double> scores{-3.0, -0.5};
        const auto choice = beam_step(logits, 3, scores);
        CHECK(choice.parents == std::vector<std::int32_t>{1, 1});
        CHECK(choice.tokens == std::vector<std::int32_t>{0, 1});
        CHECK(choice.scores[0] == choice.scores[1]);
    }
    CHECK_THROWS_AS(beam_step(std::vector<float>(5, 0.0f), 3, std::vector<double>{0.0, 0.0}), qbench::error);
}
