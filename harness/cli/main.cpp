// qbench: the command line. Each subcommand parses its flags (CLI11), calls the library, and turns typed errors into
// one message and an exit code: 0 = every cell produced a record; 1 = a cell errored or timed out, or a command
// failed; 2 = bad input (a YAML, checkpoint, results file or flag), with the file and place named; 3 = `compare
// --fail-above` found a regression; 130 = interrupted.
#include "backends/gptq/gptq_quantize.hpp"
#include "backends/quant_format.hpp"
#include "qbench/backend/registry.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/config/catalog.hpp"
#include "qbench/config/matrix.hpp"
#include "qbench/io/synthetic_checkpoint.hpp"
#include "qbench/io/tensor_source.hpp"
#include "qbench/report/claim_report.hpp"
#include "qbench/report/claims.hpp"
#include "qbench/report/compare.hpp"
#include "qbench/results/provenance.hpp"
#include "qbench/runner/gpu_probe.hpp"
#include "qbench/runner/merge.hpp"
#include "qbench/runner/runner.hpp"

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <fstream>
#include <iostream>

namespace {

using namespace qbench;

std::filesystem::path default_cache_dir() {
    if (const char* env = std::getenv("QBENCH_CACHE_DIR"); env && *env) return env;
    if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::filesystem::path(xdg) / "qbench";
    if (const char* home = std::getenv("HOME"); home && *home) return std::filesystem::path(home) / ".cache" / "qbench";
    return std::filesystem::temp_directory_path() / "qbench-cache";
}

std::string utc_stamp() {
    const std::time_t t = std::time(nullptr);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", std::gmtime(&t));
    return buf;
}

// Options shared by the subcommands that read catalogs.
struct common_flags {
    std::string configs_dir;
    std::filesystem::path configs() const {
        return configs_dir.empty() ? default_configs_dir() : std::filesystem::path(configs_dir);
    }
};

int cmd_list(const std::string& what, const common_flags& flags) {
    if (what == "backends") {
        for (const backend* b : builtin_backends().all()) {
            std::cout << b->name() << "\tbits:";
            for (auto bits : b->supported_bits()) std::cout << " " << bits;
            std::cout << "\t" << b->description() << "\n";
        }
        return 0;
    }
    if (what == "formats") {
        std::cout << "name\tframework\tbits\tdefault block/group\tbits/weight at 4096x4096\tdescription\n";
        for (const auto& f : quant_format_table())
            std::cout << f.name << "\t" << f.framework << "\t" << f.bits << "\t" << f.default_block << "\t"
                      << effective_bits_per_weight(f.id, 4096, 4096) << "\t" << f.description << "\n";
        return 0;
    }
    const catalog cat = load_catalog(flags.configs());
    if (what == "models") {
        std::cout << "name\thidden\tinter\tlayers\theads\tkv\tvocab\tparams\timage_tokens\n";
        for (const auto& [name, m] : cat.models)
            std::cout << name << "\t" << m.hidden_size << "\t" << m.intermediate_size << "\t" << m.num_layers << "\t"
                      << m.num_heads << "\t" << m.num_kv_heads << "\t" << m.vocab_size << "\t" << m.total_params()
                      << "\t" << m.minigpt4_image_tokens << "\n";
        return 0;
    }
    if (what == "instances") {
        std::cout << "name\tgpu\tvram_MiB\thost_RAM_GiB\tGPU_GB/s\tdisk_MB/s\t$/h\n";
        for (const auto& [name, i] : cat.instances)
            std::cout << name << "\t" << i.gpu_name << "\t" << i.vram_usable_bytes / (1024 * 1024) << "\t"
                      << i.host_ram_bytes / (1024ull * 1024 * 1024) << "\t" << i.gpu_bandwidth_gbs << "\t"
                      << i.disk_baseline_mbs << "\t" << i.price_usd_per_hour << "\n";
        return 0;
    }
    throw input_error("command line", "list", "unknown list '" + what + "' (models, instances, backends, formats)");
}

int cmd_validate(const std::string& path, const common_flags& flags, const std::vector<std::string>& filters) {
    const catalog cat = load_catalog(flags.configs());
    const matrix m = load_matrix(path, cat);
    const auto cells = apply_filters(m.cells, filters);
    std::cout << path << ": valid, " << m.cells.size() << " cells";
    if (!filters.empty()) std::cout << " (" << cells.size() << " after filters)";
    std::cout << "\n" << describe_cells(cells);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"qbench: LLM quantization speed benchmarks (GPTQ vs bitsandbytes vs FP16) on a real GPU"};
    app.set_version_flag("--version", std::string("qbench ") + QBENCH_VERSION + " (" + this_build().git_commit + ")");
    app.require_subcommand(1);
    common_flags flags;

