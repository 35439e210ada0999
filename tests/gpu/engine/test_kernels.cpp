// Every kernel of the CUDA executor against the CPU reference (engine/reference_ops.hpp, engine/decoding.hpp) on
// fresh random inputs, outputs poisoned with NaN before each run.
#include "gpu_test_util.hpp"

#include "cuda/attention.cuh"
#include "cuda/embedding.cuh"
#include "cuda/rms_norm.cuh"
#include "cuda/rope.cuh"
#include "cuda/select.cuh"
#include "cuda/swiglu.cuh"

#include "qbench/engine/decoding.hpp"
#include "qbench/engine/prompt.hpp"
#include "qbench/engine/reference_ops.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>

using namespace qbench;
using namespace qbench::test;

namespace {

launch_options plain() { return {context().stream(), false}; }

// Attention in fp32 against the reference in double: outputs are averages of values, some near zero, so the bound
// is relative to the output's scale rather than per element in ulps.
void check_attention(const std::vector<float>& got, const std::vector<float>& ref) {
    double max_ref = 0, max_err = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        max_ref = std::max(max_ref, static_cast<double>(std::fabs(ref[i])));
        max_err = std::max(max_err, std::fabs(static_cast<double>(got[i]) - ref[i]));
    }
    CHECK(rel_l2(got, ref) < 1e-3);
    CHECK(max_err <= 2e-3 * max_ref);
    CHECK(compare_ulps(got, ref).exact_fraction >= 0.9);
}
launch_options with_pdl() { return {context().stream(), context().pdl_enabled()}; }

}  // namespace

TEST_CASE("rms_norm: residual add and norm equal rms_norm_ref", "[gpu][kernels]") {
    for (const bool pdl : {false, true}) {
        for (const std::int64_t hidden : {256, 4096, 5120, 100}) {
            for (const bool with_delta : {false, true}) {
                const std::uint64_t seed = fresh_seed();
                CAPTURE(hidden, with_delta, pdl, seed);
                const std::int64_t rows = 5;
                std::vector<float> x = random_halves(rows * hidden, 1.5f, seed);
                const std::vector<float> delta = random_halves(rows * hidden, 0.7f, seed + 1);
                std::vector<float> w = random_halves(hidden, 0.3f, seed + 2);
                for (float& v : w) v = round_to_half(1.0f + v);
                w[3] = 8.5f;  // an outlier channel, as the synthetic norms have
                device_buffer dx = to_device_f16(x), dd = to_device_f16(delta), dw = to_device_f16(w);
                device_buffer out = poisoned(rows * hidden);
                launch_rms_norm(dx.as<__half>(), with_delta ? dd.as<__half>() : nullptr, dw.as<__half>(), 1e-6, rows,
                                hidden, out.as<__half>(), pdl ? with_pdl() : plain());
                const std::vector<float> gx = from_device_f16(dx.get(), x.size());
                const std::vector<float> gy = from_device_f16(out.get(), x.size());
                if (with_delta) residual_add_ref(x.data(), delta.data(), rows * hidden);
                std::vector<float> y(x.size());
                rms_norm_ref(x.data(), rows, hidden, w.data(), 1e-6, y.data());
                CHECK(compare_ulps(gx, x).max_ulps == 0);  // the residual add is one fp32 add and one rounding
                const ulp_summary s = compare_ulps(gy, y);
                CHECK(s.max_ulps <= 1);
                CHECK(s.exact_fraction >= 0.999);
            }
        }
    }
}

TEST_CASE("swiglu: equals swiglu_ref", "[gpu][kernels]") {
    for (const std::int64_t n : {11008 * 3, 689}) {  // paired and odd (scalar) paths
        const std::uint64_t seed = fresh_seed();
        CAPTURE(n, seed);
        const std::vector<float> gate = random_halves(n, 3.0f, seed), up = random_halves(n, 2.0f, seed + 1);
        device_buffer dg = to_device_f16(gate), du = to_device_f16(up);
        device_buffer out = poisoned(n);
        launch_swiglu(dg.as<__half>(), du.as<__half>(), n, out.as<__half>(), with_pdl());
        const std::vector<float> got = from_device_f16(out.get(), n);
        std::vector<float> ref(n);
        swiglu_ref(gate.data(), up.data(), n, ref.data());
        const ulp_summary s = compare_ulps(got, ref);
        CHECK(s.max_ulps <= 1);
        CHECK(s.exact_fraction >= 0.9999);
    }
}

