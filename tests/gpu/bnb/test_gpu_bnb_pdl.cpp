// Programmatic dependent launch and the bnb batch-1 kernels: each requests its first weights before
// griddepcontrol.wait (they never change) but must read its activations only after it. The kernel runs behind a
// producer that triggers its dependents at once and writes x only after a long spin; its output must equal that of
// an ordinary launch on the same x, bit for bit. A kernel whose x loads the compiler hoisted above the wait (as
// nvcc did with __ldg of a __restrict__ x: the team kernels' SASS had the x LDGs before ACQBULK) reads the stale x.
// On GPUs without PDL (before sm_90) both launches are ordinary ones and the test checks only the equality.
#include "backends/bnb/bnb_kernels.cuh"
#include "backends/bnb/bnb_quant_ref.hpp"
#include "gpu_bnb_producer.hpp"
#include "gpu_bnb_util.hpp"
#include "gpu_bnb_weight.hpp"
#include "../../unit/bnb/bnb_test_util.hpp"

#include <catch2/catch.hpp>

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

using namespace qbench;
using namespace qbench::bnb;
using namespace qbench::bnb::test;

namespace {

// ~1 ms at H200 clocks: every CTA of the kernel after the producer is resident long before x is written.
constexpr long long k_spin_cycles = 2'000'000;

std::vector<std::uint16_t> bits_of(const dev<__half>& d) {
    std::vector<std::uint16_t> b(d.size());
    cuda_ok(cudaDeviceSynchronize(), "kernels");
    cuda_ok(cudaMemcpy(b.data(), d.get(), b.size() * 2, cudaMemcpyDeviceToHost), "download");
    return b;
}

}  // namespace

TEST_CASE("gpu bnb pdl: batch-1 kernels read x only after the previous kernel finished", "[gpu][bnb][pdl]") {
    int device = 0, major = 0;
    cuda_ok(cudaGetDevice(&device), "device");
    cuda_ok(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "compute capability");
    const bool pdl = major >= 9;
    cudaStream_t stream = nullptr;
    cuda_ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
    const launch_options ordinary{stream, false}, dependent{stream, pdl};

    const std::int64_t k = 4096, n = 2048;
    const std::vector<float> xv = random_activations(2001, 1, k, 53);
    const dev<__half> src = to_device_half(xv);
    dev<__half> x(static_cast<std::size_t>(k));
    std::vector<std::vector<float>> wv;
    for (std::uint64_t i = 0; i < 3; ++i) wv.push_back(random_weights(2010 + i, n * k, 0.02f));

    // Runs `launch` (which writes ys from x) once on the final x with an ordinary launch and once behind the slow
    // producer with PDL; both outputs must agree bit for bit.
    auto check = [&](const std::string& what, std::size_t outputs, std::size_t length,
                     const std::function<void(const launch_options&, const std::vector<dev<__half>>&)>& launch) {
        std::vector<dev<__half>> want, got;
        for (std::size_t i = 0; i < outputs; ++i) {
            want.emplace_back(length);
            got.emplace_back(length);
            want.back().poison();
            got.back().poison();
        }
        cuda_ok(cudaMemcpyAsync(x.get(), src.get(), k * 2, cudaMemcpyDeviceToDevice, stream), "x");
        launch(ordinary, want);
        cuda_ok(cudaMemsetAsync(x.get(), 0, k * 2, stream), "stale x");
        launch_slow_producer(src.get(), x.get(), k, k_spin_cycles, stream);
        launch(dependent, got);
        cuda_ok(cudaStreamSynchronize(stream), what.c_str());
        for (std::size_t i = 0; i < outputs; ++i) {
            INFO(what << " output " << i << (pdl ? " (PDL)" : " (no PDL on this GPU)"));
            CHECK(bits_of(got[i]) == bits_of(want[i]));
        }
    };

    for (const bool nested : {false, true}) {
        const quant_4bit_params qp{quant_type::nf4, 64, nested};
        std::vector<std::unique_ptr<device_4bit>> w;
        for (std::size_t i = 0; i < 3; ++i) w.push_back(std::make_unique<device_4bit>(quantize_4bit_ref(wv[i], n, k, qp)));
        const std::string kind = nested ? "nf4 dq" : "nf4";
        check(kind + " single", 1, static_cast<std::size_t>(n), [&](const launch_options& o, const std::vector<dev<__half>>& ys) {
            launch_gemv_4bit_team(w[0]->view, x.get(), ys[0].get(), o);
        });
        check(kind + " q/k/v group", 3, static_cast<std::size_t>(n), [&](const launch_options& o, const std::vector<dev<__half>>& ys) {
            const device_4bit_view views[3] = {w[0]->view, w[1]->view, w[2]->view};
            __half* const outs[3] = {ys[0].get(), ys[1].get(), ys[2].get()};
            launch_gemv_4bit_team_group(views, 3, x.get(), outs, o);
        });
        check(kind + " gate/up + SwiGLU", 1, static_cast<std::size_t>(n), [&](const launch_options& o, const std::vector<dev<__half>>& ys) {
            launch_gemv_4bit_team_swiglu(w[0]->view, w[1]->view, x.get(), ys[0].get(), o);
        });
    }
    for (const float threshold : {6.0f, 0.0f}) {
        const int8_weight q8 = quantize_int8_ref(wv[0], n, k);
        const dev<std::int8_t> cb(q8.cb);
        const dev<float> scb(q8.scb);
        check("int8 t" + std::to_string(threshold), 1, static_cast<std::size_t>(n), [&](const launch_options& o, const std::vector<dev<__half>>& ys) {
            launch_gemv_int8_fused(cb.get(), scb.get(), n, k, x.get(), threshold, ys[0].get(), o);
        });
    }
    cuda_ok(cudaStreamDestroy(stream), "stream");
}
