#pragma once
// Helpers of the GPU tests that run one CUDA executor with an environment switch off and then on and compare the
// generations bit for bit (test_gpu_gptq_stack, test_gpu_bnb_executor): the test program's device context, a small
// model with awkward shapes, a short prompt, and the generations of one setting.
#include "cuda/device_context.cuh"

#include "qbench/engine/cuda_api.hpp"
#include "qbench/engine/decoding.hpp"
#include "qbench/engine/generation.hpp"
#include "qbench/engine/model_config.hpp"
#include "qbench/engine/prompt.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

namespace qbench::test {

/// One device context for the whole test program, never destroyed (executors hold it until the process ends).
inline device_context& shared_context() {
    static device_context* ctx = new device_context();
    return *ctx;
}

/// Hidden 1024, intermediate 2816, head_dim 128, 8 query heads over 4 kv heads, three layers: GPTQ's k-slices are
/// half empty (8 k-blocks) and uneven (22), bnb's down_proj rows are one 96-thread team.
inline model_config awkward_model(const std::string& name) {
    model_config m;
    m.name = name;
    m.hf_name = "qbench/" + name;
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

/// Nine prompt tokens, no image.
inline prompt short_prompt(const model_config& m, std::uint64_t seed) {
    generation_options go;
    go.prompt_tokens = 9;
    go.image_tokens = 0;
    return make_prompt(m, go, seed);
}

struct switch_run {
    generation_output greedy, sample, beam;
    std::string path;  ///< kernel_path(1) after the runs
};

/// With the environment switch `name` at `value`: greedy and sampled generations of 24 tokens and, where beam_width > 1,
/// a beam search of 8 (each twice: an eager warm-up step, then the captured graph); the switch is unset afterwards.
inline switch_run run_with_switch(cuda_executor& gpu, const prompt& p, const char* name, const char* value,
                                  int beam_width = 0) {
    ::setenv(name, value, 1);
    generation_config greedy;
    greedy.max_new_tokens = 24;
    generation_config sample = greedy;
    sample.mode = decode_mode::sample;
    sample.temperature = 0.9;
    sample.top_k = 40;
    sample.top_p = 0.95;
    sample.seed = 11;
    generation_config beam;
    beam.max_new_tokens = 8;
    beam.mode = decode_mode::beam;
    beam.beam_width = beam_width;
    switch_run r;
    for (int rep = 0; rep < 2; ++rep) {
        r.greedy = gpu.generate(p, greedy);
        r.sample = gpu.generate(p, sample);
        if (beam_width > 1) r.beam = gpu.generate(p, beam);
    }
    r.path = gpu.kernel_path(1);
    ::unsetenv(name);
    return r;
}

}  // namespace qbench::test