TEST_CASE("embedding: prompt rows and image rows equal the CPU layout", "[gpu][kernels]") {
    const std::uint64_t seed = fresh_seed();
    CAPTURE(seed);
    const std::int64_t V = 300, H = 96;
    const std::vector<float> table = random_halves(V * H, 1.0f, seed);
    prompt p;
    for (int i = 0; i < 11; ++i) p.tokens.push_back(static_cast<std::int32_t>(random_bits(seed, i) % V));
    p.image_offset = 7;
    p.image_tokens = 5;
    p.image_seed = seed + 3;
    device_buffer dt = to_device_f16(table), dtok = to_device(p.tokens);
    const std::int64_t rows = p.length();
    device_buffer out = poisoned(rows * H);
    launch_embed_prompt(dt.as<__half>(), V, H, dtok.as<std::int32_t>(), rows, p.image_offset, p.image_tokens,
                        stream_key(p.image_seed, hash_string("image")), out.as<__half>(), with_pdl());
    const std::vector<float> got = from_device_f16(out.get(), rows * H);
    const std::vector<float> image = image_embeddings(p, H);
    std::vector<float> ref;
    for (std::int64_t r = 0; r < rows; ++r) {
        if (r >= p.image_offset && r < p.image_offset + p.image_tokens) {
            ref.insert(ref.end(), image.begin() + (r - p.image_offset) * H, image.begin() + (r - p.image_offset + 1) * H);
        } else {
            const std::int64_t t = p.tokens[r < p.image_offset ? r : r - p.image_tokens];
            ref.insert(ref.end(), table.begin() + t * H, table.begin() + (t + 1) * H);
        }
    }
    CHECK(compare_ulps(got, ref).max_ulps == 0);

    device_buffer out2 = poisoned(3 * H);
    const std::vector<std::int32_t> next{5, 299, 0};
    device_buffer dnext = to_device(next);
    launch_embed_tokens(dt.as<__half>(), V, H, dnext.as<std::int32_t>(), 3, out2.as<__half>(), with_pdl());
    const std::vector<float> got2 = from_device_f16(out2.get(), 3 * H);
    for (int b = 0; b < 3; ++b)
        for (std::int64_t h = 0; h < H; ++h) CHECK(got2[b * H + h] == table[next[b] * H + h]);
}

