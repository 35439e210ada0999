// The fp16 linear layer on the GPU: small batches through our GEMV (fp16_gemv.cuh), larger ones through cuBLAS.
#include "backends/fp16/fp16_gemv.cuh"
#include "backends/fp16/fp16_linear.hpp"

#include "cuda/cuda_check.cuh"
#include "cuda/device_context.cuh"
#include "cuda/fused_linear.hpp"
#include "cuda/tensor_upload.cuh"

#include "qbench/io/tensor_source.hpp"

#include <array>

namespace qbench {

namespace {

class f16_device_linear final : public device_linear, public fused_linear {
public:
    f16_device_linear(device_context& context, device_buffer weight, std::int64_t in, std::int64_t out)
        : m_context(context), m_weight(std::move(weight)), m_in(in), m_out(out) {}

    std::int64_t in_features() const override { return m_in; }
    std::int64_t out_features() const override { return m_out; }
    std::uint64_t weight_bytes() const override { return static_cast<std::uint64_t>(m_in * m_out) * 2u; }
    std::string format_name() const override { return "f16"; }

    std::string kernel_path(std::int64_t rows) const override {
        if (rows <= k_f16_gemv_max_rows)
            return f16_gemv_path(m_weight.get(), m_weight.get(), rows, m_out, m_in, default_f16_gemv_variant());
        return "cublas-gemm-f16";
    }

