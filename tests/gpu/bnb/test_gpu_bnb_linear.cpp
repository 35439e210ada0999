// The bnb backend's GPU linears end to end: loaded through the backend and a device_context (quantize on load,
// or upload of a bitsandbytes serialization), every kernel path, against the same backend's CPU linear; plus CUDA
// graph capture of a decode-sized forward.
#include "backends/bnb/bnb_backend.hpp"
#include "backends/bnb/bnb_quant_ref.hpp"
#include "backends/bnb/bnb_serialize.hpp"
#include "cuda/device_context.cuh"
#include "gpu_bnb_util.hpp"
#include "../../unit/bnb/bnb_test_util.hpp"

#include <catch2/catch.hpp>

using namespace qbench;
using namespace qbench::bnb;
using namespace qbench::bnb::test;

namespace {

cell_spec cell_of(std::int64_t bits, const std::string& type, bool dq, const std::string& path, double threshold) {
    cell_spec c;
    c.model = "test";
    c.framework = "bnb";
    c.bits = bits;
    c.bnb.quant_type = type;
    c.bnb.double_quant = dq;
    c.bnb.small_batch_path = path;
    c.bnb.int8_threshold = threshold;
    return c;
}

std::vector<float> gpu_forward(device_linear& l, const std::vector<float>& x, std::int64_t m, cudaStream_t stream) {
    dev<__half> xd = to_device_half(x);
    dev<__half> y(static_cast<std::size_t>(m * l.out_features()));
    y.poison();
    l.forward(xd.get(), m, y.get(), stream);
    cuda_ok(cudaStreamSynchronize(stream), "forward");
    return from_device_half(y);
}

}  // namespace

TEST_CASE("gpu bnb: device linears match the CPU linears on every path", "[gpu][bnb]") {
    device_context context;
    const auto backend = make_bnb_backend();
    struct layer {
        std::int64_t out, in;
    };
    for (const layer L : {layer{4096, 4096}, layer{4096, 11008}, layer{96, 160}, layer{33, 100}, layer{7, 40}}) {
        const std::vector<float> wv = random_weights(static_cast<std::uint64_t>(L.out * 7 + L.in), L.out * L.in, 0.02f);
        memory_source source;
        source.add("model.layers.0.mlp.down_proj.weight", f16_tensor(wv, {L.out, L.in}));
        const std::int64_t mmax = 16;
        const std::vector<float> x = random_activations(static_cast<std::uint64_t>(L.in), mmax, L.in, 53);
        const std::vector<cell_spec> cells = {
            cell_of(4, "nf4", false, "dequantize", 6), cell_of(4, "nf4", true, "fused", 6),
            cell_of(4, "fp4", true, "dequantize", 6),  cell_of(8, "nf4", false, "dequantize", 6),
            cell_of(8, "nf4", false, "dequantize", 0), cell_of(16, "nf4", false, "dequantize", 6)};
        for (const cell_spec& cell : cells) {
            const linear_request req{source, "model.layers.0.mlp.down_proj", linear_kind::down_proj, L.in, L.out, cell};
            const auto cpu = backend->load_cpu_linear(req);
            const auto gpu = backend->load_device_linear(req, context);
            CHECK(gpu->format_name() == cpu->format_name());
            CHECK(gpu->weight_bytes() == cpu->weight_bytes());
            std::vector<float> wdq(static_cast<std::size_t>(L.out * L.in));
            if (cell.bits == 4) wdq = dequantize_4bit_ref(quantize_4bit_ref(wv, L.out, L.in, {cell.bnb.quant_type == "nf4" ? quant_type::nf4 : quant_type::fp4, 64, cell.bnb.double_quant}));
            else wdq = wv;
            const std::vector<double> s = abs_product(x, wdq, mmax, L.out, L.in);
            for (std::int64_t m : {1, 2, 3, 4, 8, 16}) {
                const std::vector<float> xm(x.begin(), x.begin() + m * L.in);
                std::vector<float> ref(static_cast<std::size_t>(m * L.out));
                cpu->forward(xm.data(), m, ref.data());
                const std::vector<float> got = gpu_forward(*gpu, xm, m, context.stream());
                const std::vector<double> sm(s.begin(), s.begin() + m * L.out);
                const comparison c = compare(got, ref, sm, cell.bits == 8 ? 2e-4 : 2e-3, 2.0 / 1024, 1e-6);
                INFO(cpu->format_name() << " [" << L.out << ", " << L.in << "] m " << m << " path "
                                        << gpu->kernel_path(m) << " first bad " << c.first_bad << " worst "
                                        << c.worst_ratio << " rel_l2 " << c.rel_l2);
                CHECK(c.bad == 0);
            }
        }
    }
}

