#include "qbench/runner/generation_metrics.hpp"

#include "qbench/common/errors.hpp"
#include "qbench/common/stats.hpp"
#include "qbench/results/metrics.hpp"

#include <numeric>
#include <vector>

namespace qbench {

void measure_generation(executor& exec, const prompt& p, const generation_config& g, const cell_spec& cell,
                        std::uint64_t bytes_per_decode_step, double stream_bandwidth_bytes_per_s,
                        nlohmann::ordered_json& metrics) {
    for (std::int64_t i = 0; i < cell.generation.warmup; ++i) exec.generate(p, g);

    std::vector<double> prefill_ms, decode_tps, e2e_tps, beam_tps, step_ms, decode_ms_per_step;
    const auto decode_steps = static_cast<double>(g.max_new_tokens - 1);
    const double beams = static_cast<double>(std::max<std::int64_t>(g.beam_width, 1));
    for (std::int64_t r = 0; r < cell.generation.repetitions; ++r) {
        const generation_output out = exec.generate(p, g);
        if (static_cast<std::int64_t>(out.tokens.size()) != g.max_new_tokens)
            throw error("executor returned " + std::to_string(out.tokens.size()) + " tokens, expected " +
                        std::to_string(g.max_new_tokens));
        const generation_timing& t = exec.last_timing();
        const double decode_ms = std::accumulate(t.step_ms.begin(), t.step_ms.end(), 0.0);
        prefill_ms.push_back(t.prefill_ms);
        step_ms.insert(step_ms.end(), t.step_ms.begin(), t.step_ms.end());
        if (decode_steps > 0 && decode_ms > 0) {
            decode_tps.push_back(decode_steps / (decode_ms / 1e3));
            beam_tps.push_back(beams * decode_steps / (decode_ms / 1e3));
            decode_ms_per_step.push_back(decode_ms / decode_steps);
        }
        e2e_tps.push_back(static_cast<double>(g.max_new_tokens) / ((t.prefill_ms + decode_ms) / 1e3));
    }
    metrics[metric::k_prefill_ms] = summary_to_json(prefill_ms);
    if (!decode_tps.empty()) {
        metrics[metric::k_decode_tokens_per_s] = summary_to_json(decode_tps);
        metrics[metric::k_beam_tokens_per_s] = summary_to_json(beam_tps);
    }
    metrics[metric::k_e2e_tokens_per_s] = summary_to_json(e2e_tps);
    if (!step_ms.empty()) metrics[metric::k_token_latency_ms] = summary_to_json(step_ms);
    if (bytes_per_decode_step > 0) metrics[metric::k_bytes_per_decode_step] = bytes_per_decode_step;
    if (bytes_per_decode_step > 0 && stream_bandwidth_bytes_per_s > 0 && !decode_ms_per_step.empty()) {
        // Achieved bytes/s of the median step over the measured stream bandwidth: 1.0 is the physical limit.
        const double step_s = summarize(decode_ms_per_step).median / 1e3;
        metrics[metric::k_bandwidth_utilization] =
            static_cast<double>(bytes_per_decode_step) / step_s / stream_bandwidth_bytes_per_s;
    }
}

}  // namespace qbench