    // run
    auto* run = app.add_subcommand("run", "Run a matrix: one child process per cell, results appended atomically");
    std::string run_matrix_path, run_output, run_work_dir, run_device = "auto", run_shard, run_cache;
    std::vector<std::string> run_filters;
    bool run_dry = false, run_resume = false, run_no_isolate = false, run_warm = false, run_retry = false;
    double run_timeout = 3600, run_cache_max_gb = 0;
    run->add_option("matrix", run_matrix_path, "Matrix YAML file")->required();
    run->add_option("-o,--output", run_output, "Results JSON file (default: qbench-results/<matrix>-<UTC time>.json)");
    run->add_option("--filter", run_filters, "Keep only cells with KEY=VALUE (axis or dotted option); repeatable");
    run->add_flag("--dry-run", run_dry, "List the expanded cells and exit");
    run->add_option("--device", run_device, "Where cells run")->check(CLI::IsMember({"auto", "cuda", "cpu"}));
    CLI::Option* resume_flag =
        run->add_flag("--resume", run_resume, "Skip cells already recorded in --output with the same config hash");
    run->add_flag("--retry-failed", run_retry,
                  "With --resume: run cells recorded as error or timeout again, replacing their records")
        ->needs(resume_flag);
    run->add_option("--shard", run_shard, "Run the deterministic slice I/N (0 <= I < N) of the cells");
    run->add_option("--timeout", run_timeout, "Per-cell wall-clock limit in seconds")->check(CLI::PositiveNumber);
    run->add_option("--cache-dir", run_cache, "Checkpoints and artifacts cache (default $QBENCH_CACHE_DIR or ~/.cache/qbench)");
    run->add_option("--configs", flags.configs_dir, "Catalog directory (default: the source tree's configs/)");
    run->add_option("--work-dir", run_work_dir, "Per-cell logs and scratch files (default: <output>.work)");
    run->add_option("--cache-max-gb", run_cache_max_gb,
                    "Cap on cached checkpoints + artifacts; least recently used go first (env QBENCH_CACHE_MAX_GB)");
    run->add_flag("--no-isolate", run_no_isolate, "Run cells in this process (debugging; a crash ends the run)");
    run->add_flag("--warm-load", run_warm, "Do not evict the checkpoint from the page cache before loading");

    // validate
    auto* validate = app.add_subcommand("validate", "Check a matrix and print its expanded cells");
    std::string validate_path;
    std::vector<std::string> validate_filters;
    validate->add_option("matrix", validate_path, "Matrix YAML file")->required();
    validate->add_option("--filter", validate_filters, "KEY=VALUE filters, as for run");
    validate->add_option("--configs", flags.configs_dir, "Catalog directory");

    // list
    auto* list = app.add_subcommand("list", "List models, instances, backends or formats");
    std::string list_what;
    list->add_option("what", list_what, "models | instances | backends | formats")
        ->required()
        ->check(CLI::IsMember({"models", "instances", "backends", "formats"}));
    list->add_option("--configs", flags.configs_dir, "Catalog directory");

    // env
    auto* env = app.add_subcommand("env", "Print this machine's environment (provenance) as JSON");
    bool env_no_gpu = false;
    env->add_flag("--no-gpu", env_no_gpu, "Skip the GPU probe (and its bandwidth measurement)");

    // merge
    auto* merge = app.add_subcommand("merge", "Join the result files of a sharded run (duplicates refused)");
    std::vector<std::string> merge_inputs;
    std::string merge_output;
    merge->add_option("inputs", merge_inputs, "Results files (shards)")->required()->expected(2, -1);
    merge->add_option("-o,--output", merge_output, "Merged results file (must not exist)")->required();

