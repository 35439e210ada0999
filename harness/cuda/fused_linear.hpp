#pragma once
/// An optional capability of a device_linear: several linears of one layer in one kernel. The executor finds it with
/// dynamic_cast and falls back to one forward() per linear (plus the separate SwiGLU kernel) where a backend does not
/// offer it or declines a call, so backends that ignore this header keep working unchanged.
///
/// Why: a decode step's linears are short (a 4096 x 4096 fp16 weight streams in ~7 us on an H200), and each launch
/// loses part of that to ramp-up and tail; q, k and v (and gate and up) read the same activations, so one kernel can
/// stream all their weights at once, and the SwiGLU product can be formed in the gate/up kernel's epilogue.
#include "qbench/backend/device_linear.hpp"

#include <cstdint>

namespace qbench {

class fused_linear {
public:
    virtual ~fused_linear() = default;
    /// y_i[rows, out_i] = x[rows, in] · W_iᵀ for this linear (i = 0) and others[0 .. count - 1] (i = 1 ..), all with
    /// this linear's in_features, enqueued as one kernel on `stream`. Returns false, enqueuing nothing, when it cannot
    /// (another format, too many rows, unaligned buffers): the caller then runs the forwards one by one.
    virtual bool forward_group(device_linear* const* others, int count, const void* x, std::int64_t rows,
                               void* const* ys, CUstream_st* stream) = 0;
    /// act[rows, out] = fp16(silu(g) * u), g = fp16(x · W_thisᵀ) (this is the gate projection), u = fp16(x · W_upᵀ),
    /// silu in double as swiglu_ref: bit-identical to forward() of both and launch_swiglu. False as above.
    virtual bool forward_swiglu(device_linear& up, const void* x, std::int64_t rows, void* act,
                                CUstream_st* stream) = 0;

    // ---- RMSNorm folded into the linears (decode). Optional: the defaults decline, and the executor then runs the
    // separate rms_norm kernel (which also does the residual add), so a backend that ignores these keeps working.
    // Why: a decode step of a 7B model has 65 RMSNorm launches of ~4 us each around 160 GEMV launches; the add fits in
    // the epilogue of the linear that produces the block output, the norm in the prologue of the linears that read it.

    /// The input of a linear that forms h = rms_norm(residual) * norm_weight itself (rms_norm.cuh: the same roundings
    /// and reduction order as launch_rms_norm's fast path, so its outputs are bit-identical to the unfolded path; a
    /// backend may offer a form that is not, only where the user asks for it by name and with its kernel path saying
    /// so: GPTQ's QBENCH_GPTQ_NORM_FOLD=scaled).
    struct normed_input {
        const void* residual = nullptr;     ///< x [rows, in] fp16, the residual stream (already updated)
        const void* norm_weight = nullptr;  ///< [in] fp16
        double eps = 0;
    };
    /// Whether the normed forwards below would accept `rows` rows (the executor's kernel path string says so).
    virtual bool folds_norm(std::int64_t rows) const {
        (void)rows;
        return false;
    }
    /// Whether the executor should fold by default (QBENCH_FP16_FOLD_NORM unset): the backend measured its folded
    /// step faster than the separate RMSNorm kernels. QBENCH_FP16_FOLD_NORM=1 / 0 folds everywhere / nowhere.
    virtual bool prefers_folded_norm() const { return false; }
    /// What the executor's kernel path adds to "+fold-norm" where this backend's fold is not the bit-identical one
    /// (GPTQ's scaled form: "-scaled"); empty otherwise.
    virtual std::string folded_norm_form() const { return ""; }
    /// forward_group reading h = rms_norm(in) instead of a materialized h. False (nothing enqueued) when it cannot.
    virtual bool forward_group_normed(device_linear* const* others, int count, const normed_input& in,
                                      std::int64_t rows, void* const* ys, CUstream_st* stream) {
        (void)others, (void)count, (void)in, (void)rows, (void)ys, (void)stream;
        return false;
    }
    /// forward_swiglu reading h = rms_norm(in). False as above.
    virtual bool forward_swiglu_normed(device_linear& up, const normed_input& in, std::int64_t rows, void* act,
                                       CUstream_st* stream) {
        (void)up, (void)in, (void)rows, (void)act, (void)stream;
        return false;
    }
    /// y[rows, out] = rms_norm(in) · Wᵀ (the LM head after the final norm). False as above.
    virtual bool forward_normed(const normed_input& in, std::int64_t rows, void* y, CUstream_st* stream) {
        (void)in, (void)rows, (void)y, (void)stream;
        return false;
    }
    /// The residual add in the epilogue: residual[rows, out] = fp16(residual + fp16(x · Wᵀ)) in place, bit-identical
    /// to forward() into a delta buffer followed by launch_rms_norm's add (o_proj, down_proj). False as above.
    virtual bool forward_residual(const void* x, std::int64_t rows, void* residual, CUstream_st* stream) {
        (void)x, (void)rows, (void)residual, (void)stream;
        return false;
    }
    /// Where forward_residual's output goes next: h[rows, out] = rms_norm(residual) * norm_weight.
    struct normed_output {
        void* h = nullptr;                  ///< [rows, out] fp16
        const void* norm_weight = nullptr;  ///< [out] fp16
        double eps = 0;
    };
    /// Whether forward_residual_normed would accept `rows` rows (the executor's kernel path string says so).
    virtual bool norms_in_epilogue(std::int64_t rows) const {
        (void)rows;
        return false;
    }
    /// forward_residual, then h = rms_norm(residual) as launch_rms_norm forms it from the updated stream (bit-identical),
    /// in the same launch: so the RMSNorm kernel after o_proj / down_proj is not needed. False as above.
    virtual bool forward_residual_normed(const void* x, std::int64_t rows, void* residual, const normed_output& out,
                                         CUstream_st* stream) {
        (void)x, (void)rows, (void)residual, (void)out, (void)stream;
        return false;
    }
};

}  // namespace qbench