TEST_CASE("rope + prefill attention: equal rope_ref and attention_ref", "[gpu][kernels]") {
    struct shape_case {
        int heads, kv_heads, head_dim;
        std::int64_t rows;
    };
    for (const shape_case sc : {shape_case{8, 4, 32, 37}, shape_case{4, 4, 128, 70}, shape_case{6, 2, 64, 5}}) {
        const std::uint64_t seed = fresh_seed();
        CAPTURE(sc.heads, sc.kv_heads, sc.head_dim, sc.rows, seed);
        const double theta = 10000.0;
        const std::int64_t P = sc.rows, d = sc.head_dim, qw = sc.heads * d, kw = sc.kv_heads * d;
        std::vector<float> q = random_halves(P * qw, 1.0f, seed), k = random_halves(P * kw, 1.0f, seed + 1),
                           v = random_halves(P * kw, 1.0f, seed + 2);
        const std::int64_t max_len = P + 9;
        device_buffer dq = to_device_f16(q), dk = to_device_f16(k), dv = to_device_f16(v);
        const std::vector<float> inv_freq = rope_inv_freq(d, theta);
        device_buffer dfreq = to_device(inv_freq);
        device_buffer kc = poisoned(max_len * kw), vc = poisoned(max_len * kw), out = poisoned(P * qw);
        launch_rope_append(dq.as<__half>(), dk.as<__half>(), dv.as<__half>(), dfreq.as<float>(), P, 0, sc.heads,
                           sc.kv_heads, sc.head_dim, kc.as<__half>(), vc.as<__half>(), with_pdl());
        const attention_shape shape{sc.heads, sc.kv_heads, sc.head_dim, max_len,
                                    static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)))};
        launch_attention_prefill(dq.as<__half>(), kc.as<__half>(), vc.as<__half>(), P, 0, shape, out.as<__half>(),
                                 with_pdl());
        std::vector<std::int64_t> pos(P);
        std::iota(pos.begin(), pos.end(), 0);
        rope_ref(q, sc.heads, d, pos, theta);
        rope_ref(k, sc.kv_heads, d, pos, theta);
        std::vector<float> ref(P * qw);
        attention_ref(q.data(), k.data(), v.data(), P, 0, sc.heads, sc.kv_heads, d, ref.data());

        const std::vector<float> gq = from_device_f16(dq.get(), q.size());
        const std::vector<float> gk = from_device_f16(kc.get(), P * kw);
        const std::vector<float> gv = from_device_f16(vc.get(), P * kw);
        const std::vector<float> go = from_device_f16(out.get(), ref.size());
        CHECK(compare_ulps(gq, q).max_ulps == 0);
        CHECK(compare_ulps(gk, k).max_ulps == 0);
        CHECK(compare_ulps(gv, v).max_ulps == 0);
        check_attention(go, ref);
    }
}

