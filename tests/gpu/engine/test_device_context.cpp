// The accounting allocator, the VRAM budget, out-of-memory as a result, and the provenance measurements.
#include "cuda/cuda_check.cuh"
#include "cuda/device_context.cuh"

#include "qbench/common/errors.hpp"
#include "qbench/engine/cuda_api.hpp"

#include <catch2/catch.hpp>

#include <cstdio>

using namespace qbench;

namespace {
constexpr std::uint64_t MiB = 1ull << 20;

// A kernel-free check that the context still works: a memset and a copy back.
void check_usable(device_context& ctx) {
    device_buffer b = ctx.allocate(4096, "probe");
    QB_CUDA_CHECK(cudaMemsetAsync(b.get(), 0x3c, 4096, ctx.stream()));
    unsigned char host[16] = {};
    QB_CUDA_CHECK(cudaMemcpyAsync(host, b.get(), sizeof host, cudaMemcpyDeviceToHost, ctx.stream()));
    QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
    CHECK(host[7] == 0x3c);
}
}  // namespace

TEST_CASE("device context: allocations are accounted, the peak is kept", "[gpu][memory]") {
    device_context ctx;
    const device_memory_figures before = ctx.memory();
    CHECK(before.context > 0);
    CHECK(before.workspace == 32 * MiB);
    CHECK(before.allocated_current == before.workspace);  // the cuBLAS workspace went through the allocator
    {
        device_buffer a = ctx.allocate(100 * MiB, "a");
        device_buffer b = ctx.allocate(50 * MiB, "b");
        CHECK(ctx.memory().allocated_current == before.allocated_current + 150 * MiB);
        a.reset();
        CHECK(ctx.memory().allocated_current == before.allocated_current + 50 * MiB);
        device_buffer moved = std::move(b);
        CHECK(ctx.memory().allocated_current == before.allocated_current + 50 * MiB);
    }
    const device_memory_figures after = ctx.memory();
    CHECK(after.allocated_current == before.allocated_current);
    CHECK(after.allocated_peak == before.allocated_current + 150 * MiB);
    CHECK(after.device_peak >= after.context + 150 * MiB);
    ctx.reset_peaks();
    CHECK(ctx.memory().allocated_peak == before.allocated_current);
    std::printf("context %llu MiB, cuBLAS handles %llu MiB, workspace %llu MiB, device total %llu MiB\n",
                static_cast<unsigned long long>(after.context / MiB), static_cast<unsigned long long>(after.libraries / MiB),
                static_cast<unsigned long long>(after.workspace / MiB),
                static_cast<unsigned long long>(after.device_total / MiB));
}

TEST_CASE("device context: over the budget is out_of_memory(vram) with requested and available bytes", "[gpu][memory]") {
    std::uint64_t fixed = 0;
    {
        device_context probe;
        const auto f = probe.memory();
        fixed = f.context + f.libraries + f.workspace;
    }
    device_context_options options;
    options.budget_bytes = fixed + 64 * MiB;
    device_context ctx(options);
    const std::uint64_t available = ctx.available_bytes();
    CHECK(available <= 64 * MiB + 64 * MiB);  // the context may be measured a little differently the second time
    device_buffer a = ctx.allocate(available / 2, "half of the budget");
    try {
        ctx.allocate(available, "too much");
        FAIL("no out_of_memory");
    } catch (const out_of_memory& e) {
        CHECK(e.kind() == memory_kind::vram);
        CHECK(e.requested_bytes() == available);
        CHECK(e.available_bytes() == available - available / 2);
        CHECK(std::string(e.what()).find("too much") != std::string::npos);
    }
    check_usable(ctx);  // an OOM leaves the context usable
    CHECK(ctx.memory().allocated_peak <= *options.budget_bytes);
}

TEST_CASE("device context: a real device OOM is out_of_memory, not a crash", "[gpu][memory]") {
    device_context ctx;
    CHECK_THROWS_AS(ctx.allocate(1ull << 52, "a petabyte"), out_of_memory);
    check_usable(ctx);
}

TEST_CASE("device context: a budget below the context itself fails at creation", "[gpu][memory]") {
    device_context_options options;
    options.budget_bytes = 1 * MiB;
    CHECK_THROWS_AS(device_context(options), out_of_memory);
}

TEST_CASE("cuda api: environment and stream bandwidth for provenance", "[gpu][memory]") {
    device_context_ptr ctx = make_device_context();
    const nlohmann::json env = gpu_environment(*ctx);
    for (const char* key : {"gpu_name", "compute_capability", "multiprocessors", "l2_cache_bytes", "memory_total_bytes",
                            "driver_version", "cuda_runtime_version", "sm_clock_max_khz", "memory_clock_khz",
                            "ecc_enabled", "context_bytes"})
        CHECK(env.contains(key));
    const cuda_memory_report before = memory_report(*ctx);
    const double gbs = measure_stream_bandwidth_gbs(*ctx);
    std::printf("%s\nstream bandwidth: %.0f GB/s\n", env.dump().c_str(), gbs);
    CHECK(gbs > 100.0);
    CHECK(gbs < 20000.0);
    const cuda_memory_report after = memory_report(*ctx);
    CHECK(after.allocated_peak_bytes == before.allocated_peak_bytes);  // the scratch is left out of the peak
}