    // quantize
    auto* quantize = app.add_subcommand("quantize", "Run GPTQ on a model and write an AutoGPTQ-layout artifact");
    std::string q_model, q_out, q_checkpoint, q_device = "auto", q_cache, q_plan = "autogptq";
    std::int64_t q_bits = 4, q_group = 128, q_samples = 128, q_seq_len = 2048;
    std::uint64_t q_seed = 0;
    double q_damp = 0.01;
    bool q_desc_act = false, q_sym = false, q_static = false;
    quantize->add_option("model", q_model, "Model catalog name")->required();
    quantize->add_option("--bits", q_bits, "2, 3, 4 or 8")->check(CLI::IsMember({2, 3, 4, 8}));
    quantize->add_option("--group-size", q_group, "Group size along the input (-1 = one group per row)");
    quantize->add_flag("--desc-act", q_desc_act, "Act-order: quantize columns by decreasing Hessian diagonal");
    quantize->add_flag("--static-groups", q_static, "Group parameters fixed before the column loop");
    quantize->add_flag("--sym", q_sym, "Symmetric quantization (zero point at the middle)");
    quantize->add_option("--damp-percent", q_damp, "Damping, fraction of the mean Hessian diagonal");
    quantize->add_option("--samples", q_samples, "Calibration sequences");
    quantize->add_option("--seq-len", q_seq_len, "Tokens per calibration sequence");
    quantize->add_option("--seed", q_seed, "Seeds the synthetic weights and the calibration tokens");
    quantize->add_option("--memory-plan", q_plan, "autogptq (whole FP16 model in host RAM) or streaming")
        ->check(CLI::IsMember({"autogptq", "streaming"}));
    quantize->add_option("--checkpoint", q_checkpoint, "FP16 checkpoint (default: the cached synthetic one)");
    quantize->add_option("-o,--output", q_out, "Artifact directory")->required();
    quantize->add_option("--device", q_device)->check(CLI::IsMember({"auto", "cuda", "cpu"}));
    quantize->add_option("--cache-dir", q_cache, "Where the synthetic checkpoint is cached");
    quantize->add_option("--configs", flags.configs_dir, "Catalog directory");

    // compare
    auto* compare = app.add_subcommand("compare", "Compare results files cell by cell (joined by parameters)");
    std::vector<std::string> cmp_files, cmp_metrics;
    std::string cmp_format = "markdown";
    double cmp_fail = -1;
    compare->add_option("files", cmp_files, "Results files; the first is the baseline")->required()->expected(2, -1);
    compare->add_option("--format", cmp_format)->check(CLI::IsMember({"markdown", "csv", "json"}));
    compare->add_option("--metric", cmp_metrics, "Metric paths to compare (default: speed, load, memory, quality)");
    compare->add_option("--fail-above", cmp_fail, "Exit non-zero on a regression beyond PCT percent");

    // report
    auto* report = app.add_subcommand("report", "Evaluate the seed study's claims (configs/claims.yaml) on results");
    std::string rep_file, rep_claims, rep_format = "markdown";
    report->add_option("results", rep_file, "Results file")->required();
    report->add_option("--claims", rep_claims, "Claims YAML (default: configs/claims.yaml)");
    report->add_option("--format", rep_format)->check(CLI::IsMember({"markdown", "json"}));
    report->add_option("--configs", flags.configs_dir, "Catalog directory");