TEST_CASE("attention decode: rope, append and attention through beam slot tables", "[gpu][kernels]") {
    struct shape_case {
        int heads, kv_heads, head_dim;
        std::int64_t beams, pos;
    };
    // Head sizes 32/64/128/256 take the vectorized kernel (one key per thread, values in 16-byte chunks, batches of
    // 8 positions per group), 48 the generic one; positions across several batches and past 256 threads.
    for (const shape_case sc : {shape_case{8, 4, 32, 3, 40}, shape_case{32, 32, 128, 4, 90}, shape_case{4, 2, 128, 1, 0},
                                shape_case{4, 1, 64, 2, 300}, shape_case{4, 4, 256, 2, 700}, shape_case{2, 2, 48, 2, 33},
                                shape_case{4, 2, 128, 3, 1500}, shape_case{2, 1, 128, 1, 1}}) {
        const std::uint64_t seed = fresh_seed();
        CAPTURE(sc.heads, sc.kv_heads, sc.head_dim, sc.beams, sc.pos, seed);
        const double theta = 10000.0;
        const std::int64_t B = sc.beams, d = sc.head_dim, qw = sc.heads * d, kw = sc.kv_heads * d;
        const std::int64_t max_len = sc.pos + 5;
        // Cache contents for positions < pos in every slot (already rotated: any fp16 values will do).
        std::vector<float> kc = random_halves(B * max_len * kw, 1.0f, seed), vc = random_halves(B * max_len * kw, 1.0f, seed + 1);
        std::vector<std::int32_t> table(B * max_len);
        for (std::int64_t i = 0; i < B * max_len; ++i) table[i] = static_cast<std::int32_t>(random_bits(seed + 2, i) % B);
        const std::vector<float> q = random_halves(B * qw, 1.0f, seed + 3), kn = random_halves(B * kw, 1.0f, seed + 4),
                                 vn = random_halves(B * kw, 1.0f, seed + 5);
        device_buffer dkc = to_device_f16(kc), dvc = to_device_f16(vc), dq = to_device_f16(q), dk = to_device_f16(kn),
                      dv = to_device_f16(vn), dtable = to_device(table);
        const std::vector<float> inv_freq = rope_inv_freq(d, theta);
        device_buffer dfreq = to_device(inv_freq);
        const std::vector<std::int32_t> posv{static_cast<std::int32_t>(sc.pos)};
        device_buffer dpos = to_device(posv);
        device_buffer out = poisoned(B * qw);
        const attention_shape shape{sc.heads, sc.kv_heads, sc.head_dim, max_len,
                                    static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)))};
        launch_attention_decode(dq.as<__half>(), dk.as<__half>(), dv.as<__half>(), dfreq.as<float>(),
                                dpos.as<std::int32_t>(), dtable.as<std::int32_t>(), B, shape, dkc.as<__half>(),
                                dvc.as<__half>(), out.as<__half>(), with_pdl());
        const std::vector<float> got = from_device_f16(out.get(), B * qw);
        const std::vector<float> gkc = from_device_f16(dkc.get(), kc.size());
        const std::vector<float> gvc = from_device_f16(dvc.get(), vc.size());
        for (std::int64_t b = 0; b < B; ++b) {
            // Beam b's keys and values: positions < pos through its table row, then its own new (rotated) row.
            std::vector<float> keys, values;
            for (std::int64_t p = 0; p < sc.pos; ++p) {
                const std::int64_t at = (table[b * max_len + p] * max_len + p) * kw;
                keys.insert(keys.end(), kc.begin() + at, kc.begin() + at + kw);
                values.insert(values.end(), vc.begin() + at, vc.begin() + at + kw);
            }
            std::vector<float> qb(q.begin() + b * qw, q.begin() + (b + 1) * qw), kb(kn.begin() + b * kw, kn.begin() + (b + 1) * kw);
            const std::vector<std::int64_t> pos{sc.pos};
            rope_ref(qb, sc.heads, d, pos, theta);
            rope_ref(kb, sc.kv_heads, d, pos, theta);
            keys.insert(keys.end(), kb.begin(), kb.end());
            values.insert(values.end(), vn.begin() + b * kw, vn.begin() + (b + 1) * kw);
            std::vector<float> ref(qw);
            attention_ref(qb.data(), keys.data(), values.data(), 1, sc.pos, sc.heads, sc.kv_heads, d, ref.data());
            const std::vector<float> gb(got.begin() + b * qw, got.begin() + (b + 1) * qw);
            check_attention(gb, ref);
            // The new key and value were appended to slot b at pos.
            const std::int64_t at = (b * max_len + sc.pos) * kw;
            CHECK(compare_ulps(std::vector<float>(gkc.begin() + at, gkc.begin() + at + kw), kb).max_ulps == 0);
            CHECK(compare_ulps(std::vector<float>(gvc.begin() + at, gvc.begin() + at + kw),
                               std::vector<float>(vn.begin() + b * kw, vn.begin() + (b + 1) * kw))
                      .max_ulps == 0);
        }
    }
}

namespace {

// A one-row-per-sequence decode state on the device, for the chooser kernels.
struct state_buffers {
    device_buffer pos, step, tokens, hist_tokens, hist_parents, scores, table, table_tmp, row_max, row_logsum,
        cand_logit, cand_token;
    decode_state state;
    state_buffers(std::int64_t beams, std::int64_t max_len, std::int64_t steps, std::int32_t pos0, std::int32_t step0,
                  const std::vector<double>& scores0, const std::vector<std::int32_t>& table0) {
        pos = to_device(std::vector<std::int32_t>{pos0});
        step = to_device(std::vector<std::int32_t>{step0});
        tokens = to_device(std::vector<std::int32_t>(beams, -1));
        hist_tokens = to_device(std::vector<std::int32_t>(steps * beams, -1));
        hist_parents = to_device(std::vector<std::int32_t>(steps * beams, -1));
        scores = to_device(scores0);
        table = to_device(table0);
        table_tmp = to_device(std::vector<std::int32_t>(beams * max_len, -1));
        row_max = to_device(std::vector<float>(beams));
        row_logsum = to_device(std::vector<double>(beams));
        cand_logit = to_device(std::vector<float>(beams * beams));
        cand_token = to_device(std::vector<std::int32_t>(beams * beams));
        state = decode_state{pos.as<std::int32_t>(),          step.as<std::int32_t>(),
                             tokens.as<std::int32_t>(),       hist_tokens.as<std::int32_t>(),
                             hist_parents.as<std::int32_t>(), scores.as<double>(),
                             table.as<std::int32_t>(),        table_tmp.as<std::int32_t>(),
                             row_max.as<float>(),             row_logsum.as<double>(),
                             cand_logit.as<float>(),          cand_token.as<std::int32_t>(),
                             beams,                           max_len};
    }
};

// Logits with realistic structure: fp16 values, many exact ties (coarse values) and a few NaN/-inf entries.
std::vector<float> test_logits(std::int64_t n, std::uint64_t seed, bool coarse) {
    std::vector<float> l = random_halves(n, 3.0f, seed);
    if (coarse)
        for (float& v : l) v = round_to_half(std::round(v * 4.0f) / 4.0f);
    return l;
}

}  // namespace