TEST_CASE("gpu bnb: kernel paths follow bitsandbytes' dispatch", "[gpu][bnb]") {
    device_context context;
    const auto backend = make_bnb_backend();
    memory_source source;
    source.add("w.weight", f16_tensor(random_weights(9, 64 * 4096, 0.02f), {64, 4096}));
    source.add("v.weight", f16_tensor(random_weights(10, 64 * 100, 0.02f), {64, 100}));
    const auto nf4 = backend->load_device_linear({source, "w", linear_kind::q_proj, 4096, 64, cell_of(4, "nf4", false, "dequantize", 6)}, context);
    CHECK(nf4->kernel_path(1) == "bnb-gemv-4bit");  // the team kernel; "+fused" only after a fused launch ran
    CHECK(nf4->kernel_path(2) == "bnb-dequant-4bit+cublas");
    const auto dq = backend->load_device_linear({source, "w", linear_kind::q_proj, 4096, 64, cell_of(4, "nf4", true, "dequantize", 6)}, context);
    CHECK(dq->kernel_path(1) == "bnb-gemv-4bit+dq");
    CHECK(dq->kernel_path(2) == "bnb-dequant-4bit+dq+cublas");
    const auto fused = backend->load_device_linear({source, "w", linear_kind::q_proj, 4096, 64, cell_of(4, "nf4", false, "fused", 6)}, context);
    CHECK(fused->kernel_path(1) == "bnb-gemv-4bit");
    CHECK(fused->kernel_path(4) == "bnb-gemv-4bit-v2");  // batches stay on the fused warp kernel (v2)
    CHECK(fused->kernel_path(16) == "bnb-dequant-4bit+cublas");
    // K = 100 is not a multiple of 32: like bitsandbytes (K % blocksize), even batch 1 dequantizes.
    const auto odd = backend->load_device_linear({source, "v", linear_kind::q_proj, 100, 64, cell_of(4, "nf4", false, "fused", 6)}, context);
    CHECK(odd->kernel_path(1) == "bnb-dequant-4bit+cublas");
    const auto i8 = backend->load_device_linear({source, "w", linear_kind::q_proj, 4096, 64, cell_of(8, "nf4", false, "dequantize", 6)}, context);
    CHECK(i8->kernel_path(1) == "bnb-int8-fused-gemv");
    CHECK(i8->kernel_path(2) == "bnb-int8-quant+gemv");
    CHECK(i8->kernel_path(32) == "bnb-int8-quant+cublaslt+epilogue");
}

TEST_CASE("gpu bnb: a bitsandbytes serialization uploads as it is", "[gpu][bnb]") {
    device_context context;
    const auto backend = make_bnb_backend();
    const std::int64_t out = 256, in = 512;
    const std::vector<float> wv = random_weights(77, out * in, 0.02f);
    const quant_4bit_weight w = quantize_4bit_ref(wv, out, in, {quant_type::fp4, 64, true});
    memory_source source;
    for (auto& e : state_dict_4bit("lin", w)) source.add(e.name, std::move(e.tensor));
    const cell_spec cell = cell_of(4, "fp4", true, "dequantize", 6);
    const linear_request req{source, "lin", linear_kind::o_proj, in, out, cell};
    const auto gpu = backend->load_device_linear(req, context);
    const std::vector<float> x = random_activations(78, 3, in, 0);
    std::vector<float> ref(static_cast<std::size_t>(3 * out));
    matmul_4bit_ref(w, x.data(), 3, ref.data());
    const std::vector<double> s = abs_product(x, dequantize_4bit_ref(w), 3, out, in);
    const comparison c = compare(gpu_forward(*gpu, x, 3, context.stream()), ref, s, 2e-3, 2.0 / 1024, 1e-6);
    CHECK(c.bad == 0);
}

TEST_CASE("gpu bnb: decode-sized forwards are capturable in a CUDA graph", "[gpu][bnb]") {
    device_context context;
    const auto backend = make_bnb_backend();
    memory_source source;
    const std::int64_t out = 512, in = 1024;
    source.add("lin.weight", f16_tensor(random_weights(81, out * in, 0.02f), {out, in}));
    for (const cell_spec& cell : {cell_of(4, "nf4", true, "dequantize", 6), cell_of(8, "nf4", false, "dequantize", 6)}) {
        const linear_request req{source, "lin", linear_kind::o_proj, in, out, cell};
        const auto gpu = backend->load_device_linear(req, context);
        REQUIRE(gpu->graph_capturable());
        const std::vector<float> x = random_activations(82, 1, in, 41);
        const std::vector<float> direct = gpu_forward(*gpu, x, 1, context.stream());
        dev<__half> xd = to_device_half(x);
        dev<__half> y(static_cast<std::size_t>(out));
        y.poison();
        cudaStream_t stream = context.stream();
        cudaGraph_t graph = nullptr;
        cudaGraphExec_t exec = nullptr;
        cuda_ok(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "begin capture");
        gpu->forward(xd.get(), 1, y.get(), stream);
        cuda_ok(cudaStreamEndCapture(stream, &graph), "end capture");
        cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
        for (int i = 0; i < 3; ++i) cuda_ok(cudaGraphLaunch(exec, stream), "launch");
        cuda_ok(cudaStreamSynchronize(stream), "graph");
        CHECK(from_device_half(y) == direct);  // deterministic: the same bits as the direct call
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
    }
}