    void forward(const void* x, std::int64_t rows, void* y, CUstream_st* stream) override {
        if (rows <= 0) return;
        const auto* w = m_weight.as<const __half>();
        if (rows <= k_f16_gemv_max_rows) {
            launch_f16_gemv(w, static_cast<const __half*>(x), static_cast<__half*>(y), rows, m_out, m_in,
                            launch_options{stream, m_context.pdl_enabled()}, default_f16_gemv_variant());
            return;
        }
        // Row-major y[rows, out] = x[rows, in] · Wᵀ is column-major yᵀ[out, rows] = W[in, out]ᵀ · xᵀ[in, rows]:
        // op(A) = Wᵀ with A = W as stored (column-major in x out, ld = in).
        const float alpha = 1.0f, beta = 0.0f;
        QB_CUBLAS_CHECK(cublasGemmEx(m_context.cublas_on(stream), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(m_out),
                                     static_cast<int>(rows), static_cast<int>(m_in), &alpha, w, CUDA_R_16F,
                                     static_cast<int>(m_in), x, CUDA_R_16F, static_cast<int>(m_in), &beta, y,
                                     CUDA_R_16F, static_cast<int>(m_out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }

    // q, k, v (or any linears of one input) as one GEMV launch over all their weights.
    bool forward_group(device_linear* const* others, int count, const void* x, std::int64_t rows, void* const* ys,
                       CUstream_st* stream) override {
        if (count < 0 || count + 1 > k_f16_gemv_max_segments) return false;
        f16_gemv_segment segments[k_f16_gemv_max_segments];
        segments[0] = {m_weight.as<const __half>(), static_cast<__half*>(ys[0]), m_out};
        if (!f16_gemv_fusable(segments[0].w, x, rows, m_in) || ys[0] == nullptr) return false;
        for (int i = 0; i < count; ++i) {
            const auto* other = dynamic_cast<const f16_device_linear*>(others[i]);
            if (other == nullptr || other->m_in != m_in || ys[i + 1] == nullptr) return false;
            segments[i + 1] = {other->m_weight.as<const __half>(), static_cast<__half*>(ys[i + 1]), other->m_out};
            if (!f16_gemv_fusable(segments[i + 1].w, x, rows, m_in)) return false;
        }
        launch_f16_gemv_group(segments, count + 1, static_cast<const __half*>(x), rows, m_in,
                              launch_options{stream, m_context.pdl_enabled()}, default_f16_gemv_variant());
        return true;
    }

    // gate (this) and up in one launch, the SwiGLU product formed in its epilogue.
    bool forward_swiglu(device_linear& up, const void* x, std::int64_t rows, void* act, CUstream_st* stream) override {
        const auto* other = dynamic_cast<const f16_device_linear*>(&up);
        if (other == nullptr || other->m_in != m_in || other->m_out != m_out) return false;
        if (!f16_gemv_fusable(m_weight.get(), x, rows, m_in) || !f16_gemv_fusable(other->m_weight.get(), x, rows, m_in))
            return false;
        launch_f16_gemv_swiglu(m_weight.as<const __half>(), other->m_weight.as<const __half>(),
                               static_cast<const __half*>(x), static_cast<__half*>(act), rows, m_out, m_in,
                               launch_options{stream, m_context.pdl_enabled()}, default_f16_gemv_variant());
        return true;
    }

    // ---- the folded RMSNorm (fused_linear.hpp): the mma GEMV forms h = rms_norm(x) in its prologue.
    bool folds_norm(std::int64_t rows) const override {
        return f16_gemv_norm_foldable(m_weight.get(), m_weight.get(), m_weight.get(), rows, m_in,
                                      default_f16_gemv_variant());
    }

    bool forward_group_normed(device_linear* const* others, int count, const normed_input& in, std::int64_t rows,
                              void* const* ys, CUstream_st* stream) override {
        if (count < 0 || count + 1 > k_f16_gemv_max_segments || ys[0] == nullptr) return false;
        const f16_gemv_variant variant = default_f16_gemv_variant();
        f16_gemv_segment segments[k_f16_gemv_max_segments];
        segments[0] = {m_weight.as<const __half>(), static_cast<__half*>(ys[0]), m_out};
        if (!f16_gemv_norm_foldable(segments[0].w, in.residual, in.norm_weight, rows, m_in, variant)) return false;
        for (int i = 0; i < count; ++i) {
            const auto* other = dynamic_cast<const f16_device_linear*>(others[i]);
            if (other == nullptr || other->m_in != m_in || ys[i + 1] == nullptr) return false;
            segments[i + 1] = {other->m_weight.as<const __half>(), static_cast<__half*>(ys[i + 1]), other->m_out};
            if (!f16_gemv_fusable(segments[i + 1].w, in.residual, rows, m_in)) return false;
        }
        const f16_gemv_norm norm{static_cast<const __half*>(in.norm_weight), in.eps};
        launch_f16_gemv_group(segments, count + 1, static_cast<const __half*>(in.residual), rows, m_in,
                              launch_options{stream, m_context.pdl_enabled()}, variant, &norm);
        return true;
    }

    bool forward_swiglu_normed(device_linear& up, const normed_input& in, std::int64_t rows, void* act,
                               CUstream_st* stream) override {
        const auto* other = dynamic_cast<const f16_device_linear*>(&up);
        if (other == nullptr || other->m_in != m_in || other->m_out != m_out || act == nullptr) return false;
        const f16_gemv_variant variant = default_f16_gemv_variant();
        if (!f16_gemv_norm_foldable(m_weight.get(), in.residual, in.norm_weight, rows, m_in, variant) ||
            !f16_gemv_fusable(other->m_weight.get(), in.residual, rows, m_in))
            return false;
        const f16_gemv_norm norm{static_cast<const __half*>(in.norm_weight), in.eps};
        launch_f16_gemv_swiglu(m_weight.as<const __half>(), other->m_weight.as<const __half>(),
                               static_cast<const __half*>(in.residual), static_cast<__half*>(act), rows, m_out, m_in,
                               launch_options{stream, m_context.pdl_enabled()}, variant, &norm);
        return true;
    }

    bool forward_normed(const normed_input& in, std::int64_t rows, void* y, CUstream_st* stream) override {
        const f16_gemv_variant variant = default_f16_gemv_variant();
        if (y == nullptr || !f16_gemv_norm_foldable(m_weight.get(), in.residual, in.norm_weight, rows, m_in, variant))
            return false;
        const f16_gemv_segment one{m_weight.as<const __half>(), static_cast<__half*>(y), m_out};
        const f16_gemv_norm norm{static_cast<const __half*>(in.norm_weight), in.eps};
        launch_f16_gemv_group(&one, 1, static_cast<const __half*>(in.residual), rows, m_in,
                              launch_options{stream, m_context.pdl_enabled()}, variant, &norm);
        return true;
    }

    bool forward_residual(const void* x, std::int64_t rows, void* residual, CUstream_st* stream) override {
        if (residual == nullptr || !f16_gemv_fusable(m_weight.get(), x, rows, m_in)) return false;
        launch_f16_gemv_residual(m_weight.as<const __half>(), static_cast<const __half*>(x),
                                 static_cast<__half*>(residual), rows, m_out, m_in,
                                 launch_options{stream, m_context.pdl_enabled()}, default_f16_gemv_variant());
        return true;
    }

private:
    device_context& m_context;
    device_buffer m_weight;
    std::int64_t m_in, m_out;
};

}  // namespace

std::unique_ptr<device_linear> load_f16_device_linear(const linear_request& request, device_context& context) {
    const std::array<std::int64_t, 2> shape{request.out_features, request.in_features};
    device_buffer weight = upload_f16_tensor(context, request.source, request.prefix + ".weight", shape);
    return std::make_unique<f16_device_linear>(context, std::move(weight), request.in_features, request.out_features);
}

}  // namespace qbench
