#pragma once
/// The calibration forward of one decoder layer on the GPU, for many full sequences at once (no KV cache): what GPTQ
/// needs to collect Hessians at 7B scale in minutes. The CUDA executor's kernels do RMSNorm, RoPE and SwiGLU (same
/// numerics as the engine); the linears are cuBLAS GEMMs over fp16 weights (the original or the fake-quantized ones);
/// causal attention is two strided-batched cuBLAS GEMMs around a softmax kernel (scores fp32, probabilities rounded to
/// fp16 before P·V — an approximation of the engine's fp32 accumulation that calibration does not care about).
///
/// The forward of a chunk stops at a stage and leaves every stage input up to it in its buffers:
///   attn_in  = rms_norm(h)                       input of q, k, v
///   o_in     = attention(rope(q), rope(k), v)    input of o
///   mlp_in   = rms_norm(h + o(o_in))             input of gate, up
///   down_in  = silu(gate(mlp_in)) * up(mlp_in)   input of down
///   output   = h + o(o_in) + down(down_in)       the layer's output (written to the caller's buffer)
#include "cuda/device_context.cuh"
#include "qbench/engine/model_config.hpp"

#include <cuda_fp16.h>

#include <array>
#include <cstdint>

namespace qbench::gptq {

enum class calib_stage : int { attn_in = 0, o_in = 1, mlp_in = 2, down_in = 3, output = 4 };

/// The stage whose output is the input of a linear.
calib_stage stage_of(linear_kind kind);

/// Device pointers of one layer's weights (fp16): the seven linears in linear_kind order q..down, and the two norms.
struct calib_layer_weights {
    std::array<const __half*, 7> linear{};
    const __half* input_norm = nullptr;
    const __half* post_norm = nullptr;
};

class calib_forward {
public:
    /// Buffers for chunks of up to `max_sequences` sequences of `seq_len` tokens.
    calib_forward(device_context& context, const model_config& model, std::int64_t seq_len, std::int64_t max_sequences);
    ~calib_forward();
    calib_forward(const calib_forward&) = delete;
    calib_forward& operator=(const calib_forward&) = delete;

    /// Runs `sequences` sequences of the layer input h [sequences * seq_len, H] up to `upto`; for `output` the result
    /// goes to `out` [sequences * seq_len, H] (may not alias h).
    void run(const calib_layer_weights& w, const __half* h, std::int64_t sequences, calib_stage upto, __half* out);
    /// The last run's input of a stage before `output`: [sequences * seq_len, width(stage)].
    const __half* input(calib_stage stage) const;
    std::int64_t width(calib_stage stage) const;

    /// H += x^T x over `rows` rows of x [rows, k] (fp16 inputs, products exact, fp32 accumulation).
    void hessian_add(float* h, const __half* x, std::int64_t rows, std::int64_t k);
    /// After the last hessian_add of a Hessian: fills the triangle SSYRK left untouched.
    void symmetrize_hessian(float* h, std::int64_t k);

    std::int64_t seq_len() const { return m_seq_len; }

private:
    void linear(const __half* x, std::int64_t rows, const __half* w, std::int64_t in, std::int64_t out, __half* y);
    void attention(std::int64_t sequences);

    device_context& m_context;
    model_config m_model;
    std::int64_t m_seq_len, m_max_sequences;
    cublasHandle_t m_blas = nullptr;
    device_buffer m_inv_freq;
    device_buffer m_xn, m_q, m_k, m_v, m_krot, m_vrot, m_attn, m_tmp, m_h2, m_xn2, m_gate, m_up, m_act, m_scores;
    device_buffer m_x32;  // fp32 copy of one Hessian input chunk
};

}  // namespace qbench::gptq