TEST_CASE("greedy choice: argmax_token with ties to the lowest id, log-prob score, state advance", "[gpu][select]") {
    for (const std::int64_t V : {32001, 512, 77, 50000}) {  // 50000: above the one-pass register limit
        for (const bool coarse : {false, true})
            for (const bool split : {false, true}) {  // one block, or k_greedy_blocks blocks with scratch
            const std::uint64_t seed = fresh_seed();
            CAPTURE(V, coarse, split, seed);
            std::vector<float> logits = test_logits(V, seed, coarse);
            logits[V / 2] = -INFINITY;
            device_buffer dl = to_device_f16(logits);
            state_buffers sb(1, 16, 4, 10, 2, {0.5}, std::vector<std::int32_t>(16, 0));
            device_buffer gsum = to_device(std::vector<double>(k_greedy_blocks, -1.0)),
                          gmax = to_device(std::vector<float>(k_greedy_blocks, -1.0f)),
                          gidx = to_device(std::vector<std::int32_t>(k_greedy_blocks, -1)),
                          garrived = to_device(std::vector<unsigned>(1, 0u));
            if (split) {
                sb.state.greedy_sum = gsum.as<double>();
                sb.state.greedy_max = gmax.as<float>();
                sb.state.greedy_idx = gidx.as<std::int32_t>();
                sb.state.greedy_arrived = garrived.as<unsigned>();
            }
            launch_choose_greedy(dl.as<__half>(), V, sb.state, with_pdl());
            const auto tok = from_device<std::int32_t>(sb.tokens.get(), 1);
            const auto hist = from_device<std::int32_t>(sb.hist_tokens.get(), 4);
            const auto score = from_device<double>(sb.scores.get(), 1);
            const auto pos = from_device<std::int32_t>(sb.pos.get(), 1);
            const auto step = from_device<std::int32_t>(sb.step.get(), 1);
            const std::int32_t ref = argmax_token(logits);
            CHECK(tok[0] == ref);
            CHECK(hist[2] == ref);
            CHECK(score[0] == Approx(0.5 + log_softmax(logits)[ref]).epsilon(1e-12));
            CHECK(pos[0] == 11);
            CHECK(step[0] == 3);
            if (split) CHECK(from_device<unsigned>(garrived.get(), 1)[0] == 0u);  // reset for the next launch
            }
    }
}

