// End-to-end decode of real model shapes (synthetic weights generated on read, nothing on disk) with the fp16
// backend: decode tokens/s, ms/step (median and spread over every step of every repetition), bytes a step must
// read and bandwidth_utilization against the stream bandwidth measured at start, for beams 1, 2, 4; beam 1 also
// without programmatic dependent launch and without CUDA graphs, to show what each is worth; beams 1 and 4 also with
// the RMSNorm folded into the GEMVs (QBENCH_FP16_FOLD_NORM=1, variant "graph+pdl-fold") against the separate kernels
// of the default (measured slower on the H200: tests/bench/PERF_NOTES.md, v6); with --ablate-ab 1, beam 1 also
// without the attention kernels, without the RMSNorm kernels, and without both (QBENCH_DECODE_ABLATE: the outputs are
// wrong, the step time says what those kernels cost inside the step; variants "ablate-attention", "ablate-norm",
// "ablate-both"); with --trigger-ab 1 (default), beams 1 and 4 also with RMSNorm and attention triggering their
// successor after their wait instead of before it (QBENCH_PDL_EARLY_TRIGGER=0, variant "graph+pdl-late-trigger").
//
// usage: bench_decode [--models vicuna-7b-v0,vicuna-13b-v0] [--beams 1,2,4] [--new-tokens 128] [--reps 5]
//                     [--prompt-tokens 16] [--variants 1] [--fold-ab 1] [--trigger-ab 1] [--ablate-ab 0]
//                     [--json FILE]
// The model catalog is read from $QBENCH_CONFIG_DIR (else the source tree's configs/).
#include "cuda/device_context.cuh"

#include "backends/fp16/fp16_backend.hpp"

#include "qbench/common/stats.hpp"
#include "qbench/config/catalog.hpp"
#include "qbench/config/cell.hpp"
#include "qbench/engine/cuda_api.hpp"
#include "qbench/engine/prompt.hpp"
#include "qbench/io/synthetic_checkpoint.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace qbench;

namespace {

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ','))
        if (!item.empty()) out.push_back(item);
    return out;
}

struct options {
    std::vector<std::string> models{"vicuna-7b-v0", "vicuna-13b-v0"};
    std::vector<std::int64_t> beams{1, 2, 4};
    std::int64_t new_tokens = 128;
    std::int64_t reps = 5;
    std::int64_t prompt_tokens = 16;
    bool variants = true;
    bool fold_ab = true;  // beams 1 and 4 also with the RMSNorm folded into the GEMVs
    bool ablate_ab = false;  // beam 1 also without attention / RMSNorm kernels (timing only)
    bool trigger_ab = true;  // beams 1 and 4 also with RMSNorm / attention triggering after their wait
    std::string json;
};

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string key = argv[i], value = argv[i + 1];
        if (key == "--models") o.models = split(value);
        else if (key == "--beams") {
            o.beams.clear();
            for (const auto& b : split(value)) o.beams.push_back(std::stoll(b));
        } else if (key == "--new-tokens") o.new_tokens = std::stoll(value);
        else if (key == "--reps") o.reps = std::stoll(value);
        else if (key == "--prompt-tokens") o.prompt_tokens = std::stoll(value);
        else if (key == "--variants") o.variants = value != "0";
        else if (key == "--fold-ab") o.fold_ab = value != "0";
        else if (key == "--ablate-ab") o.ablate_ab = value != "0";
        else if (key == "--trigger-ab") o.trigger_ab = value != "0";
        else if (key == "--json") o.json = value;
        else {
            std::fprintf(stderr, "bench_decode: unknown option %s\n", key.c_str());
            std::exit(2);
        }
    }
    return o;
}

struct row {
    std::string model, variant, path;
    std::int64_t beam = 1, steps = 0;
    double prefill_ms = 0, step_ms = 0, step_p10 = 0, step_p90 = 0, step_p99 = 0, step_sd = 0;
    double decode_tps = 0, e2e_tps = 0, beam_tps = 0;
    std::uint64_t bytes_per_step = 0;
    double util = 0;
    bool graphs = false;
};

