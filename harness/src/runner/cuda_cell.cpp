#include "qbench/runner/cuda_cell.hpp"

#include "qbench/backend/registry.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/engine/cuda_api.hpp"
#include "qbench/engine/prompt.hpp"
#include "qbench/engine/vision_tower.hpp"
#include "qbench/io/page_cache.hpp"
#include "qbench/io/synthetic_checkpoint.hpp"
#include "qbench/io/tensor_source.hpp"
#include "qbench/results/metrics.hpp"
#include "qbench/runner/cell_execution.hpp"
#include "qbench/runner/generation_metrics.hpp"
#include "qbench/runner/quality.hpp"

#include <cuda_runtime.h>

#include <chrono>

namespace qbench {

int cuda_device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

nlohmann::ordered_json cuda_environment_with_bandwidth() {
    if (cuda_device_count() == 0) return nullptr;
    auto context = make_device_context();
    nlohmann::ordered_json j = gpu_environment(*context);
    j["stream_bandwidth_bytes_per_s"] = measure_stream_bandwidth_gbs(*context) * 1e9;
    return j;
}

namespace {

std::unique_ptr<cuda_executor> load_executor(const cuda_cell_inputs& in, device_context& context) {
    auto source = open_checkpoint(in.artifact);
    return make_cuda_executor(in.model, *source, in.b, in.cell, context);
}

}  // namespace

void run_cuda_cell(const cuda_cell_inputs& in, nlohmann::ordered_json& m) {
    const prompt p = make_prompt(in.model, in.cell.generation, in.cell.seed);

    // The FP16 reference for quality, made (once per model and prompt shape) before the budgeted context exists.
    if (in.on_phase) in.on_phase("quality-reference");
    prepare_quality_reference(in.model, p, in.cell, in.cache_dir, [&]() -> std::unique_ptr<executor> {
        struct owning_executor : executor {
            device_context_ptr context;
            std::unique_ptr<cuda_executor> exec;
            std::unique_ptr<tensor_source> source;
            generation_output generate(const prompt& q, const generation_config& g) override { return exec->generate(q, g); }
            const generation_timing& last_timing() const override { return exec->last_timing(); }
            std::vector<std::vector<float>> teacher_forced_logits(const prompt& q, const std::vector<std::int32_t>& f) override {
                return exec->teacher_forced_logits(q, f);
            }
        };
        auto r = std::make_unique<owning_executor>();
        r->context = make_device_context();
        const auto fp16_ckpt = ensure_synthetic_checkpoint(in.model, in.cell.seed, in.cache_dir / "checkpoints");
        r->source = open_checkpoint(fp16_ckpt);
        cell_spec reference = in.cell;
        reference.framework = "fp16";
        reference.bits = 16;
        r->exec = make_cuda_executor(in.model, *r->source, *builtin_backends().find("fp16"), reference, *r->context);
        return r;
    });

    cuda_context_options options;
    if (in.vram_budget_bytes > 0) options.vram_budget_bytes = in.vram_budget_bytes;
    auto context = make_device_context(options);
    double stream_bps = in.stream_bandwidth_bytes_per_s;
    if (stream_bps <= 0) {
        stream_bps = measure_stream_bandwidth_gbs(*context) * 1e9;
        reset_memory_peaks(*context);
    }

    // MiniGPT-4 builds its vision encoder before the LLM and keeps it on the GPU in fp16: reserve those bytes first,
    // so an instance budget meets them where the real deployment does.
    std::shared_ptr<void> vision_tower;
    if (const vision_tower_spec* tower = find_vision_tower(in.model.vision_tower)) {
        if (in.on_phase) in.on_phase("vision-tower");
        const std::uint64_t bytes = vision_tower_bytes(*tower, in.model.hidden_size);
        vision_tower = hold_device_memory(*context, bytes, "MiniGPT-4 vision tower " + in.model.vision_tower + " (fp16, resident)");
        m[metric::k_vram_vision_tower_bytes] = bytes;
    }

    if (in.on_phase) in.on_phase("load");
    if (in.cold_load) evict_from_page_cache(in.artifact);
    auto exec = load_executor(in, *context);
    const cuda_load_report& load = exec->load_report();
    m[metric::k_load_time_s] = load.total_s;
    m[metric::k_load_read_s] = load.read_s;
    m[metric::k_load_upload_s] = load.upload_s;
    m[metric::k_load_quantize_s] = load.quantize_s;
    m[metric::k_weight_bytes] = load.weight_bytes;

    if (in.on_phase) in.on_phase("generate");
    const generation_config g = generation_config_for(in.cell);
    // Bytes of a decode step at the mean context length of the generation (the KV cache grows by one each step).
    const std::int64_t mean_context = p.length() + in.cell.generation.max_new_tokens / 2;
    const std::uint64_t step_bytes = exec->bytes_per_decode_step(std::max<std::int64_t>(in.cell.beam, 1), mean_context);
    measure_generation(*exec, p, g, in.cell, step_bytes, stream_bps, m);
    nlohmann::ordered_json paths;
    paths["decode"] = exec->kernel_path(std::max<std::int64_t>(in.cell.beam, 1));
    paths["prefill"] = exec->kernel_path(p.length());
    paths["decode_graph"] = exec->graphs_used() ? "cuda-graph" : "kernel-by-kernel";
    m[metric::k_kernel_paths] = paths;

    const cuda_memory_report mem = memory_report(*context);
    m[metric::k_vram_peak_bytes] = mem.allocated_peak_bytes;
    m[metric::k_vram_device_peak_bytes] = mem.device_peak_bytes;
    m[metric::k_vram_context_bytes] = mem.context_bytes + mem.library_bytes;
    m[metric::k_vram_workspace_bytes] = mem.workspace_bytes;

    if (in.on_phase) in.on_phase("quality");
    m[metric::k_quality] = quality_against_fp16(*exec, in.model, p, in.cell, in.cache_dir,
                                                [] () -> std::unique_ptr<executor> {
                                                    throw error("quality reference missing after preparation");
                                                });

    // Warm load: the same checkpoint again, now in the page cache.
    if (in.on_phase) in.on_phase("warm-load");
    exec.reset();
    const auto t0 = std::chrono::steady_clock::now();
    exec = load_executor(in, *context);
    m[metric::k_load_time_warm_s] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace qbench
