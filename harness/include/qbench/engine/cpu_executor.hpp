#pragma once
/// The CPU reference executor: generation with a KV cache (prefill, then one decode step per new token), greedy,
/// sampling and beam search exactly as engine/generation.hpp defines them. The oracle of the CUDA executor.
#include "qbench/engine/cpu_forward.hpp"
#include "qbench/engine/cpu_kv_cache.hpp"
#include "qbench/engine/cpu_model.hpp"
#include "qbench/engine/generation.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace qbench {

class cpu_executor : public executor {
public:
    /// Borrows the model (it must outlive the executor).
    explicit cpu_executor(const cpu_model& model);
    /// Owns the model.
    explicit cpu_executor(cpu_model&& model);
    cpu_executor(const cpu_executor&) = delete;
    cpu_executor& operator=(const cpu_executor&) = delete;

    generation_output generate(const prompt& p, const generation_config& g) override;
    const generation_timing& last_timing() const override { return m_timing; }
    std::vector<std::vector<float>> teacher_forced_logits(const prompt& p,
                                                          const std::vector<std::int32_t>& forced) override;

    const cpu_model& model() const { return *m_model; }

    /// Prefills the prompt into `cache` (one sequence, empty) and returns the last position's logits [V].
    std::vector<float> prefill(const prompt& p, cpu_kv_cache& cache) const;
    /// One decode step: tokens[s] is appended to sequence s of `cache`; returns logits [S * V].
    std::vector<float> decode(std::span<const std::int32_t> tokens, cpu_kv_cache& cache) const;
    /// Without a cache: the prompt followed by `extra` tokens in one causal pass; logits [rows, V] of the last
    /// `rows` positions (rows <= p.length() + extra.size()). The KV-cache tests compare decode() against this.
    std::vector<float> full_logits(const prompt& p, std::span<const std::int32_t> extra, std::int64_t rows) const;

private:
    std::optional<cpu_model> m_owned;
    const cpu_model* m_model;
    generation_timing m_timing;
};

}  // namespace qbench