/// The row of (model, variant, beam), if measured.
const row* find_row(const std::vector<row>& rows, const std::string& model, const std::string& variant, std::int64_t beam) {
    for (const row& r : rows)
        if (r.model == model && r.variant == variant && r.beam == beam) return &r;
    return nullptr;
}

row measure(cuda_executor& exec, const model_config& model, const prompt& p, std::int64_t beam, const options& o,
            const std::string& variant, double stream_gbs) {
    generation_config g;
    g.max_new_tokens = o.new_tokens;
    if (beam > 1) {
        g.mode = decode_mode::beam;
        g.beam_width = beam;
    }
    exec.generate(p, g);  // warm-up: eager first step, graph capture
    std::vector<double> steps, prefill, decode_tps, e2e_tps;
    bool graphs = true;
    for (std::int64_t r = 0; r < o.reps; ++r) {
        exec.generate(p, g);
        const generation_timing& t = exec.last_timing();
        graphs = graphs && exec.graphs_used();
        double total = 0;
        for (double ms : t.step_ms) {
            steps.push_back(ms);
            total += ms;
        }
        prefill.push_back(t.prefill_ms);
        decode_tps.push_back(static_cast<double>(t.step_ms.size()) / (total * 1e-3));
        e2e_tps.push_back(static_cast<double>(o.new_tokens) / ((total + t.prefill_ms) * 1e-3));
    }
    const summary s = summarize(steps);
    row rw;
    rw.model = model.name;
    rw.variant = variant;
    rw.path = exec.kernel_path(beam);
    rw.beam = beam;
    rw.steps = static_cast<std::int64_t>(steps.size());
    rw.prefill_ms = summarize(prefill).median;
    rw.step_ms = s.median;
    rw.step_p10 = s.p10;
    rw.step_p90 = s.p90;
    rw.step_p99 = percentile(steps, 99);
    rw.step_sd = s.stddev;
    rw.decode_tps = summarize(decode_tps).median;
    rw.e2e_tps = summarize(e2e_tps).median;
    rw.beam_tps = rw.decode_tps * static_cast<double>(beam);
    // Mean context over the decode steps: step s (1..N-1) attends P + s positions.
    rw.bytes_per_step = exec.bytes_per_decode_step(beam, p.length() + o.new_tokens / 2);
    rw.util = static_cast<double>(rw.bytes_per_step) / (rw.step_ms * 1e-3) / (stream_gbs * 1e9);
    rw.graphs = graphs;
    return rw;
}

void print_row(const row& r) {
    std::printf("%-16s %-14s %4lld %9.3f %7.3f %7.3f %8.1f %8.1f %9.1f %9.2f %6.3f  %s%s\n", r.model.c_str(),
                r.variant.c_str(), static_cast<long long>(r.beam), r.step_ms, r.step_p10, r.step_p90, r.decode_tps,
                r.beam_tps, r.prefill_ms, r.bytes_per_step / 1e9, r.util, r.path.c_str(), r.graphs ? " graph" : "");
    std::fflush(stdout);
}

const char* k_header =
    "model            variant        beam  ms/step     p10     p90    tok/s beamtok/s prefill_ms   GB/step   util  path\n";

}  // namespace

