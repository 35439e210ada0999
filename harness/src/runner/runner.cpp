#include "qbench/runner/runner.hpp"

#include "qbench/common/errors.hpp"
#include "qbench/results/metrics.hpp"
#include "qbench/results/provenance.hpp"
#include "qbench/results/results_file.hpp"
#include "qbench/results/table.hpp"
#include "qbench/results/timestamp.hpp"
#include "qbench/runner/cell_execution.hpp"
#include "qbench/runner/child_process.hpp"
#include "qbench/runner/gpu_probe.hpp"
#include "qbench/runner/progress.hpp"

#include <cstdlib>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <iostream>
#include <map>
#include <unistd.h>

namespace qbench {

namespace {

std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }

// SIGINT/SIGTERM only set a flag: the runner stops the running cell, keeps the file valid and returns.
class stop_signal_scope {
public:
    stop_signal_scope() {
        g_stop_signal = 0;
        struct sigaction sa {};
        sa.sa_handler = on_stop_signal;
        sigemptyset(&sa.sa_mask);
        ::sigaction(SIGINT, &sa, &m_old_int);
        ::sigaction(SIGTERM, &sa, &m_old_term);
    }
    ~stop_signal_scope() {
        ::sigaction(SIGINT, &m_old_int, nullptr);
        ::sigaction(SIGTERM, &m_old_term, nullptr);
    }

private:
    struct sigaction m_old_int {}, m_old_term {};
};

std::string read_small_file(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
}

std::string tail_of_file(const std::filesystem::path& p, std::size_t max_chars) {
    const std::string s = read_small_file(p);
    return s.size() <= max_chars ? s : s.substr(s.size() - max_chars);
}

// The child's last words: the final non-empty line of its log, for the record's reason.
std::string last_line(const std::string& text) {
    auto end = text.find_last_not_of("\n ");
    if (end == std::string::npos) return "";
    auto start = text.rfind('\n', end);
    return text.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1) + 1);
}

std::string safe_name(std::string s) {
    for (char& c : s)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') c = '_';
    return s;
}

cell_record record_from_child(const cell_spec& cell, const std::filesystem::path& result_file, const child_exit& exit,
                              const std::filesystem::path& log_file, const std::string& started_at,
                              const std::string& device) {
    cell_record record;
    record.cell = cell;
    record.config_hash = cell_hash(cell);
    record.started_at = started_at;
    record.finished_at = now_rfc3339_utc();
    record.wall_s = exit.wall_s;
    record.device = device;
    if (exit.how == child_exit::kind::exited && exit.exit_code == 0 && std::filesystem::exists(result_file)) {
        std::ifstream in(result_file);
        const auto j = nlohmann::ordered_json::parse(in);
        record.outcome = parse_outcome(j.at("outcome").get<std::string>()).value_or(outcome::error);
        record.reason = j.at("reason").get<std::string>();
        record.device = j.at("device").get<std::string>();
        record.metrics = j.at("metrics");
        return record;
    }
    const std::string log_tail = last_line(tail_of_file(log_file, 4000));
    if (exit.how == child_exit::kind::timed_out) {
        record.outcome = outcome::timeout;
        record.reason = "cell " + exit.describe();
    } else if (exit.how == child_exit::kind::signaled && exit.signal == SIGKILL) {
        // The kernel's OOM killer ends a child that outgrew the machine's RAM with SIGKILL.
        record.outcome = outcome::oom_host;
        record.reason = "child " + exit.describe() + " (likely the OOM killer)";
    } else {
        record.outcome = outcome::error;
        record.reason = "child " + exit.describe();
    }
    if (!log_tail.empty()) record.reason += ": " + log_tail;
    return record;
}

// See run_cell_child's comment: deliberate failures for the runner's isolation tests.
void inject_fault_if_asked(const std::string& label) {
    const char* spec = std::getenv("QBENCH_FAULT_INJECTION");
    if (!spec) return;
    std::string all(spec);
    std::size_t pos = 0;
    while (pos <= all.size()) {
        const auto end = std::min(all.find(';', pos), all.size());
        const std::string item = all.substr(pos, end - pos);
        pos = end + 1;
        const auto eq = item.find('=');
        if (eq == std::string::npos || label.find(item.substr(0, eq)) == std::string::npos) continue;
        const std::string what = item.substr(eq + 1);
        std::cerr << "qbench cell: injected fault '" << what << "'" << std::endl;
        if (what == "crash") std::raise(SIGSEGV);
        if (what == "abort") std::abort();
        if (what == "hang")
            for (;;) ::pause();
        if (what == "cuda_fault") inject_cuda_fault();
    }
}

}  // namespace

