// bench_gptq_quantize: GPTQ of a whole model on the GPU (the `qbench quantize` path) from synthetic fp16 weights,
// a device-script tool. Prints the time, the host and VRAM peaks and the GPTQ-vs-RTN errors; writes the full report.
//   bench_gptq_quantize [--model 7b|13b|tiny] [--bits B] [--group G] [--act] [--samples N] [--seq-len T]
//                       [--layers L] [--plan autogptq|streaming] [--out DIR]
#include "backends/gptq/gptq_quantize.hpp"

#include "qbench/common/errors.hpp"
#include "qbench/io/synthetic_checkpoint.hpp"
#include "qbench/io/tensor_source.hpp"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

using namespace qbench;

int main(int argc, char** argv) {
    std::string model_name = "7b", out = "/tmp/qbench-gptq-quantize", plan = "autogptq";
    gptq::gptq_quantize_options o;
    std::int64_t layers = -1;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) throw std::runtime_error("missing value after " + a);
            return argv[++i];
        };
        if (a == "--model") model_name = next();
        else if (a == "--bits") o.bits = std::stoll(next());
        else if (a == "--group") o.gptq.group_size = std::stoll(next());
        else if (a == "--act") o.gptq.desc_act = true;
        else if (a == "--samples") o.gptq.calibration_samples = std::stoll(next());
        else if (a == "--seq-len") o.gptq.calibration_seq_len = std::stoll(next());
        else if (a == "--layers") layers = std::stoll(next());
        else if (a == "--plan") plan = next();
        else if (a == "--out") out = next();
        else {
            std::fprintf(stderr, "unknown argument %s\n", a.c_str());
            return 2;
        }
    }
    o.gptq.memory_plan = plan;
    o.on_layer = [](std::int64_t done, std::int64_t total, double s) {
        std::fprintf(stderr, "  layer %lld/%lld done, %.1f s\n", static_cast<long long>(done), static_cast<long long>(total), s);
    };
    model_config m;
    m.name = "llama-" + model_name + "-shapes";
    if (model_name == "13b") {
        m.hidden_size = 5120, m.intermediate_size = 13824, m.num_layers = 40, m.num_heads = 40;
    } else if (model_name == "tiny") {
        m.hidden_size = 256, m.intermediate_size = 688, m.num_layers = 2, m.num_heads = 8;
    } else {
        m.hidden_size = 4096, m.intermediate_size = 11008, m.num_layers = 32, m.num_heads = 32;
    }
    m.num_kv_heads = m.num_heads;
    m.vocab_size = 32000;
    m.max_position = 4096;
    if (layers > 0) m.num_layers = layers;
    try {
        const auto src = make_synthetic_source(m, 0);
        std::filesystem::remove_all(out);
        const auto r = gptq::quantize_model(m, *src, o, out, true);
        std::printf("GPTQ %lld-bit g%lld%s of %s (%lld layers), %lld x %lld calibration tokens on %s\n",
                    static_cast<long long>(o.bits), static_cast<long long>(o.gptq.group_size), o.gptq.desc_act ? " act-order" : "",
                    m.name.c_str(), static_cast<long long>(m.num_layers), static_cast<long long>(o.gptq.calibration_samples),
                    static_cast<long long>(o.gptq.calibration_seq_len), r.device.c_str());
        std::printf("  quantize_time_s %.1f (read %.1f, forward %.1f, algorithm %.1f, quality %.1f, write %.1f)\n",
                    r.quantize_time_s, r.read_s, r.forward_s, r.algorithm_s, r.quality_s, r.write_s);
        std::printf("  host peak %.2f GB accounted, %.2f GB RSS; VRAM peak %.2f GB allocator, %.2f GB device\n",
                    r.host_peak_bytes * 1e-9, r.rss_peak_bytes * 1e-9, r.vram_peak_bytes * 1e-9, r.device_peak_bytes * 1e-9);
        std::printf("  mean relative output error on held-out inputs: GPTQ %.4f, RTN %.4f (%zu linears)\n",
                    r.mean_gptq_relative_error, r.mean_rtn_relative_error, r.layers.size());
        int wins = 0;
        for (const auto& l : r.layers) wins += l.gptq_relative_error < l.rtn_relative_error;
        std::printf("  GPTQ beats RTN on %d of %zu linears; artifact %.2f GB\n", wins, r.layers.size(), r.artifact_bytes * 1e-9);
        for (std::size_t i = 0; i < r.layers.size() && i < 7; ++i)
            std::printf("    %-40s gptq %.4f rtn %.4f  %.3f s\n", r.layers[i].name.c_str(), r.layers[i].gptq_relative_error,
                        r.layers[i].rtn_relative_error, r.layers[i].seconds);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_gptq_quantize: %s\n", e.what());
        return 1;
    }
    return 0;
}
