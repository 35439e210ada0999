#include "qbench/engine/decoding.hpp"

#include "qbench/common/counter_rng.hpp"
#include "qbench/common/errors.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

namespace qbench {

std::int32_t argmax_token(std::span<const float> logits) {
    if (logits.empty()) throw error("argmax_token: empty logits");
    std::size_t best = 0;
    for (std::size_t v = 1; v < logits.size(); ++v)
        if (logits[v] > logits[best] || std::isnan(logits[best])) best = v;  // strict >: the lowest id keeps a tie
    return static_cast<std::int32_t>(best);
}

std::vector<double> log_softmax(std::span<const float> logits) {
    double max_logit = -INFINITY;
    for (float l : logits) max_logit = std::max(max_logit, static_cast<double>(l));
    double sum = 0;
    for (float l : logits) sum += std::exp(static_cast<double>(l) - max_logit);
    const double log_sum = std::log(sum);
    std::vector<double> out(logits.size());
    for (std::size_t v = 0; v < logits.size(); ++v) out[v] = (static_cast<double>(logits[v]) - max_logit) - log_sum;
    return out;
}

std::int32_t sample_token(std::span<const float> logits, const generation_config& config, std::int64_t step,
                          std::int64_t sequence) {
    if (logits.empty()) throw error("sample_token: empty logits");
    if (!(config.temperature > 0)) throw error("sample_token: temperature must be > 0");
    const auto vocab = static_cast<std::int64_t>(logits.size());

    std::vector<double> scaled(logits.size());
    for (std::size_t v = 0; v < logits.size(); ++v) scaled[v] = static_cast<double>(logits[v]) / config.temperature;

    // Candidates in descending order, ties by lower id; top-k keeps the first k.
    std::vector<std::int32_t> order(logits.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) { return scaled[a] > scaled[b]; });
    if (config.top_k > 0 && config.top_k < vocab) order.resize(static_cast<std::size_t>(config.top_k));

    // Softmax over the kept candidates (unnormalized weights; `total` is their sum).
    std::vector<double> weight(order.size());
    const double max_scaled = scaled[order[0]];
    double total = 0;
    for (std::size_t i = 0; i < order.size(); ++i) {
        weight[i] = std::exp(scaled[order[i]] - max_scaled);
        total += weight[i];
    }

    // Top-p: the smallest prefix whose probability reaches top_p (at least one token).
    std::size_t kept = order.size();
    if (config.top_p < 1.0) {
        double mass = 0;
        for (std::size_t i = 0; i < order.size(); ++i) {
            mass += weight[i];
            if (mass / total >= config.top_p) {
                kept = i + 1;
                break;
            }
        }
    }
    double kept_mass = 0;
    for (std::size_t i = 0; i < kept; ++i) kept_mass += weight[i];

    // Inverse CDF over the renormalized kept tokens: the first whose cumulative mass exceeds u.
    const double u = uniform01(stream_key(config.seed, static_cast<std::uint64_t>(step)),
                               static_cast<std::uint64_t>(sequence));
    const double target = u * kept_mass;
    double cumulative = 0;
    for (std::size_t i = 0; i < kept; ++i) {
        cumulative += weight[i];
        if (target < cumulative) return order[i];
    }
    return order[kept - 1];  // u * mass rounded up to the full mass
}

beam_choice beam_step(std::span<const float> logits, std::int64_t vocab, std::span<const double> beam_scores) {
    const auto beams = static_cast<std::int64_t>(beam_scores.size());
    if (beams < 1 || vocab < 1 || static_cast<std::int64_t>(logits.size()) != beams * vocab)
        throw error("beam_step: logits have " + std::to_string(logits.size()) + " values, expected beams (" +
                    std::to_string(beams) + ") * vocab (" + std::to_string(vocab) + ")");
    std::vector<double> candidate(static_cast<std::size_t>(beams * vocab));
    for (std::int64_t b = 0; b < beams; ++b) {
        const std::vector<double> lp = log_softmax(logits.subspan(static_cast<std::size_t>(b * vocab),
                                                                  static_cast<std::size_t>(vocab)));
        for (std::int64_t v = 0; v < vocab; ++v) candidate[b * vocab + v] = beam_scores[b] + lp[v];
    }
    std::vector<std::int64_t> flat(candidate.size());
    std::iota(flat.begin(), flat.end(), 0);
    std::partial_sort(flat.begin(), flat.begin() + beams, flat.end(), [&](std::int64_t a, std::int64_t b) {
        return candidate[a] > candidate[b] || (candidate[a] == candidate[b] && a < b);
    });
    beam_choice choice;
    for (std::int64_t j = 0; j < beams; ++j) {
        choice.parents.push_back(static_cast<std::int32_t>(flat[j] / vocab));
        choice.tokens.push_back(static_cast<std::int32_t>(flat[j] % vocab));
        choice.scores.push_back(candidate[flat[j]]);
    }
    return choice;
}

std::vector<double> initial_beam_scores(std::int64_t beam_width) {
    std::vector<double> scores(static_cast<std::size_t>(beam_width), -1e9);
    if (!scores.empty()) scores[0] = 0.0;
    return scores;
}

}  // namespace qbench