    // internal: the child side of a cell, and the GPU probe
    auto* cell = app.add_subcommand("__cell", "(internal) run one cell; used by `run`");
    cell->group("");
    std::string cell_file, cell_result, cell_phase, cell_cache, cell_device = "cpu";
    bool cell_cold = false, cell_warm = false;
    double cell_stream_bps = 0;
    cell->add_option("--cell", cell_file)->required();
    cell->add_option("--result", cell_result)->required();
    cell->add_option("--phase", cell_phase);
    cell->add_option("--configs", flags.configs_dir);
    cell->add_option("--cache-dir", cell_cache)->required();
    cell->add_option("--device", cell_device);
    cell->add_flag("--cold", cell_cold);
    cell->add_flag("--warm", cell_warm);
    cell->add_option("--stream-bandwidth", cell_stream_bps);
    auto* probe = app.add_subcommand("__gpu-probe", "(internal) describe the GPU as JSON");
    probe->group("");
    std::string probe_out;
    probe->add_option("--out", probe_out)->required();

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // --help/--version are "errors" with code 0; every real one is bad input: exit 2, not CLI11's own codes.
        return app.exit(e) == 0 ? 0 : 2;
    }

    try {
        if (*run) {
            const catalog cat = load_catalog(flags.configs());
            const matrix m = load_matrix(run_matrix_path, cat);
            auto cells = apply_filters(m.cells, run_filters);
            run_options options;
            if (!run_shard.empty()) {
                options.shard = parse_shard(run_shard, "--shard");
                cells = select_shard(cells, options.shard);
            }
            if (run_dry) {
                std::cout << describe_cells(cells);
                std::cerr << cells.size() << " cell(s) would run\n";
                return 0;
            }
            options.output = run_output.empty() ? std::filesystem::path("qbench-results") / (m.name + "-" + utc_stamp() + ".json")
                                                : std::filesystem::path(run_output);
            options.configs_dir = flags.configs();
            options.cache_dir = run_cache.empty() ? default_cache_dir() : std::filesystem::path(run_cache);
            options.device = run_device;
            options.resume = run_resume;
            options.retry_failed = run_retry;
            options.isolate = !run_no_isolate;
            options.cold_load = !run_warm;
            options.cell_timeout_s = run_timeout;
            options.work_dir = run_work_dir;
            if (run_cache_max_gb > 0) ::setenv("QBENCH_CACHE_MAX_GB", std::to_string(run_cache_max_gb).c_str(), 1);
            options.command_line.assign(argv, argv + argc);
            const run_summary s = run_matrix(m, cells, cat, options);
            if (s.interrupted) return 130;
            return s.failed > 0 ? 1 : 0;
        }
        if (*validate) return cmd_validate(validate_path, flags, validate_filters);
        if (*list) return cmd_list(list_what, flags);
        if (*env) {
            provenance_inputs inputs;
            inputs.command_line.assign(argv, argv + argc);
            if (!env_no_gpu) inputs.gpu = probe_gpu(/*isolate=*/true);
            std::cout << capture_provenance(inputs).dump(2) << "\n";
            return 0;
        }
        if (*quantize) {
            const catalog cat = load_catalog(flags.configs());
            const model_config* model = cat.find_model(q_model);
            if (!model) throw input_error("command line", "model", "unknown model '" + q_model + "' (qbench list models)");
            gptq::gptq_quantize_options o;
            o.bits = q_bits;
            o.seed = q_seed;
            o.gptq.group_size = q_group;
            o.gptq.desc_act = q_desc_act;
            o.gptq.static_groups = q_static;
            o.gptq.sym = q_sym;
            o.gptq.damp_percent = q_damp;
            o.gptq.calibration_samples = q_samples;
            o.gptq.calibration_seq_len = q_seq_len;
            o.gptq.memory_plan = q_plan;
            o.model_name_or_path = model->hf_name.empty() ? model->name : model->hf_name;
            const auto checkpoint = q_checkpoint.empty()
                                        ? ensure_synthetic_checkpoint(*model, q_seed, (q_cache.empty() ? default_cache_dir() : std::filesystem::path(q_cache)) / "checkpoints")
                                        : std::filesystem::path(q_checkpoint);
            auto source = open_checkpoint(checkpoint);
            const bool use_cuda = resolve_use_cuda(q_device);
            const auto r = gptq::quantize_model(*model, *source, o, q_out, use_cuda);
            std::cout << r.to_json(o).dump(2) << "\n";
            return 0;
        }
        if (*compare) {
            std::vector<results_document> docs;
            for (const auto& f : cmp_files) docs.push_back(load_results(f));
            compare_options o;
            o.names = cmp_files;
            o.metrics = cmp_metrics;
            if (cmp_fail >= 0) o.fail_above_pct = cmp_fail;
            const compare_result r = compare_files(docs, o);
            if (cmp_format == "csv")
                std::cout << format_compare_csv(r);
            else if (cmp_format == "json")
                std::cout << compare_to_json(r).dump(2) << "\n";
            else
                std::cout << format_compare_markdown(r);
            return compare_exit_code(r);
        }
        if (*report) {
            const auto claims_path = rep_claims.empty() ? flags.configs() / "claims.yaml" : std::filesystem::path(rep_claims);
            const report_result r = evaluate_claims(load_results(rep_file), load_claims(claims_path));
            if (rep_format == "json")
                std::cout << report_to_json(r).dump(2) << "\n";
            else
                std::cout << format_report_markdown(r);
            return 0;
        }
        if (*merge) {
            std::vector<std::filesystem::path> inputs(merge_inputs.begin(), merge_inputs.end());
            const results_document merged = merge_results(inputs);
            if (std::filesystem::exists(merge_output))
                throw input_error(merge_output, "", "exists already; merge never overwrites a results file");
            const auto tmp = merge_output + ".tmp";
            std::ofstream(tmp, std::ios::trunc) << dump_results_json(results_to_json(merged));
            load_results(tmp);  // what we write must read back
            std::filesystem::rename(tmp, merge_output);
            std::cout << "merged " << merged.cells.size() << " cells from " << inputs.size() << " files -> "
                      << merge_output << "\n";
            return 0;
        }
        if (*cell) {
            const bool use_cuda = cell_device == "cuda";
            return run_cell_child(cell_file, cell_result, cell_phase, flags.configs(), cell_cache, use_cuda, !cell_warm,
                                  cell_stream_bps);
        }
        if (*probe) {
            const auto j = probe_gpu_here();
            std::ofstream(probe_out, std::ios::trunc) << j.dump(1) << "\n";
            return j.is_null() ? 1 : 0;
        }
    } catch (const input_error& e) {
        std::cerr << "qbench: error: " << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "qbench: error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
