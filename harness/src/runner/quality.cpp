#include "qbench/runner/quality.hpp"

#include "qbench/common/counter_rng.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/results/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <unistd.h>

namespace qbench {

namespace {

struct reference_data {
    std::vector<std::int32_t> tokens;        // the FP16 model's greedy continuation
    std::vector<std::vector<float>> logits;  // teacher-forced distributions, one row per position
};

std::filesystem::path reference_path(const model_config& model, const prompt& p, const cell_spec& cell,
                                     const std::filesystem::path& cache_dir) {
    const std::string key = model.name + "|" + std::to_string(cell.seed) + "|" + std::to_string(p.tokens.size()) +
                            "|" + std::to_string(p.image_tokens) + "|" + std::to_string(p.image_offset) + "|" +
                            std::to_string(cell.generation.max_new_tokens) + "|v1";
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash_string(key)));
    return cache_dir / "quality" / (model.name + "-" + hex + ".bin");
}

// Binary cache: [u64 n_tokens][tokens i32...][u64 rows][u64 vocab][rows*vocab f32].
bool read_reference(const std::filesystem::path& path, reference_data& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::uint64_t n = 0, rows = 0, vocab = 0;
    in.read(reinterpret_cast<char*>(&n), 8);
    if (!in || n > (1u << 20)) return false;
    out.tokens.resize(n);
    in.read(reinterpret_cast<char*>(out.tokens.data()), static_cast<std::streamsize>(n * 4));
    in.read(reinterpret_cast<char*>(&rows), 8);
    in.read(reinterpret_cast<char*>(&vocab), 8);
    if (!in || rows > (1u << 20) || vocab > (1u << 24)) return false;
    out.logits.assign(rows, std::vector<float>(vocab));
    for (auto& row : out.logits) in.read(reinterpret_cast<char*>(row.data()), static_cast<std::streamsize>(vocab * 4));
    return static_cast<bool>(in);
}

void write_reference(const std::filesystem::path& path, const reference_data& data) {
    std::filesystem::create_directories(path.parent_path());
    const auto tmp = path.string() + ".tmp." + std::to_string(::getpid());
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        const std::uint64_t n = data.tokens.size(), rows = data.logits.size(),
                            vocab = rows ? data.logits.front().size() : 0;
        out.write(reinterpret_cast<const char*>(&n), 8);
        out.write(reinterpret_cast<const char*>(data.tokens.data()), static_cast<std::streamsize>(n * 4));
        out.write(reinterpret_cast<const char*>(&rows), 8);
        out.write(reinterpret_cast<const char*>(&vocab), 8);
        for (const auto& row : data.logits)
            out.write(reinterpret_cast<const char*>(row.data()), static_cast<std::streamsize>(vocab * 4));
        if (!out) throw error("cannot write quality reference " + tmp);
    }
    std::filesystem::rename(tmp, path);  // atomic: concurrent cells see the old state or the whole file
}

std::int32_t argmax(std::span<const float> v) {
    return static_cast<std::int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

}  // namespace

double kl_divergence_from_logits(std::span<const float> p_logits, std::span<const float> q_logits) {
    if (p_logits.size() != q_logits.size() || p_logits.empty()) throw error("kl_divergence: size mismatch");
    auto log_softmax = [](std::span<const float> x) {
        const double mx = *std::max_element(x.begin(), x.end());
        double sum = 0;
        for (float v : x) sum += std::exp(static_cast<double>(v) - mx);
        const double lse = mx + std::log(sum);
        std::vector<double> out(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) out[i] = static_cast<double>(x[i]) - lse;
        return out;
    };
    const auto lp = log_softmax(p_logits), lq = log_softmax(q_logits);
    double kl = 0;
    for (std::size_t i = 0; i < lp.size(); ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
    return std::max(kl, 0.0);
}

namespace {
reference_data load_or_make_reference(const model_config& model, const prompt& p, const cell_spec& cell,
                                      const std::filesystem::path& cache_dir, const reference_factory& make_reference) {
    const auto path = reference_path(model, p, cell, cache_dir);
    reference_data ref;
    if (read_reference(path, ref)) return ref;
    auto reference = make_reference();
    generation_config greedy;
    greedy.max_new_tokens = cell.generation.max_new_tokens;
    greedy.seed = cell.seed;
    ref.tokens = reference->generate(p, greedy).tokens;
    ref.logits = reference->teacher_forced_logits(p, ref.tokens);
    write_reference(path, ref);
    return ref;
}
}  // namespace

void prepare_quality_reference(const model_config& model, const prompt& p, const cell_spec& cell,
                               const std::filesystem::path& cache_dir, const reference_factory& make_reference) {
    load_or_make_reference(model, p, cell, cache_dir, make_reference);
}

nlohmann::ordered_json quality_against_fp16(executor& cell_executor, const model_config& model, const prompt& p,
                                            const cell_spec& cell, const std::filesystem::path& cache_dir,
                                            const reference_factory& make_reference) {
    const reference_data ref = load_or_make_reference(model, p, cell, cache_dir, make_reference);
    const auto cell_logits = cell_executor.teacher_forced_logits(p, ref.tokens);
    // Positions 0..n-1: the distributions of the n generated tokens (row i follows the prompt and tokens[0..i)).
    const std::size_t rows = std::min({ref.logits.size(), cell_logits.size(), ref.tokens.size()});
    if (rows == 0) throw error("quality: no positions to compare");
    double kl_sum = 0, kl_max = 0;
    std::size_t agree = 0;
    for (std::size_t i = 0; i < rows; ++i) {
        if (argmax(ref.logits[i]) == argmax(cell_logits[i])) ++agree;
        const double kl = kl_divergence_from_logits(ref.logits[i], cell_logits[i]);
        kl_sum += kl;
        kl_max = std::max(kl_max, kl);
    }
    nlohmann::ordered_json q;
    q[metric::k_top1_agreement] = static_cast<double>(agree) / static_cast<double>(rows);
    q[metric::k_mean_kl] = kl_sum / static_cast<double>(rows);
    q[metric::k_max_kl] = kl_max;
    q[metric::k_compared_positions] = rows;
    q[metric::k_reference_framework] = "fp16";
    return q;
}

}  // namespace qbench