shard_spec parse_shard(const std::string& text, const std::string& flag) {
    const auto slash = text.find('/');
    shard_spec s;
    try {
        if (slash == std::string::npos) throw std::invalid_argument("no slash");
        std::size_t used = 0;
        s.index = std::stoll(text.substr(0, slash), &used);
        if (used != slash) throw std::invalid_argument("index");
        const std::string count = text.substr(slash + 1);
        s.count = std::stoll(count, &used);
        if (used != count.size()) throw std::invalid_argument("count");
    } catch (const std::exception&) {
        throw input_error("command line", flag, "expected I/N (e.g. 0/4), got '" + text + "'");
    }
    if (s.count < 1 || s.index < 0 || s.index >= s.count)
        throw input_error("command line", flag, "shard I/N needs 0 <= I < N, got '" + text + "'");
    return s;
}

std::string artifact_group_key(const cell_spec& cell) {
    nlohmann::json j = cell_to_json(cell);
    for (const char* runtime_only : {"beam", "instance", "generation"}) j.erase(runtime_only);
    return j.dump();
}

std::vector<cell_spec> select_shard(const std::vector<cell_spec>& cells, const shard_spec& shard) {
    std::map<std::string, std::int64_t> shard_of_group;
    std::vector<std::size_t> load(static_cast<std::size_t>(shard.count), 0);
    std::vector<std::int64_t> shard_of_cell(cells.size());
    std::map<std::string, std::size_t> group_size;
    for (const auto& c : cells) ++group_size[artifact_group_key(c)];
    for (std::size_t i = 0; i < cells.size(); ++i) {
        const std::string key = artifact_group_key(cells[i]);
        auto it = shard_of_group.find(key);
        if (it == shard_of_group.end()) {
            const auto least = std::min_element(load.begin(), load.end()) - load.begin();
            it = shard_of_group.emplace(key, least).first;
            load[static_cast<std::size_t>(least)] += group_size[key];
        }
        shard_of_cell[i] = it->second;
    }
    std::vector<cell_spec> out;
    for (std::size_t i = 0; i < cells.size(); ++i)
        if (shard_of_cell[i] == shard.index) out.push_back(cells[i]);
    return out;
}

bool resolve_use_cuda(const std::string& device) {
    if (device == "cpu") return false;
    const bool have = cuda_device_available();
    if (device == "cuda" && !have)
        throw input_error("command line", "--device", "cuda requested but no CUDA device is usable here");
    return have;
}

int run_cell_child(const std::filesystem::path& cell_file, const std::filesystem::path& result_file,
                   const std::filesystem::path& phase_file, const std::filesystem::path& configs_dir,
                   const std::filesystem::path& cache_dir, bool use_cuda, bool cold_load,
                   double stream_bandwidth_bytes_per_s) {
    std::ifstream in(cell_file);
    const cell_spec cell = cell_from_json(nlohmann::json::parse(in), cell_file.string());
    inject_fault_if_asked(cell_label(cell));
    const catalog cat = load_catalog(configs_dir);
    cell_environment env;
    env.models_and_instances = &cat;
    env.cache_dir = cache_dir;
    env.use_cuda = use_cuda;
    env.cold_load = cold_load;
    env.stream_bandwidth_bytes_per_s = stream_bandwidth_bytes_per_s;
    // The cache cap comes through the environment, so `qbench run --cache-max-gb` reaches every child.
    if (const char* cap = std::getenv("QBENCH_CACHE_MAX_GB"); cap && *cap)
        env.cache_max_bytes = static_cast<std::uint64_t>(std::stod(cap) * 1e9);
    env.on_phase = [&](std::string_view phase) {
        std::cerr << "qbench cell: phase " << phase << std::endl;
        if (phase_file.empty()) return;
        std::ofstream(phase_file, std::ios::trunc) << phase << '\n';
    };
    const cell_result r = execute_cell(cell, env);
    nlohmann::ordered_json j;
    j["outcome"] = std::string(to_string(r.outcome));
    j["reason"] = r.reason;
    j["device"] = r.device;
    j["metrics"] = r.metrics;
    const auto tmp = result_file.string() + ".tmp";
    std::ofstream(tmp, std::ios::trunc) << j.dump(1) << '\n';
    std::filesystem::rename(tmp, result_file);
    if (r.outcome != outcome::ok) std::cerr << "qbench cell: " << to_string(r.outcome) << ": " << r.reason << std::endl;
    return 0;
}

namespace {
bool recorded_as_failed(const results_file& results, const std::string& hash) {
    for (const cell_record& r : results.records())
        if (r.config_hash == hash) return r.outcome == outcome::error || r.outcome == outcome::timeout;
    return false;
}
}  // namespace

