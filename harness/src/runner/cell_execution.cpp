#include "qbench/runner/cell_execution.hpp"

#include "qbench/backend/registry.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/common/host_memory.hpp"
#include "qbench/engine/cpu_executor.hpp"
#include "qbench/engine/cpu_model.hpp"
#include "qbench/engine/generation.hpp"
#include "qbench/engine/prompt.hpp"
#include "qbench/io/page_cache.hpp"
#include "qbench/io/synthetic_checkpoint.hpp"
#include "qbench/io/tensor_source.hpp"
#include "qbench/results/metrics.hpp"
#include "qbench/runner/cache_cap.hpp"
#include "qbench/runner/generation_metrics.hpp"
#include "qbench/runner/quality.hpp"
#if QBENCH_RUNNER_CUDA
#include "qbench/runner/cuda_cell.hpp"
#endif

#include <chrono>
#include <fstream>
#include <sys/resource.h>

namespace qbench {

namespace {

using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

std::uint64_t peak_rss_bytes() {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    return static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

// The artifact's own record of how it was made (GPTQ writes quantize_report.json beside its tensors), so a cell that
// reuses a cached artifact still reports what making it cost.
void merge_quantize_report(const std::filesystem::path& artifact, nlohmann::ordered_json& metrics) {
    const auto report = std::filesystem::is_directory(artifact) ? artifact / "quantize_report.json"
                                                                : artifact.parent_path() / "quantize_report.json";
    if (!std::filesystem::exists(report)) return;
    std::ifstream in(report);
    const auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return;
    for (const char* key : {metric::k_quantize_time_s, metric::k_quantize_host_peak_bytes,
                            metric::k_quantize_vram_peak_bytes})
        if (j.contains(key) && j[key].is_number()) metrics[key] = j[key];
}

// Bytes a load reads from disk: the safetensors files of the artifact (a file, or a directory of shards).
std::uint64_t checkpoint_file_bytes(const std::filesystem::path& artifact) {
    if (!std::filesystem::is_directory(artifact)) return std::filesystem::file_size(artifact);
    std::uint64_t bytes = 0;
    for (const auto& e : std::filesystem::directory_iterator(artifact))
        if (e.is_regular_file() && e.path().extension() == ".safetensors") bytes += e.file_size();
    return bytes;
}

struct budgets {
    std::uint64_t vram_bytes = 0;  // 0 = none
    std::uint64_t host_bytes = 0;
    double disk_mb_per_s = 0;      // the instance's EBS baseline, for the read-time projection; 0 = none
};

budgets budgets_for(const cell_spec& cell, const catalog& cat) {
    if (cell.instance == "local") return {};
    const auto it = cat.instances.find(cell.instance);
    if (it == cat.instances.end()) throw error("unknown instance '" + cell.instance + "'");
    return {it->second.vram_usable_bytes, it->second.host_ram_bytes, it->second.disk_baseline_mbs};
}

cell_result run_cpu(const cell_spec& cell, const model_config& model, const backend& b,
                    const std::filesystem::path& artifact, const cell_environment& env, cell_result result) {
    auto& m = result.metrics;
    if (env.on_phase) env.on_phase("load");
    if (env.cold_load) evict_from_page_cache(artifact);
    const auto t0 = clock_type::now();
    auto source = open_checkpoint(artifact);
    cpu_model loaded = load_cpu_model(model, *source, b, cell);
    m[metric::k_load_time_s] = seconds_since(t0);
    m[metric::k_weight_bytes] = loaded.weight_bytes();
    cpu_executor exec(std::move(loaded));

    if (env.on_phase) env.on_phase("generate");
    const prompt p = make_prompt(model, cell.generation, cell.seed);
    const generation_config g = generation_config_for(cell);
    measure_generation(exec, p, g, cell, /*bytes_per_step=*/0, /*stream_bandwidth=*/0, m);

    if (env.on_phase) env.on_phase("quality");
    m[metric::k_quality] = quality_against_fp16(exec, model, p, cell, env.cache_dir, [&] {
        // The reference: the same model in fp16, same synthetic weights, same prompt.
        const auto fp16_ckpt = ensure_synthetic_checkpoint(model, cell.seed, env.cache_dir / "checkpoints");
        const backend* fp16 = builtin_backends().find("fp16");
        auto src = open_checkpoint(fp16_ckpt);
        cell_spec reference = cell;
        reference.framework = "fp16";
        reference.bits = 16;
        return std::make_unique<cpu_executor>(load_cpu_model(model, *src, *fp16, reference));
    });
    return result;
}

}  // namespace

generation_config generation_config_for(const cell_spec& cell) {
    generation_config g;
    g.max_new_tokens = cell.generation.max_new_tokens;
    g.seed = cell.seed;
    g.temperature = cell.generation.temperature;
    g.top_k = cell.generation.top_k;
    g.top_p = cell.generation.top_p;
    if (cell.beam > 1) {
        g.mode = decode_mode::beam;
        g.beam_width = cell.beam;
    } else {
        g.mode = cell.generation.mode == "sample" ? decode_mode::sample : decode_mode::greedy;
        g.beam_width = 1;
    }
    return g;
}

cell_result execute_cell(const cell_spec& cell, const cell_environment& env) {
    cell_result result;
    result.device = env.use_cuda ? "cuda" : "cpu";
    auto& m = result.metrics;
    budgets limits;
    try {
        if (!env.models_and_instances) throw error("execute_cell: no catalog");
        const catalog& cat = *env.models_and_instances;
        const backend* b = builtin_backends().find(cell.framework);
        if (!b) throw unsupported_error("no backend named '" + cell.framework + "'");
        if (const support s = b->supports(cell); !s.ok) {
            result.outcome = outcome::unsupported;
            result.reason = s.reason;
            return result;
        }
        const auto model_it = cat.models.find(cell.model);
        if (model_it == cat.models.end()) throw error("unknown model '" + cell.model + "'");
        const model_config& model = model_it->second;
        limits = budgets_for(cell, cat);
        // Every budgeted cell says what it was held to (plots draw it; an oom record repeats it with the request).
        if (limits.vram_bytes && env.use_cuda) m[metric::k_vram_budget_bytes] = limits.vram_bytes;
        if (limits.host_bytes) m[metric::k_host_budget_bytes] = limits.host_bytes;

        // The checkpoint every cell starts from is written without budgets: it stands for the file a user downloaded.
        if (env.on_phase) env.on_phase("prepare");
        const auto fp16_ckpt = ensure_synthetic_checkpoint(model, cell.seed, env.cache_dir / "checkpoints");

        host_memory::set_budget(limits.host_bytes);
        host_memory::reset_peak();
        if (env.on_phase) env.on_phase("quantize");
        const artifact_request request{cell, model, fp16_ckpt, env.cache_dir / "artifacts", env.use_cuda};
        const auto artifact = b->prepare_artifact(request);
        merge_quantize_report(artifact, m);
        touch_cache_entry(fp16_ckpt);
        touch_cache_entry(artifact);
        enforce_cache_cap(env.cache_dir, env.cache_max_bytes, {fp16_ckpt, artifact});

        if (env.use_cuda) {
#if QBENCH_RUNNER_CUDA
            const cuda_cell_inputs in{cell,          model,         *b,
                                      artifact,      limits.vram_bytes, env.cache_dir,
                                      env.cold_load, env.stream_bandwidth_bytes_per_s, env.on_phase};
            run_cuda_cell(in, m);
#else
            throw unsupported_error("this qbench was built without CUDA");
#endif
        } else {
            result = run_cpu(cell, model, *b, artifact, env, std::move(result));
        }
        // What reading the checkpoint would take from the instance's EBS volume at its baseline throughput: a
        // projection beside the measured read on this machine's disk, not a measurement.
        if (limits.disk_mb_per_s > 0)
            m[metric::k_load_read_projected_s] =
                static_cast<double>(checkpoint_file_bytes(artifact)) / (limits.disk_mb_per_s * 1e6);
        result.outcome = outcome::ok;
    } catch (const out_of_memory& e) {
        result.outcome = e.kind() == memory_kind::vram ? outcome::oom_vram : outcome::oom_host;
        result.reason = e.what();
        m[metric::k_oom] = oom_to_json(e, e.kind() == memory_kind::vram ? limits.vram_bytes : limits.host_bytes);
    } catch (const unsupported_error& e) {
        result.outcome = outcome::unsupported;
        result.reason = e.what();
    } catch (const std::exception& e) {
        result.outcome = outcome::error;
        result.reason = e.what();
    }
    m[metric::k_host_peak_rss_bytes] = peak_rss_bytes();
    m[metric::k_host_accounted_peak_bytes] = host_memory::peak();
    host_memory::set_budget(0);
    return result;
}

}  // namespace qbench
