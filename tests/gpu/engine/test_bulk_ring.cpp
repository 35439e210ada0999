// bulk_ring.cuh: bytes copied through a ring of shared-memory stages by the bulk copy engine arrive whole and in
// order, with consumers that dawdle (a stage overwritten before its release, or read before its bytes arrived, would
// show up as a wrong word), for a ring of 1 stage and of 3, launched directly and replayed from a CUDA graph.
#include "bulk_ring_check.cuh"
#include "gpu_test_util.hpp"

#include <catch2/catch.hpp>



using namespace qbench;
using namespace qbench::test;

TEST_CASE("bulk_ring: a copy through the ring arrives whole", "[gpu][bulk_ring]") {
    device_context& ctx = context();
    if (ctx.properties().major < 9) {
        WARN("bulk copies need sm_90: nothing to check on this GPU");
        return;
    }
    const int ctas = 2 * ctx.properties().multiProcessorCount;
    const std::uint32_t stages_per_cta = 37;  // not a multiple of either ring
    const std::size_t words = static_cast<std::size_t>(ctas) * stages_per_cta * 1024;
    const std::uint64_t seed = fresh_seed();
    CAPTURE(seed);
    std::vector<std::uint32_t> in(words);
    for (std::size_t i = 0; i < words; ++i) in[i] = static_cast<std::uint32_t>(random_bits(seed, i));
    device_buffer src = to_device(in);
    device_buffer dst = ctx.allocate(words * 4, "bulk ring output");
    for (const int ring : {1, 3}) {
        CAPTURE(ring);
        QB_CUDA_CHECK(cudaMemsetAsync(dst.get(), 0xff, dst.size(), ctx.stream()));
        launch_bulk_ring_copy(ctas, ring, stages_per_cta, src.get(), dst.get(), ctx.stream());
        QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
        std::vector<std::uint32_t> out(words);
        QB_CUDA_CHECK(cudaMemcpy(out.data(), dst.get(), words * 4, cudaMemcpyDeviceToHost));
        std::size_t wrong = 0;
        for (std::size_t i = 0; i < words; ++i) wrong += out[i] != in[i];
        CHECK(wrong == 0);

        // From a graph, three replays into a poisoned output.
        QB_CUDA_CHECK(cudaMemsetAsync(dst.get(), 0, dst.size(), ctx.stream()));
        cudaStream_t st = ctx.stream();
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        QB_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
        launch_bulk_ring_copy(ctas, ring, stages_per_cta, src.get(), dst.get(), st);
        QB_CUDA_CHECK(cudaStreamEndCapture(st, &graph));
        QB_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
        for (int i = 0; i < 3; ++i) QB_CUDA_CHECK(cudaGraphLaunch(exec, st));
        QB_CUDA_CHECK(cudaStreamSynchronize(st));
        QB_CUDA_CHECK(cudaMemcpy(out.data(), dst.get(), words * 4, cudaMemcpyDeviceToHost));
        wrong = 0;
        for (std::size_t i = 0; i < words; ++i) wrong += out[i] != in[i];
        CHECK(wrong == 0);
        QB_CUDA_CHECK(cudaGraphExecDestroy(exec));
        QB_CUDA_CHECK(cudaGraphDestroy(graph));
    }
}
