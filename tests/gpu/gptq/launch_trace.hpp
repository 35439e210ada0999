#pragma once
// bench_gptq's trace of kernel v3's launches in a decode step (gptq_gemm_a.cuh, a_trace_open): where each launch's
// time goes, per class of launch (q/k/v, o, gate/up, down), averaged over the step's layers. The persistent stack has
// its own (chain_trace.hpp); this one says the same of the launched path, to set the two side by side.
#include "backends/gptq/gptq_gemm_a.cuh"
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

/// The class of a v3 launch of a Llama-shaped step, from what it computes.
inline std::string launch_class(const a_trace_launch& l) {
    if (l.mode == a_mode::swiglu) return "gate/up";
    if (l.members == 3) return "q/k/v";
    if (l.members == 1 && l.kblocks > 32) return "down";
    if (l.members == 1) return "o";
    return std::to_string(l.members) + " members";
}

/// Captures `body` into a graph with the trace open, replays it a few times and prints, per class of launch, in
/// microseconds of the GPU's timer (%globaltimer: one clock for every SM), mean over the class's launches (the first
/// launch of the step left out: it has no v3 launch before it):
/// - span: from the previous v3 launch's last CTA done to this one's (what the launch adds to the step, with any
///   kernel between the two: the RMSNorm before q/k/v and gate/up);
/// - gap: from the previous launch's last CTA done to this launch's first PDL wait returned (the boundary);
/// - early: how long this launch's CTAs were resident before their wait returned (mean; their first weights are in
///   flight meanwhile); late: CTAs that became resident only after the wait returned (count per launch);
/// - stage: wait returned to x staged (mean over CTAs); loop: staged to every warp done (mean, and max over CTAs);
/// - epi: loop done to thread 0's outputs stored; tail: the last CTA done minus the mean CTA done.
inline void print_launch_trace(device_context& ctx, const std::function<void(cudaStream_t)>& body, double step_s) {
    constexpr std::size_t capacity = 1u << 16;  // CTAs: a 7B step's 128 v3 launches of up to 264 CTAs each
    device_buffer buf = ctx.allocate(capacity * k_a_trace_fields * 8, "launch trace");
    cudaStream_t st = ctx.stream();
    QB_CUDA_CHECK(cudaMemsetAsync(buf.get(), 0, buf.size(), st));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    a_trace_open(buf.as<unsigned long long>(), capacity);
    QB_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    body(st);
    QB_CUDA_CHECK(cudaStreamEndCapture(st, &graph));
    const std::vector<a_trace_launch> launches = a_trace_close();
    QB_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    for (int i = 0; i < 4; ++i) QB_CUDA_CHECK(cudaGraphLaunch(exec, st));  // the last replay's stamps stay
    QB_CUDA_CHECK(cudaStreamSynchronize(st));
    QB_CUDA_CHECK(cudaGraphExecDestroy(exec));
    QB_CUDA_CHECK(cudaGraphDestroy(graph));
    std::vector<unsigned long long> t(capacity * k_a_trace_fields);
    QB_CUDA_CHECK(cudaMemcpy(t.data(), buf.get(), buf.size(), cudaMemcpyDeviceToHost));
    if (launches.size() < 2) {
        std::printf("launch trace: %zu v3 launches stamped (paired launches are not stamped)\n", launches.size());
        return;
    }
    auto at = [&](std::size_t cta, int f) { return static_cast<double>(t[cta * k_a_trace_fields + static_cast<std::size_t>(f)]); };
    struct launch_stats {
        double entry_mean = 0, waited_min = 0, waited_mean = 0, staged = 0, loop = 0, loop_max = 0, done_mean = 0, done_max = 0, done = 0;
        int late = 0;
    };
    std::vector<launch_stats> ls;
    double t0 = 0;
    std::size_t stamps = 0, coarse = 0;  // stamps, and those that are whole microseconds (a coarse timer)
    for (const a_trace_launch& l : launches) {
        launch_stats s;
        s.waited_min = 1e300;
        for (int b = 0; b < l.grid; ++b) s.waited_min = std::min(s.waited_min, at(l.first + static_cast<std::size_t>(b), a_trace_waited));
        for (int b = 0; b < l.grid; ++b) {
            const std::size_t c = l.first + static_cast<std::size_t>(b);
            const double entry = at(c, a_trace_entry), waited = at(c, a_trace_waited), staged = at(c, a_trace_staged);
            const double loop_done = at(c, a_trace_loop_done), end = at(c, a_trace_end);
            if (t0 == 0 || entry < t0) t0 = entry;
            for (int f = 0; f < a_trace_sm; ++f) {
                ++stamps;
                coarse += t[c * k_a_trace_fields + static_cast<std::size_t>(f)] % 1000 == 0 ? 1 : 0;
            }
            s.entry_mean += entry;
            s.waited_mean += waited;
            s.staged += staged - waited;
            s.loop += loop_done - staged;
            s.loop_max = std::max(s.loop_max, loop_done - staged);
            s.done += end - loop_done;
            s.done_mean += end;
            s.done_max = std::max(s.done_max, end);
            s.late += entry >= s.waited_min ? 1 : 0;
        }
        const double n = l.grid;
        s.entry_mean /= n, s.waited_mean /= n, s.staged /= n, s.loop /= n, s.done /= n, s.done_mean /= n;
        ls.push_back(s);
    }
    struct sums {
        int n = 0;
        double span = 0, gap = 0, early = 0, late = 0, stage = 0, loop = 0, loop_max = 0, epi = 0, tail = 0;
    };
    std::map<std::string, sums> by;
    std::vector<std::string> order;
    double spans = 0;
    for (std::size_t i = 1; i < launches.size(); ++i) {
        const launch_stats& s = ls[i];
        const launch_stats& prev = ls[i - 1];
        const std::string c = launch_class(launches[i]);
        if (by.find(c) == by.end()) order.push_back(c);
        sums& m = by[c];
        ++m.n;
        m.span += (s.done_max - prev.done_max) * 1e-3;
        spans += (s.done_max - prev.done_max) * 1e-3;
        m.gap += (s.waited_min - prev.done_max) * 1e-3;
        m.early += (s.waited_mean - s.entry_mean) * 1e-3;
        m.late += s.late;
        m.stage += s.staged * 1e-3;
        m.loop += s.loop * 1e-3;
        m.loop_max += s.loop_max * 1e-3;
        m.epi += s.done * 1e-3;
        m.tail += (s.done_max - s.done_mean) * 1e-3;
    }
    std::printf("launch trace: %zu v3 launches (%zu CTA stamps, %.0f%% of them whole microseconds), first to last done "
                "%.1f us, the step %.1f us; us per launch, mean over each class's launches\n",
                launches.size(), stamps, stamps > 0 ? 100.0 * static_cast<double>(coarse) / static_cast<double>(stamps) : 0.0,
                (ls.back().done_max - t0) * 1e-3, step_s * 1e6);
    std::printf("| launch | n | span | gap | early | late CTAs | stage | loop | loop max | epi | tail |\n");
    std::printf("| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |\n");
    for (const std::string& c : order) {
        const sums& m = by[c];
        const double n = m.n;
        std::printf("| %s | %d | %.2f | %.2f | %.2f | %.1f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", c.c_str(), m.n, m.span / n,
                    m.gap / n, m.early / n, m.late / n, m.stage / n, m.loop / n, m.loop_max / n, m.epi / n, m.tail / n);
    }
    std::printf("(sum of spans %.1f us; the rest of the step is before the first v3 launch and after the last: the LM head)\n", spans);
}

}  // namespace qbench::gptq::test
