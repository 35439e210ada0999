#include "qbench/engine/cpu_executor.hpp"

#include "qbench/common/errors.hpp"
#include "qbench/engine/decoding.hpp"

#include <chrono>
#include <string>

namespace qbench {

namespace {

using clock = std::chrono::steady_clock;

double elapsed_ms(clock::time_point start) {
    return std::chrono::duration<double, std::milli>(clock::now() - start).count();
}

void validate(const generation_config& g) {
    if (g.max_new_tokens < 0) throw error("generate: max_new_tokens must be >= 0");
    if (g.beam_width < 1) throw error("generate: beam_width must be >= 1");
    if (g.beam_width > 1 && g.mode != decode_mode::beam)
        throw error("generate: beam_width " + std::to_string(g.beam_width) + " needs mode beam");
    if (g.mode == decode_mode::sample && !(g.temperature > 0)) throw error("generate: temperature must be > 0");
}

}  // namespace

cpu_executor::cpu_executor(const cpu_model& model) : m_model(&model) {}

cpu_executor::cpu_executor(cpu_model&& model) : m_owned(std::move(model)), m_model(&*m_owned) {}

std::vector<float> cpu_executor::prefill(const prompt& p, cpu_kv_cache& cache) const {
    if (cache.length != 0 || cache.sequences != 1) throw error("prefill: needs an empty one-sequence KV cache");
    std::vector<float> hidden = embed_prompt(*m_model, p);
    cpu_forward_layers(*m_model, cache, hidden, p.length());
    return cpu_logits(*m_model, hidden.data() + (p.length() - 1) * m_model->config.hidden_size, 1);
}

std::vector<float> cpu_executor::decode(std::span<const std::int32_t> tokens, cpu_kv_cache& cache) const {
    if (static_cast<std::int64_t>(tokens.size()) != cache.sequences)
        throw error("decode: " + std::to_string(tokens.size()) + " tokens for " + std::to_string(cache.sequences) +
                    " sequences");
    std::vector<float> hidden = embed_tokens(*m_model, tokens);
    cpu_forward_layers(*m_model, cache, hidden, 1);
    return cpu_logits(*m_model, hidden.data(), cache.sequences);
}

std::vector<float> cpu_executor::full_logits(const prompt& p, std::span<const std::int32_t> extra,
                                             std::int64_t rows) const {
    const std::int64_t H = m_model->config.hidden_size;
    std::vector<float> hidden = embed_prompt(*m_model, p);
    const std::vector<float> extra_rows = embed_tokens(*m_model, extra);
    hidden.insert(hidden.end(), extra_rows.begin(), extra_rows.end());
    const std::int64_t total = p.length() + static_cast<std::int64_t>(extra.size());
    if (rows < 0 || rows > total) throw error("full_logits: " + std::to_string(rows) + " rows of " + std::to_string(total));
    for (std::int64_t l = 0; l < m_model->config.num_layers; ++l) cpu_layer_forward(*m_model, l, hidden, total, nullptr);
    return cpu_logits(*m_model, hidden.data() + (total - rows) * H, rows);
}

generation_output cpu_executor::generate(const prompt& p, const generation_config& g) {
    validate(g);
    const std::int64_t V = m_model->config.vocab_size;
    const bool beam = g.mode == decode_mode::beam && g.beam_width > 1;
    m_timing = {};
    generation_output out;

    cpu_kv_cache cache = make_kv_cache(*m_model, 1, p.length() + g.max_new_tokens);
    const clock::time_point prefill_start = clock::now();
    std::vector<float> logits = prefill(p, cache);
    m_timing.prefill_ms = elapsed_ms(prefill_start);
    if (g.max_new_tokens == 0) {
        out.beams = {{}};
        out.beam_scores = {0.0};
        return out;
    }

    if (!beam) {
        double score = 0;
        for (std::int64_t step = 0; step < g.max_new_tokens; ++step) {
            const clock::time_point start = clock::now();
            if (step > 0) logits = decode(std::span(&out.tokens.back(), 1), cache);
            const std::int32_t token =
                g.mode == decode_mode::sample ? sample_token(logits, g, step, 0) : argmax_token(logits);
            score += log_softmax(logits)[token];
            out.tokens.push_back(token);
            if (step > 0) m_timing.step_ms.push_back(elapsed_ms(start));
        }
        out.beams = {out.tokens};
        out.beam_scores = {score};
        return out;
    }

    // Beam search: the prompt's cache and logits fan out to B identical beams; the initial scores make the first
    // step expand beam 0 only.
    const std::int64_t B = g.beam_width;
    cache.reorder(std::vector<std::int32_t>(static_cast<std::size_t>(B), 0));
    std::vector<float> beam_logits;
    for (std::int64_t b = 0; b < B; ++b) beam_logits.insert(beam_logits.end(), logits.begin(), logits.end());
    std::vector<double> scores = initial_beam_scores(B);
    std::vector<std::vector<std::int32_t>> beams(static_cast<std::size_t>(B));
    beam_choice choice;
    for (std::int64_t step = 0; step < g.max_new_tokens; ++step) {
        const clock::time_point start = clock::now();
        if (step > 0) beam_logits = decode(choice.tokens, cache);
        choice = beam_step(beam_logits, V, scores);
        std::vector<std::vector<std::int32_t>> next(static_cast<std::size_t>(B));
        for (std::int64_t j = 0; j < B; ++j) {
            next[j] = beams[choice.parents[j]];
            next[j].push_back(choice.tokens[j]);
        }
        beams = std::move(next);
        scores = choice.scores;
        cache.reorder(choice.parents);
        if (step > 0) m_timing.step_ms.push_back(elapsed_ms(start));
    }
    out.tokens = beams[0];
    out.beams = std::move(beams);
    out.beam_scores = std::move(scores);
    return out;
}

std::vector<std::vector<float>> cpu_executor::teacher_forced_logits(const prompt& p,
                                                                    const std::vector<std::int32_t>& forced) {
    if (forced.empty()) return {};
    const auto n = static_cast<std::int64_t>(forced.size());
    const std::span<const std::int32_t> fed(forced.data(), forced.size() - 1);  // forced.back() predicts nothing
    const std::vector<float> logits = full_logits(p, fed, n);
    const std::int64_t V = m_model->config.vocab_size;
    std::vector<std::vector<float>> rows;
    for (std::int64_t i = 0; i < n; ++i) rows.emplace_back(logits.begin() + i * V, logits.begin() + (i + 1) * V);
    return rows;
}

}  // namespace qbench