int main(int argc, char** argv) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        std::printf("SKIP: no CUDA device\n");
        return 77;
    }
    const options o = parse(argc, argv);
    try {
        device_context ctx;
        const double stream = ctx.measure_stream_bandwidth_gbs();
        const nlohmann::json env = ctx.gpu_environment();
        std::printf("%s\nstream bandwidth %.0f GB/s; PDL %s\n", env.dump().c_str(), stream,
                    ctx.pdl_enabled() ? "on" : "off");
        const catalog cat = load_catalog(default_configs_dir());
        const auto fp16 = make_fp16_backend();
        std::vector<row> rows;
        for (const std::string& name : o.models) {
            const model_config* model = cat.find_model(name);
            if (model == nullptr) {
                std::fprintf(stderr, "bench_decode: unknown model %s\n", name.c_str());
                return 2;
            }
            cell_spec cell;
            cell.model = name;
            cell.framework = "fp16";
            cell.bits = 16;
            const auto source = make_synthetic_source(*model, 1);
            ctx.reset_peaks();
            auto exec = make_cuda_executor(*model, *source, *fp16, cell, ctx);
            const cuda_load_report& lr = exec->load_report();
            std::printf("\n%s: loaded in %.2f s (read/generate %.2f, upload %.2f, other %.2f), %.2f GB linear + %.2f GB "
                        "other weights\n",
                        name.c_str(), lr.total_s, lr.read_s, lr.upload_s, lr.quantize_s, lr.weight_bytes / 1e9,
                        lr.other_bytes / 1e9);
            generation_options go;
            go.prompt_tokens = o.prompt_tokens;
            const prompt p = make_prompt(*model, go, 1);
            std::printf("prompt %lld positions, %lld new tokens, %lld repetitions after 1 warm-up\n%s",
                        static_cast<long long>(p.length()), static_cast<long long>(o.new_tokens),
                        static_cast<long long>(o.reps), k_header);
            for (std::int64_t beam : o.beams) {
                rows.push_back(measure(*exec, *model, p, beam, o, "graph+pdl", stream));
                print_row(rows.back());
            }
            if (o.fold_ab) {
                // The executor reads QBENCH_FP16_FOLD_NORM at each generate: same process, same weights.
                const char* before = std::getenv("QBENCH_FP16_FOLD_NORM");
                const std::string saved = before != nullptr ? before : "";
                ::setenv("QBENCH_FP16_FOLD_NORM", "1", 1);
                for (std::int64_t beam : o.beams) {
                    if (beam != 1 && beam != 4) continue;
                    rows.push_back(measure(*exec, *model, p, beam, o, "graph+pdl-fold", stream));
                    print_row(rows.back());
                }
                if (before != nullptr) ::setenv("QBENCH_FP16_FOLD_NORM", saved.c_str(), 1);
                else ::unsetenv("QBENCH_FP16_FOLD_NORM");
            }
            if (o.trigger_ab) {
                // The early trigger of RMSNorm / attention (launch.cuh) off: the previous default.
                ::setenv("QBENCH_PDL_EARLY_TRIGGER", "0", 1);
                for (std::int64_t beam : o.beams) {
                    if (beam != 1 && beam != 4) continue;
                    rows.push_back(measure(*exec, *model, p, beam, o, "graph+pdl-late-trigger", stream));
                    print_row(rows.back());
                }
                ::unsetenv("QBENCH_PDL_EARLY_TRIGGER");
            }
            if (o.ablate_ab) {
                // Read at each generate, part of the graph key: same process, same weights, default path otherwise.
                for (const char* what : {"attention", "norm", "attention,norm"}) {
                    ::setenv("QBENCH_DECODE_ABLATE", what, 1);
                    const std::string w = what;
                    rows.push_back(measure(*exec, *model, p, 1, o,
                                           "ablate-" + (w == "attention,norm" ? std::string("both") : w), stream));
                    print_row(rows.back());
                }
                ::unsetenv("QBENCH_DECODE_ABLATE");
            }
            if (o.variants && ctx.pdl_enabled()) {
                ctx.set_pdl_enabled(false);
                rows.push_back(measure(*exec, *model, p, 1, o, "graph", stream));
                print_row(rows.back());
                ctx.set_pdl_enabled(true);
            }
            if (o.variants) {
                exec->set_graphs_enabled(false);
                rows.push_back(measure(*exec, *model, p, 1, o, "eager+pdl", stream));
                print_row(rows.back());
                exec->set_graphs_enabled(true);
            }
            const auto mem = ctx.memory();
            std::printf("VRAM: allocator peak %.2f GB, device peak %.2f GB, context %.0f MB, cuBLAS handles %.0f MB, "
                        "workspace %.0f MB\n",
                        mem.allocated_peak / 1e9, mem.device_peak / 1e9, mem.context / 1e6, mem.libraries / 1e6,
                        mem.workspace / 1e6);
        }

        std::printf("\nsummary (stream %.0f GB/s)\n%s", stream, k_header);
        for (const row& r : rows) print_row(r);
        for (const row& r : rows) {
            if (r.variant != "graph+pdl" || r.beam == 1) continue;
            if (const row* b1 = find_row(rows, r.model, r.variant, 1))
                std::printf("%s beam %lld costs %+.1f%% per step over beam 1\n", r.model.c_str(),
                            static_cast<long long>(r.beam), 100.0 * (r.step_ms / b1->step_ms - 1.0));
        }
        // Each A/B variant against the default (graph+pdl) row of its model and beam.
        for (const row& r : rows) {
            const row* d = find_row(rows, r.model, "graph+pdl", r.beam);
            if (d != nullptr && r.variant == "graph+pdl-fold")
                std::printf("%s beam %lld: folded RMSNorm %.3f ms/step (util %.3f) vs separate kernels %.3f ms "
                            "(util %.3f): %+.1f%%\n",
                            r.model.c_str(), static_cast<long long>(r.beam), r.step_ms, r.util, d->step_ms, d->util,
                            100.0 * (r.step_ms / d->step_ms - 1.0));
        }
        for (const row& r : rows) {
            const row* d = find_row(rows, r.model, "graph+pdl", r.beam);
            if (d != nullptr && r.variant == "graph+pdl-late-trigger")
                std::printf("%s beam %lld: early trigger %.3f ms/step (util %.3f) vs late %.3f ms (util %.3f): "
                            "%+.1f%%\n",
                            r.model.c_str(), static_cast<long long>(r.beam), d->step_ms, d->util, r.step_ms, r.util,
                            100.0 * (d->step_ms / r.step_ms - 1.0));
        }
        for (const row& r : rows) {
            const row* d = find_row(rows, r.model, "graph+pdl", r.beam);
            if (d != nullptr && r.variant.rfind("ablate-", 0) == 0)
                std::printf("%s beam %lld %s: %.3f ms/step, %.1f us less than the full step (%.3f ms)\n",
                            r.model.c_str(), static_cast<long long>(r.beam), r.variant.c_str(), r.step_ms,
                            1000.0 * (d->step_ms - r.step_ms), d->step_ms);
        }
        if (!o.json.empty()) {
            nlohmann::json j = {{"gpu", env}, {"stream_bandwidth_gbs", stream}, {"rows", nlohmann::json::array()}};
            for (const row& r : rows)
                j["rows"].push_back({{"model", r.model},
                                     {"variant", r.variant},
                                     {"beam", r.beam},
                                     {"kernel_path", r.path},
                                     {"graphs", r.graphs},
                                     {"step_ms_median", r.step_ms},
                                     {"step_ms_p10", r.step_p10},
                                     {"step_ms_p90", r.step_p90},
                                     {"step_ms_p99", r.step_p99},
                                     {"step_ms_stddev", r.step_sd},
                                     {"decode_tokens_per_s", r.decode_tps},
                                     {"beam_tokens_per_s", r.beam_tps},
                                     {"e2e_tokens_per_s", r.e2e_tps},
                                     {"prefill_ms", r.prefill_ms},
                                     {"bytes_per_decode_step", r.bytes_per_step},
                                     {"bandwidth_utilization", r.util}});
            std::ofstream(o.json) << j.dump(2) << "\n";
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_decode: %s\n", e.what());
        return 1;
    }
    return 0;
}
