#pragma once
// Records and provenance for the results tests and the schema sample writer: every outcome, and for `ok` every
// metric of k_metric_table (generated from the table, so a new metric is covered by the schema test at once).
#include "qbench/results/metrics.hpp"
#include "qbench/results/provenance.hpp"
#include "qbench/results/record.hpp"
#include "qbench/results/timestamp.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace qbench::test {

inline cell_spec sample_cell(int i) {
    cell_spec c;
    c.model = i % 2 ? "vicuna-7b-v0" : "llama-2-7b-chat";
    switch (i % 3) {
        case 0: c.framework = "fp16"; c.bits = 16; break;
        case 1: c.framework = "gptq"; c.bits = i % 4 == 1 ? 4 : 3; break;
        default: c.framework = "bnb"; c.bits = 4; c.bnb.quant_type = i % 2 ? "nf4" : "fp4"; break;
    }
    c.beam = 1 + i % 4;
    c.instance = i % 2 ? "g4dn.xlarge" : "local";
    c.seed = static_cast<std::uint64_t>(i);
    return c;
}

/// A metric value of the given shape (deterministic in `i`).
inline nlohmann::ordered_json sample_value(metric_kind kind, int i) {
    switch (kind) {
        case metric_kind::number: return 0.25 + i;
        case metric_kind::integer: return (std::uint64_t{1} << 30) * static_cast<std::uint64_t>(i + 1);
        case metric_kind::string: return "fp16";
        case metric_kind::summary: {
            const std::vector<double> samples = {40.0 + i, 42.5 + i, 41.25 + i, 39.0 + i};
            return summary_to_json(samples);
        }
        case metric_kind::quality: {
            nlohmann::ordered_json q = nlohmann::ordered_json::object();
            for (const metric_info& f : k_quality_table) q[std::string(f.name)] = sample_value(f.kind, i);
            q[metric::k_top1_agreement] = 0.875;  // a fraction
            return q;
        }
        case metric_kind::string_map: return {{"decode", "gptq_gemv_4bit"}, {"prefill", "dequantize+cublas"}};
        case metric_kind::oom: return {{"requested_bytes", 1 << 20}, {"available_bytes", 1 << 10}, {"kind", "vram"}};
    }
    return nullptr;
}

inline cell_record sample_record(outcome o, int i) {
    cell_record r;
    r.cell = sample_cell(i);
    r.config_hash = cell_hash(r.cell);
    r.outcome = o;
    const auto start = std::chrono::system_clock::time_point(std::chrono::seconds(1'740'000'000 + 60 * i));
    r.started_at = format_rfc3339_utc(start);
    r.finished_at = format_rfc3339_utc(start + std::chrono::milliseconds(12'345));
    r.wall_s = 12.345;
    r.device = i % 2 ? "cuda" : "cpu";
    switch (o) {
        case outcome::ok:
            for (const metric_info& m : k_metric_table)
                if (m.kind != metric_kind::oom) r.metrics[std::string(m.name)] = sample_value(m.kind, i);
            break;
        case outcome::oom_vram:
            r.reason = "device allocation of 1.0 MiB for 'lm_head' exceeds the 15360 MiB budget of g4dn.xlarge";
            r.metrics[metric::k_load_read_s] = 3.5;
            r.metrics[metric::k_oom] = {{metric::k_requested_bytes, 1048576},
                                        {metric::k_available_bytes, 1024},
                                        {metric::k_budget_bytes, std::uint64_t{15360} << 20},
                                        {metric::k_kind, "vram"}};
            break;
        case outcome::oom_host:
            r.reason = "host staging of the FP16 checkpoint exceeds 32 GiB of RAM";
            r.metrics[metric::k_oom] = {
                {metric::k_requested_bytes, std::uint64_t{26} << 30}, {metric::k_available_bytes, 0}, {metric::k_kind, "host"}};
            break;
        case outcome::unsupported: r.reason = "bnb supports 4 and 8 bits, not 3"; break;
        case outcome::error:
            r.reason = "CUDA error 700 \"an illegal memory access\" | in gemv\nsecond line, caf\u00e9";
            break;
        case outcome::timeout:
            r.reason = "ran past the 600 s limit";
            r.metrics[metric::k_load_time_s] = 2.0;
            break;
    }
    return r;
}

inline nlohmann::ordered_json sample_provenance() {
    provenance_inputs in;
    in.command_line = {"qbench", "run", "configs/smoke.yaml", "--resume"};
    in.matrix_file = "configs/smoke.yaml";
    in.matrix_yaml = "models: [tiny]\nframeworks: [fp16, gptq]\n";
    in.gpu = {{"name", "NVIDIA H200"}, {"compute_capability", "9.0"}, {"sm_count", 132}};
    return capture_provenance(in);
}

}  // namespace qbench::test
