// The bnb backend inside the CUDA executor with QBENCH_NORM_IN_EPILOGUE=1 (o_proj / down_proj add into the residual
// stream and their launch's last CTA forms the next RMSNorm: fused_linear::forward_residual_normed) against the same
// executor running the RMSNorm kernels: identical tokens and bit-identical scores for greedy, sampled and beam
// generations, eager and replayed from the captured graph, for NF4 and FP4 (plain and double-quantized absmax) on a
// model with grouped attention and an intermediate width that is not a multiple of the team's CTA; and the kernel path
// that says which ran. LLM.int8() does not offer the epilogue and must keep the kernels.
#include "backends/bnb/bnb_backend.hpp"

#include "cuda/device_context.cuh"

#include "qbench/config/cell.hpp"
#include "qbench/engine/cuda_api.hpp"
#include "qbench/engine/decoding.hpp"
#include "qbench/engine/prompt.hpp"
#include "qbench/io/synthetic_checkpoint.hpp"
#include "qbench/io/tensor_source.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

using namespace qbench;

namespace {

device_context& context() {
    static device_context* ctx = new device_context();
    return *ctx;
}

/// Hidden 1024, intermediate 2816 (88 slices: a 96-thread team), 8 query heads over 4 kv heads, three layers.
model_config awkward_model() {
    model_config m;
    m.name = "bnb-epilogue-awkward";
    m.hf_name = "qbench/bnb-epilogue-awkward";
    m.hidden_size = 1024;
    m.intermediate_size = 2816;
    m.num_layers = 3;
    m.num_heads = 8;
    m.num_kv_heads = 4;
    m.vocab_size = 512;
    m.max_position = 256;
    m.rms_norm_eps = 1e-5;
    return m;
}

struct run_result {
    generation_output greedy, sample, beam;
    std::string path;
};

/// Greedy, sampled and beam generations (an eager step, then the graph) with QBENCH_NORM_IN_EPILOGUE at `value`.
run_result run(cuda_executor& gpu, const prompt& p, const char* value) {
    ::setenv("QBENCH_NORM_IN_EPILOGUE", value, 1);
    generation_config greedy;
    greedy.max_new_tokens = 16;
    generation_config sample = greedy;
    sample.mode = decode_mode::sample;
    sample.temperature = 0.9;
    sample.top_k = 40;
    sample.top_p = 0.95;
    sample.seed = 11;
    generation_config beam;  // two rows a step: the epilogue declines and the kernels run
    beam.max_new_tokens = 8;
    beam.mode = decode_mode::beam;
    beam.beam_width = 2;
    run_result r;
    for (int rep = 0; rep < 2; ++rep) {
        r.greedy = gpu.generate(p, greedy);
        r.sample = gpu.generate(p, sample);
        r.beam = gpu.generate(p, beam);
    }
    r.path = gpu.kernel_path(1);
    ::unsetenv("QBENCH_NORM_IN_EPILOGUE");
    return r;
}

cell_spec bnb_cell(const model_config& m, int bits, const char* type, bool dq) {
    cell_spec cell;
    cell.model = m.name;
    cell.framework = "bnb";
    cell.bits = bits;
    cell.bnb.quant_type = type;
    cell.bnb.double_quant = dq;
    cell.seed = 31;
    return cell;
}

}  // namespace

TEST_CASE("bnb: o/down forming the next RMSNorm in their launch decode bit-identically to the norm kernels",
          "[gpu][bnb][norm]") {
    const model_config m = awkward_model();
    const auto source = make_synthetic_source(m, 31);
    const auto backend = make_bnb_backend();
    generation_options go;
    go.prompt_tokens = 9;
    go.image_tokens = 0;
    const prompt p = make_prompt(m, go, 31);
    struct variant {
        int bits;
        const char* type;
        bool dq;
    };
    for (const variant v : {variant{4, "nf4", false}, variant{4, "nf4", true}, variant{4, "fp4", false}, variant{8, "nf4", false}}) {
        CAPTURE(v.bits, v.type, v.dq);
        auto gpu = make_cuda_executor(m, *source, *backend, bnb_cell(m, v.bits, v.type, v.dq), context());
        const run_result off = run(*gpu, p, "0");
        const run_result on = run(*gpu, p, "1");
        CAPTURE(off.path, on.path);
        CHECK(off.path.find("epilogue") == std::string::npos);
        if (v.bits == 4)
            CHECK(on.path.ends_with("+norm-in-epilogue"));
        else
            CHECK(on.path.find("epilogue") == std::string::npos);  // int8 declines: the kernels run
        CHECK(on.greedy.tokens == off.greedy.tokens);
        CHECK(on.greedy.beam_scores == off.greedy.beam_scores);
        CHECK(on.sample.tokens == off.sample.tokens);
        CHECK(on.sample.beam_scores == off.sample.beam_scores);
        CHECK(on.beam.beams == off.beam.beams);
        CHECK(on.beam.beam_scores == off.beam.beam_scores);
    }
}
