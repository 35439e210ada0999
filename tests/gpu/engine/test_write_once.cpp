// write_once.cuh under a cooperative launch: CTAs handing each other words phase after phase read every word with the
// value its writer stored, with and without the relaxed grid hint, directly and replayed from a CUDA graph (the
// re-arming memset in the graph); without waiting for the words the same kernel reads unwritten ones (the check can
// fail).
#include "write_once_check.cuh"
#include "gpu_test_util.hpp"

#include "cuda/write_once.cuh"

#include <catch2/catch.hpp>

#include <numeric>

using namespace qbench;
using namespace qbench::test;

namespace {

constexpr int k_phases = 64;

struct write_once_run {
    int ctas = 0;
    device_buffer counter, words, errors;
    write_once_run() {
        device_context& ctx = context();
        ctas = write_once_check_ctas_per_sm() * ctx.properties().multiProcessorCount;
        counter = ctx.allocate(16, "hint counter");
        words = ctx.allocate(static_cast<std::size_t>(k_phases) * ctas * k_write_once_words * 4, "write-once words");
        errors = ctx.allocate(static_cast<std::size_t>(ctas) * 4, "write-once errors");
    }
    std::uint64_t errors_seen() const {
        QB_CUDA_CHECK(cudaStreamSynchronize(context().stream()));
        std::vector<std::uint32_t> e(static_cast<std::size_t>(ctas));
        QB_CUDA_CHECK(cudaMemcpy(e.data(), errors.get(), e.size() * 4, cudaMemcpyDeviceToHost));
        return std::accumulate(e.begin(), e.end(), std::uint64_t{0});
    }
    void enqueue(bool hint, bool wait, cudaStream_t st) {
        launch_write_once_check(ctas, k_phases, hint, wait, counter.as<unsigned>(), words.as<std::uint32_t>(),
                                errors.as<std::uint32_t>(), st);
    }
};

}  // namespace

TEST_CASE("written_word: only the unwritten pattern changes, into canonical fp16 NaNs", "[gpu][write_once]") {
    CHECK(written_word(k_unwritten) == 0x7e007e00u);
    CHECK(written_word(0x7e007e00u) == 0x7e007e00u);
    CHECK(written_word(0u) == 0u);
    CHECK(written_word(0xfffffffeu) == 0xfffffffeu);
    for (int p = 0; p < 8; ++p)
        for (int c = 0; c < 64; ++c)
            for (int w = 0; w < k_write_once_words; ++w) REQUIRE(write_once_value(p, c, w) != k_unwritten);
}

TEST_CASE("write_once: every word read is the one its writer stored, with and without the hint", "[gpu][write_once]") {
    write_once_run run;
    REQUIRE(run.ctas > 0);
    cudaStream_t st = context().stream();
    run.enqueue(true, true, st);
    CHECK(run.errors_seen() == 0);
    run.enqueue(false, true, st);
    CHECK(run.errors_seen() == 0);

    // Captured with the counter's and the words' memsets, replayed three times: each replay re-arms the words.
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    QB_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    run.enqueue(true, true, st);
    QB_CUDA_CHECK(cudaStreamEndCapture(st, &graph));
    QB_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    for (int i = 0; i < 3; ++i) QB_CUDA_CHECK(cudaGraphLaunch(exec, st));
    CHECK(run.errors_seen() == 0);
    QB_CUDA_CHECK(cudaGraphExecDestroy(exec));
    QB_CUDA_CHECK(cudaGraphDestroy(graph));
}

TEST_CASE("write_once: the check sees unwritten words when the readers do not wait", "[gpu][write_once]") {
    write_once_run run;
    run.enqueue(false, false, context().stream());
    CHECK(run.errors_seen() > 0);
}
