// grid_barrier.cuh under a cooperative launch (launch_options::cooperative): CTAs exchanging values across barriers
// see only the current round's, directly and replayed from a CUDA graph (the counter's memset in the graph); without
// the barriers the same kernel sees stale values (the check can fail).
#include "grid_barrier_check.cuh"
#include "gpu_test_util.hpp"

#include <catch2/catch.hpp>

#include <numeric>

using namespace qbench;
using namespace qbench::test;

namespace {

struct barrier_run {
    int ctas = 0;
    device_buffer counter, slots, errors;
    barrier_run() {
        device_context& ctx = context();
        ctas = grid_barrier_check_ctas_per_sm() * ctx.properties().multiProcessorCount;
        counter = ctx.allocate(16, "barrier counter");
        slots = ctx.allocate(static_cast<std::size_t>(ctas) * 4, "barrier slots");
        errors = ctx.allocate(static_cast<std::size_t>(ctas) * 4, "barrier errors");
        QB_CUDA_CHECK(cudaMemsetAsync(slots.get(), 0, slots.size(), ctx.stream()));
    }
    std::uint64_t errors_seen() const {
        std::vector<std::uint32_t> e(static_cast<std::size_t>(ctas));
        QB_CUDA_CHECK(cudaMemcpy(e.data(), errors.get(), e.size() * 4, cudaMemcpyDeviceToHost));
        return std::accumulate(e.begin(), e.end(), std::uint64_t{0});
    }
    void enqueue(int rounds, bool barriers, cudaStream_t st, bool named = false) {
        launch_grid_barrier_check(ctas, rounds, barriers, counter.as<unsigned>(), slots.as<std::uint32_t>(),
                                  errors.as<std::uint32_t>(), st, named);
    }
};

}  // namespace

TEST_CASE("grid_barrier: every CTA sees the round's values, launched directly and from a graph", "[gpu][barrier]") {
    barrier_run run;
    REQUIRE(run.ctas > 0);
    cudaStream_t st = context().stream();
    run.enqueue(200, true, st);
    QB_CUDA_CHECK(cudaStreamSynchronize(st));
    CHECK(run.errors_seen() == 0);

    // Captured with the counter's memset, replayed three times: each replay starts the count from zero again.
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    QB_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    run.enqueue(100, true, st);
    QB_CUDA_CHECK(cudaStreamEndCapture(st, &graph));
    QB_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    for (int i = 0; i < 3; ++i) QB_CUDA_CHECK(cudaGraphLaunch(exec, st));
    QB_CUDA_CHECK(cudaStreamSynchronize(st));
    CHECK(run.errors_seen() == 0);
    QB_CUDA_CHECK(cudaGraphExecDestroy(exec));
    QB_CUDA_CHECK(cudaGraphDestroy(graph));
}

TEST_CASE("grid_barrier: the check sees stale values without the barriers", "[gpu][barrier]") {
    barrier_run run;
    cudaStream_t st = context().stream();
    run.enqueue(200, false, st);
    QB_CUDA_CHECK(cudaStreamSynchronize(st));
    CHECK(run.errors_seen() > 0);
}

TEST_CASE("grid_barrier_among: the CTAs' first 256 threads synchronise while a 9th warp has left", "[gpu][barrier]") {
    barrier_run run;
    cudaStream_t st = context().stream();
    run.enqueue(200, true, st, true);
    QB_CUDA_CHECK(cudaStreamSynchronize(st));
    CHECK(run.errors_seen() == 0);
    run.enqueue(200, false, st, true);
    QB_CUDA_CHECK(cudaStreamSynchronize(st));
    CHECK(run.errors_seen() > 0);
}
