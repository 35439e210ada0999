#pragma once
/// Quality beside speed: how far a cell's next-token distributions are from the FP16 model's on the same prompt.
///
/// The FP16 model greedily generates max_new_tokens tokens S; both models are then teacher-forced on S, and at each
/// position we compare the distributions: top-1 agreement (same argmax) and KL(P_fp16 || P_cell) in nats. The FP16
/// side is computed once per (model, seed, prompt shape, length) and cached under cache_dir/quality/, so a matrix pays
/// for it once per model, not once per cell.
#include "qbench/config/cell.hpp"
#include "qbench/engine/generation.hpp"
#include "qbench/engine/model_config.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <memory>

namespace qbench {

/// Builds the FP16 reference executor when the cache does not have its distributions yet.
using reference_factory = std::function<std::unique_ptr<executor>()>;

/// Makes sure the FP16 reference for this (model, prompt, length) is in the cache, building it with make_reference
/// if not. The GPU path calls this before the cell's budgeted context exists, so the reference never counts
/// against the emulated instance's VRAM.
void prepare_quality_reference(const model_config& model, const prompt& p, const cell_spec& cell,
                               const std::filesystem::path& cache_dir, const reference_factory& make_reference);

/// Compares the cell's teacher-forced distributions with the cached FP16 reference (made first if missing).
nlohmann::ordered_json quality_against_fp16(executor& cell_executor, const model_config& model, const prompt& p,
                                            const cell_spec& cell, const std::filesystem::path& cache_dir,
                                            const reference_factory& make_reference);

/// KL(P || Q) in nats between softmax(p_logits) and softmax(q_logits) (double precision).
double kl_divergence_from_logits(std::span<const float> p_logits, std::span<const float> q_logits);

}  // namespace qbench