run_summary run_matrix(const matrix& m, const std::vector<cell_spec>& cells, const catalog& cat,
                       const run_options& options) {
    const bool use_cuda = resolve_use_cuda(options.device);
    const std::string device = use_cuda ? "cuda" : "cpu";
    std::filesystem::create_directories(options.cache_dir);
    if (options.output.has_parent_path()) std::filesystem::create_directories(options.output.parent_path());

    double stream_bps = 0;  // the denominator of bandwidth_utilization, measured once per run
    results_file results = [&] {
        if (options.resume && std::filesystem::exists(options.output)) {
            auto existing = results_file::open_existing(options.output);
            // Whoever continues the file says so: the records it adds may come from another build or machine.
            provenance_inputs who;
            who.command_line = options.command_line;
            const nlohmann::ordered_json now = capture_provenance(who);
            nlohmann::ordered_json entry;
            for (const char* key : {"timestamp", "qbench_version", "git_commit", "git_dirty"}) entry[key] = now.at(key);
            entry["hostname"] = now.at("host").value("hostname", "unknown");
            entry["command_line"] = now.at("command_line");
            existing.note_resumed(entry);
            const auto& gpu = existing.provenance().contains("gpu") ? existing.provenance().at("gpu") : nullptr;
            if (gpu.is_object() && gpu.contains("stream_bandwidth_bytes_per_s"))
                stream_bps = gpu.at("stream_bandwidth_bytes_per_s").get<double>();
            return existing;
        }
        provenance_inputs inputs;
        inputs.command_line = options.command_line;
        inputs.matrix_file = m.file;
        inputs.matrix_yaml = m.yaml_text;
        if (use_cuda) {
            inputs.gpu = probe_gpu(options.isolate);
            if (inputs.gpu.is_object() && inputs.gpu.contains("stream_bandwidth_bytes_per_s"))
                stream_bps = inputs.gpu.at("stream_bandwidth_bytes_per_s").get<double>();
        }
        return results_file::create(options.output, capture_provenance(inputs));
    }();
    for (const auto& w : results.warnings()) std::cerr << "qbench: warning: " << w << "\n";

    const auto work_dir = options.work_dir.empty() ? std::filesystem::path(options.output.string() + ".work")
                                                   : options.work_dir;
    std::filesystem::create_directories(work_dir);

    stop_signal_scope signals;
    run_summary summary;
    progress_display progress(cells.size());
    for (std::size_t i = 0; i < cells.size(); ++i) {
        const cell_spec& cell = cells[i];
        const std::string hash = cell_hash(cell);
        if (options.resume && results.has_record_with_hash(hash) &&
            !(options.retry_failed && recorded_as_failed(results, hash))) {
            ++summary.skipped;
            progress.skipped(i, cell);
            continue;
        }
        if (g_stop_signal) break;
        const std::string stem = std::to_string(i) + "-" + safe_name(cell_label(cell));
        const auto cell_file = work_dir / (stem + ".cell.json");
        const auto result_file = work_dir / (stem + ".result.json");
        const auto phase_file = work_dir / (stem + ".phase");
        const auto log_file = work_dir / (stem + ".log");
        std::filesystem::remove(result_file);
        std::filesystem::remove(phase_file);
        std::ofstream(cell_file, std::ios::trunc) << cell_to_json(cell).dump(1) << '\n';

        progress.start(i, cell);
        const std::string started_at = now_rfc3339_utc();
        cell_record record;
        if (options.isolate) {
            child_options co;
            co.log_file = log_file;
            co.timeout = std::chrono::duration<double>(options.cell_timeout_s);
            co.should_stop = [] { return g_stop_signal.load() != 0; };
            co.on_tick = [&](double elapsed) { progress.tick(elapsed, read_small_file(phase_file)); };
            const auto exe = options.child_executable.empty() ? self_executable() : options.child_executable;
            const std::vector<std::string> argv = {exe.string(), "__cell",
                                                   "--cell", cell_file.string(),
                                                   "--result", result_file.string(),
                                                   "--phase", phase_file.string(),
                                                   "--configs", options.configs_dir.string(),
                                                   "--cache-dir", options.cache_dir.string(),
                                                   "--device", device,
                                                   "--stream-bandwidth", std::to_string(stream_bps),
                                                   options.cold_load ? "--cold" : "--warm"};
            const child_exit exit = run_child(argv, co);
            if (exit.how == child_exit::kind::interrupted) {
                summary.interrupted = true;
                progress.interrupted(i, cell);
                break;  // the interrupted cell is not recorded: --resume runs it again
            }
            record = record_from_child(cell, result_file, exit, log_file, started_at, device);
        } else {
            const auto t0 = std::chrono::steady_clock::now();
            run_cell_child(cell_file, result_file, phase_file, options.configs_dir, options.cache_dir, use_cuda,
                           options.cold_load, stream_bps);
            child_exit exit;
            exit.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            record = record_from_child(cell, result_file, exit, log_file, started_at, device);
        }
        results.put(record);  // replaces the failed record of a retried cell
        ++summary.recorded;
        if (record.outcome == outcome::error || record.outcome == outcome::timeout) ++summary.failed;
        progress.finish(i, cell, record);
    }
    if (g_stop_signal) summary.interrupted = true;
    progress.done();
    std::cout << format_cells_table(results.records()) << std::flush;
    std::cerr << "qbench: " << summary.recorded << " cell(s) recorded, " << summary.skipped << " skipped (resume), "
              << summary.failed << " failed -> " << options.output.string() << "\n";
    if (summary.interrupted) std::cerr << "qbench: interrupted; the results file is valid, --resume continues\n";
    return summary;
}

}  // namespace qbench
