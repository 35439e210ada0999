#pragma once
/// GPTQ (Frantar et al.; IST-DASLab gptq `gptq.py::fasterquant`, AutoGPTQ `quantization/gptq.py`) on the CPU: the
/// reference the CUDA version is tested against, and the quantizer of the CPU path for small models.
///
/// Steps, as published (see the reference notes, section B1):
///   H = (2/n) sum over calibration tokens of x x^T (n = number of sequences), fp32.
///   Per-channel params of the whole row when group_size = -1 (computed before dead columns are zeroed).
///   Dead columns (diag(H) == 0): H[d,d] = 1, W[:,d] = 0.
///   static_groups: one quantizer per group of the original column order, fixed before act-order.
///   act-order: perm = argsort(diag(H), descending) (stable here: ties keep the lower column first).
///   Damping: H[i,i] += damp_percent * mean(diag(H)).
///   Hinv = upper Cholesky factor of H^-1.
///   Columns in blocks of 128; within a block, column by column: refresh the group's params when the column starts
///   a group, taking them from W (not from the block's running copy W1 — the reference's subtlety: the two differ
///   when a group starts inside a block); q = quant(w); err = (w - q) / Hinv[i,i]; W1[:, i:] -= err Hinv[i, i:].
///   After a block: W[:, i2:] -= Err1 Hinv[i1:i2, i2:] (lazy batch update).
///   Undo act-order; g_idx: j // gs, or invperm[j] // gs for act-order without static groups.
/// Precision: W, Hinv and the column loop in fp32 like the reference; the Cholesky factorizations in double.
/// If the damped H is not positive definite, damping is raised by 0.01 (of the mean diagonal) and retried, as
/// GPTQModel does (AutoGPTQ would stop); the damping used is reported.
#include "backends/gptq/gptq_pack.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace qbench::gptq {

struct gptq_config {
    std::int64_t bits = 4;
    std::int64_t group_size = 128;  ///< -1 = per channel over the whole row
    bool sym = true;
    bool act_order = false;         ///< desc_act
    bool static_groups = false;
    double damp_percent = 0.01;
    std::int64_t block_size = 128;
};

struct gptq_result {
    quantized_linear q;
    double loss = 0;          ///< sum over weights of (w - q)^2 / Hinv[i,i]^2 / 2, as the reference prints
    double damp_used = 0;     ///< damp_percent finally used
    std::vector<std::int32_t> perm;  ///< act-order permutation (empty without act-order)
};

/// add_batch: accumulates sum x x^T over tokens (double) and counts sequences; finalize() gives (2/n) * sum in fp32.
class hessian_accumulator {
public:
    explicit hessian_accumulator(std::int64_t in_features);
    /// x: [tokens][K] row-major; `sequences` is the batch dimension the reference counts (not tokens).
    void add_batch(std::span<const float> x, std::int64_t tokens, std::int64_t sequences);
    std::int64_t in_features() const { return m_k; }
    std::int64_t sequences() const { return m_n; }
    /// H [K][K] fp32, symmetric.
    std::vector<float> finalize() const;

private:
    std::int64_t m_k;
    std::int64_t m_n = 0;
    std::vector<double> m_sum;  // lower triangle used
};

/// Stable descending argsort of diag(H) (act-order permutation).
std::vector<std::int32_t> act_order_permutation(std::span<const float> h, std::int64_t in_features);

/// Upper Cholesky factor U of H^-1 (H^-1 = U^T U), H [K][K] symmetric positive definite; double internally.
/// Returns false when H is not positive definite.
bool cholesky_inverse_upper(std::span<const float> h, std::int64_t k, std::vector<float>& hinv_upper);

/// GPTQ of one layer: W [N][K] fp32, H [K][K] from hessian_accumulator.
gptq_result gptq_quantize_ref(std::span<const float> weight, std::int64_t out_features, std::int64_t in_features,
                              std::span<const float> hessian, const gptq_config& config);

/// Round-to-nearest with the same quantizer and groups (original column order): the baseline GPTQ must beat.
quantized_linear rtn_quantize_ref(std::span<const float> weight, std::int64_t out_features, std::int64_t in_features,
                                  std::int64_t bits, std::int64_t group_size, bool sym);

/// g_idx as the reference assigns it (see above); perm empty = no act-order.
std::vector<std::int32_t> make_g_idx(std::int64_t in_features, std::int64_t group_size, bool static_groups,
                                     std::span<const std::int32_t> perm);

/// Relative output error ||X W^T - X Wq^T||_F / ||X W^T||_F of a quantized weight on inputs x [tokens][K]
/// (double accumulation).
double relative_output_error(std::span<const float> weight, std::span<const float> weight_q, std::int64_t out_features,
                             std::int64_t in_features, std::span<const float> x, std::int64_t tokens);

}  // namespace qbench::gptq