TEST_CASE("sampling: equals sample_token (temperature, top-k, top-p, inverse CDF)", "[gpu][select]") {
    struct params_case {
        double temperature;
        std::int64_t top_k;
        double top_p;
    };
    int compared = 0;
    for (const std::int64_t V : {32001, 512}) {
        for (const params_case pc : {params_case{1.0, 0, 1.0}, params_case{0.7, 40, 1.0}, params_case{1.3, 0, 0.9},
                                     params_case{0.8, 50, 0.5}, params_case{1.0, 1, 1.0}, params_case{2.0, 7, 0.3}}) {
            for (const bool coarse : {false, true}) {
                const std::uint64_t seed = fresh_seed();
                CAPTURE(V, pc.temperature, pc.top_k, pc.top_p, coarse, seed);
                const std::vector<float> logits = test_logits(V, seed, coarse);
                device_buffer dl = to_device_f16(logits);
                for (int step = 0; step < 6; ++step) {
                    generation_config g;
                    g.mode = decode_mode::sample;
                    g.temperature = pc.temperature;
                    g.top_k = pc.top_k;
                    g.top_p = pc.top_p;
                    g.seed = seed ^ 0x5eedull;
                    state_buffers sb(1, 8, 8, 3, step, {0.0}, std::vector<std::int32_t>(8, 0));
                    launch_choose_sample(dl.as<__half>(), V, sampling_params{g.temperature, g.top_k, g.top_p, g.seed},
                                         sb.state, with_pdl());
                    const auto tok = from_device<std::int32_t>(sb.tokens.get(), 1);
                    const auto score = from_device<double>(sb.scores.get(), 1);
                    const std::int32_t ref = sample_token(logits, g, step, 0);
                    CAPTURE(step);
                    CHECK(tok[0] == ref);
                    CHECK(score[0] == Approx(log_softmax(logits)[ref]).epsilon(1e-12));
                    ++compared;
                }
            }
        }
    }
    CHECK(compared == 144);
}

TEST_CASE("beam step: equals beam_step, history and slot tables reordered by parent", "[gpu][select]") {
    for (const std::int64_t B : {2, 4, 8}) {
        for (const bool first : {true, false}) {
            for (const bool coarse : {false, true}) {
                const std::uint64_t seed = fresh_seed();
                CAPTURE(B, first, coarse, seed);
                const std::int64_t V = 32001, max_len = 40, cur = 30;
                const std::int64_t parent_rows = first ? 1 : B;
                const std::vector<float> logits = test_logits(parent_rows * V, seed, coarse);
                std::vector<double> scores = initial_beam_scores(B);
                if (!first)
                    for (std::int64_t b = 0; b < B; ++b) scores[b] = -3.0 - 0.25 * b + 1e-3 * normal01(seed, 999 + b);
                std::vector<std::int32_t> table(B * max_len, 0);
                if (!first)
                    for (std::int64_t i = 0; i < B * max_len; ++i) table[i] = static_cast<std::int32_t>(random_bits(seed, i) % B);
                device_buffer dl = to_device_f16(logits);
                state_buffers sb(B, max_len, 5, static_cast<std::int32_t>(cur), 1, scores, table);
                launch_choose_beam(dl.as<__half>(), V, parent_rows, sb.state, with_pdl());
                const auto tok = from_device<std::int32_t>(sb.tokens.get(), B);
                const auto parents = from_device<std::int32_t>(sb.hist_parents.get() , 5 * B);
                const auto hist = from_device<std::int32_t>(sb.hist_tokens.get(), 5 * B);
                const auto got_scores = from_device<double>(sb.scores.get(), B);
                const auto got_table = from_device<std::int32_t>(sb.table.get(), B * max_len);
                const auto pos = from_device<std::int32_t>(sb.pos.get(), 1);

                // The reference sees B identical rows on the first step (the CPU fans the prompt out to B beams).
                std::vector<float> ref_logits;
                for (std::int64_t b = 0; b < B; ++b)
                    ref_logits.insert(ref_logits.end(), logits.begin() + (first ? 0 : b) * V,
                                      logits.begin() + ((first ? 0 : b) + 1) * V);
                const beam_choice ref = beam_step(ref_logits, V, scores);
                for (std::int64_t j = 0; j < B; ++j) {
                    CAPTURE(j);
                    CHECK(tok[j] == ref.tokens[j]);
                    CHECK(hist[B + j] == ref.tokens[j]);
                    CHECK(parents[B + j] == ref.parents[j]);
                    CHECK(got_scores[j] == Approx(ref.scores[j]).epsilon(1e-12));
                    for (std::int64_t p = 0; p < cur; ++p)
                        CHECK(got_table[j * max_len + p] == table[ref.parents[j] * max_len + p]);
                    CHECK(got_table[j * max_len + cur] == ref.parents[j]);
                }
                CHECK(pos[0] == cur + 1);
            }
        }
    }
}
