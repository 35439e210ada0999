// The persistent GPTQ decode stack (gptq_chain.cuh, decode_stack.hpp) inside the CUDA executor against the same
// executor launching the layers kernel by kernel (QBENCH_DECODE_STACK=0): identical tokens and bit-identical scores for
// greedy and sampled generations, eager and replayed from the captured graph, at 2, 3, 4 and 8 bits, on a model whose
// k-slices are empty and uneven and whose attention is grouped; and the kernel path that says which ran. (Vicuna-7B's
// shapes run in the reference runs; a synthetic 7B-shaped model quantized from 128 calibration tokens gave a Hessian
// that is not positive definite in its second layer, so it is not used here.)
#include "backends/gptq/gptq_backend.hpp"
#include "backends/gptq/gptq_quantize.hpp"

#include "cuda/device_context.cuh"

#include "qbench/config/cell.hpp"
#include "qbench/engine/cuda_api.hpp"
#include "qbench/engine/decoding.hpp"
#include "qbench/engine/prompt.hpp"
#include "qbench/io/synthetic_checkpoint.hpp"
#include "qbench/io/tensor_source.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

using namespace qbench;
namespace fs = std::filesystem;

namespace {

device_context& context() {
    static device_context* ctx = new device_context();
    return *ctx;
}

/// Hidden 1024 (8 k-blocks: half the k-slices empty), intermediate 2816 (22 k-blocks: uneven slices), head_dim 128,
/// 8 query heads over 4 kv heads, three layers.
model_config awkward_model() {
    model_config m;
    m.name = "stack-awkward";
    m.hf_name = "qbench/stack-awkward";
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
    generation_output greedy, sample;
    std::string path;
};

run_result run(cuda_executor& gpu, const prompt& p, const char* stack) {
    ::setenv("QBENCH_DECODE_STACK", stack, 1);
    generation_config greedy;
    greedy.max_new_tokens = 24;
    generation_config sample = greedy;
    sample.mode = decode_mode::sample;
    sample.temperature = 0.9;
    sample.top_k = 40;
    sample.top_p = 0.95;
    sample.seed = 11;
    run_result r;
    for (int rep = 0; rep < 2; ++rep) {  // an eager warm-up step, then the captured graph
        r.greedy = gpu.generate(p, greedy);
        r.sample = gpu.generate(p, sample);
    }
    r.path = gpu.kernel_path(1);
    ::unsetenv("QBENCH_DECODE_STACK");
    return r;
}

void check_stack_matches_launches(const model_config& m, int bits, const fs::path& cache) {
    CAPTURE(m.name, bits);
    const fs::path fp16_dir = ensure_synthetic_checkpoint(m, 21, cache / "checkpoints");
    gptq::gptq_quantize_options o;
    o.bits = bits;
    o.gptq.group_size = 128;
    o.gptq.desc_act = false;
    o.gptq.sym = true;
    o.gptq.calibration_samples = 4;
    o.gptq.calibration_seq_len = 32;
    o.quality_sequences = 0;
    o.seed = 21;
    const fs::path art_dir = cache / (m.name + "-" + std::to_string(bits));
    const auto fp16 = open_checkpoint(fp16_dir);
    gptq::quantize_model(m, *fp16, o, art_dir, true);
    const auto art = open_checkpoint(art_dir);
    cell_spec cell;
    cell.model = m.name;
    cell.framework = "gptq";
    cell.bits = bits;
    cell.gptq = o.gptq;
    cell.seed = 21;
    const auto backend = make_gptq_backend();
    auto gpu = make_cuda_executor(m, *art, *backend, cell, context());
    generation_options go;
    go.prompt_tokens = 9;
    go.image_tokens = 0;
    const prompt p = make_prompt(m, go, 21);

    const run_result off = run(*gpu, p, "0");
    const run_result on = run(*gpu, p, "1");
    CAPTURE(off.path, on.path);
    CHECK(on.path.ends_with("+persistent-stack"));
    CHECK(off.path.find("persistent") == std::string::npos);
    CHECK(gpu->graphs_used());
    CHECK(on.greedy.tokens == off.greedy.tokens);
    CHECK(on.greedy.beam_scores == off.greedy.beam_scores);
    CHECK(on.sample.tokens == off.sample.tokens);
    CHECK(on.sample.beam_scores == off.sample.beam_scores);
    // A beam search (several rows) never takes the stack, and says so.
    generation_config beam;
    beam.max_new_tokens = 4;
    beam.mode = decode_mode::beam;
    beam.beam_width = 2;
    gpu->generate(p, beam);
    CHECK(gpu->kernel_path(1).find("persistent") == std::string::npos);
}

}  // namespace

TEST_CASE("the persistent GPTQ stack decodes bit-identically to the launched layers", "[gpu][gptq][stack]") {
    const fs::path cache = fs::temp_directory_path() / ("qbench-gptq-stack-" + std::to_string(::getpid()));
    fs::remove_all(cache);
    for (int bits : {4, 2, 3, 8}) check_stack_matches_launches(awkward_model(), bits, cache);
    fs::remove_all(cache);
}
