#pragma once
// bench_gptq's reading of a persistent chain's trace (gptq_chain.cuh, chain_tuning::trace): where a phase's time goes,
// per class of phase (q/k/v, attention, ... or a linear's shape), averaged over the phases of that class and the CTAs.
#include "backends/gptq/gptq_chain.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/device_context.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace qbench::gptq::test {

/// Runs `launch(tuning)` once with a trace buffer (tuning's other switches as given) and prints, per class of phase (class_of(p)), in microseconds (SM
/// cycles converted by the clock rate the headers give):
/// - span: a CTA's time from the previous phase's stored stamp to this one's (mean over CTAs), the phase's cost;
/// - wait: from the previous phase stored to this one's hint passed (the grid hint: the slowest CTA, the sync);
/// - stage: hint to input staged; slot0: staged to warp 0's first slot there; loop: staged to every warp's k-slice
///   done (mean, and max over CTAs); w0: warp 0's k-slice; epi: loop done to outputs stored;
/// - lead: how long before the input was staged the producer had issued the phase's first slot (lane 0);
/// - issue: lane 0's first to last slot of the phase.
/// Linear-phase columns average over the CTAs that own mtiles of the phase.
inline void print_chain_trace(device_context& ctx, int ctas, int phases, const std::function<std::string(int)>& class_of,
                              const std::function<void(const chain_tuning&)>& launch, chain_tuning tuning) {
    const std::size_t words = static_cast<std::size_t>(ctas) * (phases + 1) * k_trace_fields;
    device_buffer buf = ctx.allocate(words * 8, "chain trace");
    QB_CUDA_CHECK(cudaMemsetAsync(buf.get(), 0, buf.size(), ctx.stream()));
    tuning.trace = buf.as<unsigned long long>();
    launch(tuning);
    QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
    std::vector<unsigned long long> t(words);
    QB_CUDA_CHECK(cudaMemcpy(t.data(), buf.get(), buf.size(), cudaMemcpyDeviceToHost));
    auto at = [&](int b, int p, int f) { return static_cast<double>(t[(static_cast<std::size_t>(b) * (phases + 1) + p + 1) * k_trace_fields + f]); };
    double cycles = 0, ns = 0;
    for (int b = 0; b < ctas; ++b) {
        cycles += at(b, -1, 2) - at(b, -1, 0);
        ns += at(b, -1, 3) - at(b, -1, 1);
    }
    const double per_us = cycles / ns * 1e3;  // cycles per microsecond
    struct sums {
        int phases = 0;
        double n_all = 0, span = 0, wait = 0;
        double n_lin = 0, stage = 0, slot0 = 0, loop = 0, w0 = 0, epi = 0, lead = 0, issue = 0, n_prod = 0;
        double loop_max = 0;  // summed over phases of the max over CTAs
    };
    std::map<std::string, sums> by;
    std::vector<std::string> order;
    for (int p = 1; p < phases; ++p) {  // phase 0 starts with the launch: no previous stored stamp
        const std::string c = class_of(p);
        if (by.find(c) == by.end()) order.push_back(c);
        sums& s = by[c];
        ++s.phases;
        double loop_max = 0;
        for (int b = 0; b < ctas; ++b) {
            s.n_all += 1;
            s.span += at(b, p, k_trace_stored) - at(b, p - 1, k_trace_stored);
            s.wait += at(b, p, k_trace_hint) - at(b, p - 1, k_trace_stored);
            if (at(b, p, k_trace_staged) == 0) continue;  // attention, or no mtiles here
            s.n_lin += 1;
            const double staged = at(b, p, k_trace_staged);
            s.stage += staged - at(b, p, k_trace_hint);
            s.slot0 += at(b, p, k_trace_first_slot) - staged;
            s.loop += at(b, p, k_trace_loop_done) - staged;
            loop_max = std::max(loop_max, at(b, p, k_trace_loop_done) - staged);
            s.w0 += at(b, p, k_trace_warp0_done) - staged;
            s.epi += at(b, p, k_trace_stored) - at(b, p, k_trace_loop_done);
            if (at(b, p, k_trace_producer_first) != 0) {
                s.n_prod += 1;
                s.lead += staged - at(b, p, k_trace_producer_first);
                s.issue += at(b, p, k_trace_producer_last) - at(b, p, k_trace_producer_first);
            }
        }
        s.loop_max += loop_max;
    }
    std::printf("chain trace (producer %d, attention rows prefetched %d, %d CTAs, %d phases, %.0f MHz): us per phase, mean over phases and CTAs\n",
                tuning.producer, tuning.prefetch_attention ? 1 : 0, ctas, phases, per_us);
    std::printf("| phase | n | span | wait | stage | slot0 | loop | loop max | w0 | epi | lead | issue |\n");
    std::printf("| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |\n");
    double total = 0;
    for (const std::string& c : order) {
        const sums& s = by[c];
        auto us = [&](double v, double n) { return n > 0 ? v / n / per_us : 0.0; };
        total += us(s.span, s.n_all) * s.phases;
        std::printf("| %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", c.c_str(), s.phases,
                    us(s.span, s.n_all), us(s.wait, s.n_all), us(s.stage, s.n_lin), us(s.slot0, s.n_lin), us(s.loop, s.n_lin),
                    us(s.loop_max, s.phases), us(s.w0, s.n_lin), us(s.epi, s.n_lin), us(s.lead, s.n_prod), us(s.issue, s.n_prod));
    }
    std::printf("sum of spans %.3f ms (phases 1..%d)\n", total * 1e-3, phases - 1);
}

}  // namespace qbench::gptq::test
