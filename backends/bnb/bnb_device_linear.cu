// The bnb backend's GPU linears and their loaders: quantize-on-load (transient fp16 copy of one tensor, as
// bitsandbytes), the batch-1 fused GEMV, bitsandbytes' batch > 1 strategy (dequantize to fp16, cuBLAS), and
// LLM.int8().
#include "backends/bnb/bnb_device_linear.hpp"

#include "backends/bnb/bnb_kernels.cuh"
#include "backends/bnb/bnb_load.hpp"
#include "backends/bnb/bnb_workspace.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/device_context.cuh"
#include "cuda/fused_linear.hpp"
#include "cuda/tensor_upload.cuh"
#include "qbench/common/errors.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>

namespace qbench::bnb {

namespace {

device_buffer upload_bytes(device_context& context, const void* data, std::uint64_t bytes, const std::string& what) {
    device_buffer buffer = context.allocate(bytes, what);
    if (bytes) context.upload(buffer.get(), data, bytes);
    return buffer;
}

launch_options options(device_context& context, cudaStream_t stream) { return {stream, context.pdl_enabled()}; }

// Fused launches read x with 16-byte loads and write fp16 outputs.
bool aligned(const void* p, std::uintptr_t to) { return p != nullptr && reinterpret_cast<std::uintptr_t>(p) % to == 0; }

class device_4bit_linear final : public device_linear, public fused_linear {
public:
    device_4bit_linear(device_context& context, std::shared_ptr<workspace> ws, quant_type type, bool fused_batches)
        : m_context(context), m_ws(std::move(ws)), m_type(type), m_fused_batches(fused_batches) {}

    // Set by the loaders. nested_code stays empty when the map is the workspace's shared copy (workspace::nested_map).
    // arrivals: forward_residual_normed's counter (zeroed by the loader; the launch's last CTA re-arms it).
    device_4bit_view view;
    device_buffer packed, absmax, codes, nested_absmax, nested_code, arrivals;
    std::uint64_t bytes = 0;

    std::int64_t in_features() const override { return view.cols; }
    std::int64_t out_features() const override { return view.rows; }
    std::uint64_t weight_bytes() const override { return bytes; }
    std::string format_name() const override {
        return format_name_4bit(m_type, std::int64_t{1} << view.blocksize_log2, view.nested());
    }
    bool fused(std::int64_t rows) const {
        return gemv_4bit_supported(view, rows) && (rows == 1 || m_fused_batches);
    }
    // "bnb-gemv-4bit" is the batch-1 team kernel, "bnb-gemv-4bit-v2" the warp kernel (batches with
    // small_batch_path fused, or a K the team kernel does not take); "+dq" marks double quantization; "+fused" that a
    // q/k/v group or gate/up+SwiGLU launch of this linear ran (fused_linear: the executor asks q_proj, the group's
    // first member, after generating), so a cell's record tells the fused from the separate decode step.
    std::string kernel_path(std::int64_t rows) const override {
        const char* dq = view.nested() ? "+dq" : "";
        if (!fused(rows)) return std::string("bnb-dequant-4bit") + dq + "+cublas";
        if (rows != 1 || !team_path()) return std::string("bnb-gemv-4bit-v2") + dq;
        return std::string("bnb-gemv-4bit") + dq + (m_ran_fused.load(std::memory_order_relaxed) ? "+fused" : "");
    }

    // The dequantize + cuBLAS path writes the workspace's one fp16 weight buffer: two of them at once on different
    // streams would overwrite each other's weights (bitsandbytes runs one at a time, on one stream).
    bool concurrent_forwards(std::int64_t rows) const override { return fused(rows); }

    void forward(const void* x, std::int64_t rows, void* y, CUstream_st* stream) override {
        if (rows <= 0) return;
        const auto* xh = static_cast<const __half*>(x);
        auto* yh = static_cast<__half*>(y);
        const launch_options o = options(m_context, stream);
        if (fused(rows)) {
            // Batch 1 runs the team kernel, which requests its first weights before the PDL wait: with PDL the 7B
            // linear stack ran 1591 instead of 2014 us/token (PERF_NOTES.md, v3 run 1). The batched kernels (v2)
            // ran slower with PDL (3139 vs 2616 us), so they launch without it.
            launch_gemv_4bit(view, xh, rows, yh, rows == 1 ? o : launch_options{stream, false});
            return;
        }
        // bitsandbytes' MatMul4Bit: the whole weight dequantized to fp16, then F.linear (cuBLAS, fp32 accumulate).
        launch_dequantize_4bit(view, m_ws->dequant(), o);
        cublasHandle_t handle = m_context.cublas_on(stream);
        const float alpha = 1.0f, beta = 0.0f;
        const int n = static_cast<int>(view.rows), k = static_cast<int>(view.cols), m = static_cast<int>(rows);
        QB_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, m_ws->dequant(), CUDA_R_16F, k,
                                     xh, CUDA_R_16F, k, &beta, yh, CUDA_R_16F, n, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
    }

    // Batch 1 only, where forward() runs the team kernel: q, k, v (one x) as one team launch over their rows. The
    // outputs are bit-identical to forward() (a single linear is the team kernel's group of one).
    bool forward_group(device_linear* const* others, int count, const void* x, std::int64_t rows, void* const* ys,
                       CUstream_st* stream) override {
        if (rows != 1 || count < 0 || count + 1 > k_team_max_members || !team_path() || !aligned(x, 16) ||
            ys == nullptr || (count > 0 && others == nullptr))
            return false;
        device_4bit_view views[k_team_max_members];
        __half* outs[k_team_max_members] = {};
        views[0] = view;
        for (int i = 0; i < count; ++i) {
            const auto* other = dynamic_cast<const device_4bit_linear*>(others[i]);
            if (other == nullptr || !other->team_path()) return false;
            views[i + 1] = other->view;
        }
        for (int i = 0; i <= count; ++i) {
            if (!aligned(ys[i], alignof(__half))) return false;
            outs[i] = static_cast<__half*>(ys[i]);
        }
        if (!gemv_4bit_team_groupable(views, count + 1)) return false;
        launch_gemv_4bit_team_group(views, count + 1, static_cast<const __half*>(x), outs, options(m_context, stream));
        m_ran_fused.store(true, std::memory_order_relaxed);
        return true;
    }

    // gate (this) and up in one team launch, the SwiGLU product in its epilogue (rounded as launch_swiglu).
    bool forward_swiglu(device_linear& up, const void* x, std::int64_t rows, void* act, CUstream_st* stream) override {
        const auto* other = dynamic_cast<const device_4bit_linear*>(&up);
        if (rows != 1 || other == nullptr || !team_path() || !other->team_path() || !aligned(x, 16) ||
            !aligned(act, alignof(__half)) || other->view.rows != view.rows)
            return false;
        const device_4bit_view pair[2] = {view, other->view};
        if (!gemv_4bit_team_groupable(pair, 2)) return false;
        launch_gemv_4bit_team_swiglu(view, other->view, static_cast<const __half*>(x), static_cast<__half*>(act),
                                     options(m_context, stream));
        m_ran_fused.store(true, std::memory_order_relaxed);
        return true;
    }

    // o_proj / down_proj at batch 1: the residual add in the team kernel's epilogue (rounded as launch_rms_norm's add).
    bool forward_residual(const void* x, std::int64_t rows, void* residual, CUstream_st* stream) override {
        if (rows != 1 || !team_path() || !aligned(x, 16) || !aligned(residual, alignof(__half))) return false;
        launch_gemv_4bit_team_residual(view, static_cast<const __half*>(x), static_cast<__half*>(residual), {},
                                       options(m_context, stream));
        return true;
    }

    bool norms_in_epilogue(std::int64_t rows) const override {
        return rows == 1 && team_path() && gemv_4bit_team_norms_rows(view);
    }

    // And the next RMSNorm by the launch's last CTA (bit-identical to launch_rms_norm of the updated stream).
    bool forward_residual_normed(const void* x, std::int64_t rows, void* residual, const normed_output& out,
                                 CUstream_st* stream) override {
        if (!norms_in_epilogue(rows) || !aligned(x, 16) || !aligned(residual, 16) || !aligned(out.h, 16) ||
            !aligned(out.norm_weight, 16))
            return false;
        const residual_norm norm{static_cast<__half*>(out.h), static_cast<const __half*>(out.norm_weight), out.eps,
                                 arrivals.as<unsigned>()};
        launch_gemv_4bit_team_residual(view, static_cast<const __half*>(x), static_cast<__half*>(residual), norm,
                                       options(m_context, stream));
        return true;
    }

private:
    // Whether forward() at batch 1 runs the team kernel (default config): the precondition of bit-identical fusion.
    bool team_path() const { return fused(1) && gemv_4bit_team_supported(view); }

    device_context& m_context;
    std::shared_ptr<workspace> m_ws;
    quant_type m_type;
    bool m_fused_batches;
    std::atomic<bool> m_ran_fused{false};  // a fused call of this linear was accepted (kernel_path)
};

class device_int8_linear final : public device_linear, public fused_linear {
public:
    device_int8_linear(device_context& context, std::shared_ptr<workspace> ws, std::int64_t rows, std::int64_t cols,
                       float threshold)
        : m_context(context), m_ws(std::move(ws)), m_rows(rows), m_cols(cols), m_threshold(threshold) {}

    device_buffer cb, scb;

    std::int64_t in_features() const override { return m_cols; }
    std::int64_t out_features() const override { return m_rows; }
    std::uint64_t weight_bytes() const override { return cb.size() + scb.size(); }
    std::string format_name() const override { return format_name_int8(m_threshold); }
    bool gemv(std::int64_t rows) const { return rows <= k_gemv_int8_max_rows && gemv_int8_supported(m_cols); }
    std::string kernel_path(std::int64_t rows) const override {
        if (rows == 1 && gemv_int8_fused_supported(m_cols)) return "bnb-int8-fused-gemv";
        if (gemv(rows)) return "bnb-int8-quant+gemv";
        return m_cols % 4 == 0 ? "bnb-int8-quant+cublaslt+epilogue" : "bnb-int8-quant+plain+epilogue";
    }

    // Only the fused batch-1 GEMV uses no workspace; the other paths quantize x into (and multiply out of) the
    // workspace's shared activation buffers and product.
    bool concurrent_forwards(std::int64_t rows) const override { return rows == 1 && gemv_int8_fused_supported(m_cols); }

    void forward(const void* x, std::int64_t rows, void* y, CUstream_st* stream) override {
        if (rows <= 0) return;
        const auto* xh = static_cast<const __half*>(x);
        auto* yh = static_cast<__half*>(y);
        const launch_options o = options(m_context, stream);
        if (rows == 1 && gemv_int8_fused_supported(m_cols)) {
            // One kernel: activation quantization folded into the GEMV (bnb_gemv_team_int8.cu).
            launch_gemv_int8_fused(cb.as<std::int8_t>(), scb.as<float>(), m_rows, m_cols, xh, m_threshold, yh, o);
            return;
        }
        int8_act_buffers act = m_ws->int8_buffers(rows, m_cols, stream);
        launch_quantize_int8_activations(xh, rows, m_cols, m_threshold, act, o);
        if (gemv(rows)) {
            if (!(m_threshold > 0.0f)) act.outlier_mask = nullptr;  // no outlier columns to look for
            launch_gemv_int8(cb.as<std::int8_t>(), scb.as<float>(), m_rows, m_cols, xh, act, rows, yh, o);
            return;
        }
        std::int32_t* product = m_ws->int8_product(rows, m_rows, stream);
        if (!cublaslt_int8_gemm(m_context.cublaslt(), act.q, cb.as<std::int8_t>(), product, rows, m_rows, m_cols,
                                m_context.workspace(), m_context.workspace_bytes(), stream))
            launch_int8_matmul_plain(act.q, cb.as<std::int8_t>(), rows, m_rows, m_cols, product, {stream, false});
        launch_int8_gemm_epilogue(product, cb.as<std::int8_t>(), scb.as<float>(), m_rows, m_cols, xh, act, rows, yh,
                                  {stream, false});
    }

    // Batch 1 only: q, k, v through one fused int8 launch; the activation quantization and outlier columns are
    // computed once for the group (same x, same threshold). Bit-identical to forward() of each.
    bool forward_group(device_linear* const* others, int count, const void* x, std::int64_t rows, void* const* ys,
                       CUstream_st* stream) override {
        if (rows != 1 || count < 0 || count + 1 > k_team_max_members || !gemv_int8_fused_supported(m_cols) ||
            !aligned(x, 16) || ys == nullptr || (count > 0 && others == nullptr))
            return false;
        int8_team_weight ws[k_team_max_members];
        __half* outs[k_team_max_members] = {};
        ws[0] = team_weight();
        for (int i = 0; i < count; ++i) {
            const auto* other = dynamic_cast<const device_int8_linear*>(others[i]);
            if (other == nullptr || !same_kind(*other)) return false;
            ws[i + 1] = other->team_weight();
        }
        for (int i = 0; i <= count; ++i) {
            if (!aligned(ys[i], alignof(__half))) return false;
            outs[i] = static_cast<__half*>(ys[i]);
        }
        if (!gemv_int8_fused_groupable(ws, count + 1, m_cols)) return false;
        launch_gemv_int8_fused_group(ws, count + 1, m_cols, static_cast<const __half*>(x), m_threshold, outs,
                                     options(m_context, stream));
        return true;
    }

    bool forward_swiglu(device_linear& up, const void* x, std::int64_t rows, void* act, CUstream_st* stream) override {
        const auto* other = dynamic_cast<const device_int8_linear*>(&up);
        if (rows != 1 || other == nullptr || !same_kind(*other) || other->m_rows != m_rows ||
            !gemv_int8_fused_supported(m_cols) || !aligned(x, 16) || !aligned(act, alignof(__half)))
            return false;
        const int8_team_weight pair[2] = {team_weight(), other->team_weight()};
        if (!gemv_int8_fused_groupable(pair, 2, m_cols)) return false;
        launch_gemv_int8_fused_swiglu(pair[0], pair[1], m_cols, static_cast<const __half*>(x), m_threshold,
                                      static_cast<__half*>(act), options(m_context, stream));
        return true;
    }

private:
    int8_team_weight team_weight() const { return {cb.as<std::int8_t>(), scb.as<float>(), m_rows}; }
    // Members of one fused launch share K and the threshold bit for bit (the activation quantization is shared).
    bool same_kind(const device_int8_linear& o) const {
        std::uint32_t a = 0, b = 0;
        std::memcpy(&a, &m_threshold, sizeof(a));
        std::memcpy(&b, &o.m_threshold, sizeof(b));
        return o.m_cols == m_cols && a == b;
    }

    device_context& m_context;
    std::shared_ptr<workspace> m_ws;
    std::int64_t m_rows, m_cols;
    float m_threshold;
};

// The FP16 weight of one linear in a transient device buffer (the extra VRAM bitsandbytes needs while loading),
// read through the context's pinned staging and timed upload like every other weight.
device_buffer upload_f16_weight(const linear_request& request, device_context& context) {
    const std::array<std::int64_t, 2> shape{request.out_features, request.in_features};
    return upload_f16_tensor(context, request.source, request.prefix + ".weight", shape);
}

void fill_view_code(device_4bit_view& view, const std::array<float, 16>& code) {
    std::memcpy(view.code, code.data(), sizeof(view.code));
}

}  // namespace

std::unique_ptr<device_linear> load_4bit_device_linear(const linear_request& request, device_context& context) {
    const quant_4bit_params p = params_of(request.cell);
    auto ws = workspace::of(context);
    auto linear = std::make_unique<device_4bit_linear>(context, ws, p.type, request.cell.bnb.small_batch_path == "fused");
    device_4bit_view& v = linear->view;
    v.rows = request.out_features;
    v.cols = request.in_features;
    const std::int64_t n = v.rows * v.cols;
    const std::string& name = request.prefix;

    if (auto pre = read_prequantized_4bit(request)) {
        // A bitsandbytes checkpoint: upload its state as it is (its own quant_map and nested map).
        v.blocksize_log2 = log2_exact(pre->blocksize);
        fill_view_code(v, pre->code);
        linear->packed = upload_bytes(context, pre->packed.data(), pre->packed.size(), "bnb packed 4-bit " + name);
        if (pre->nested) {
            const nested_absmax& s = pre->nested_state;
            linear->codes = upload_bytes(context, s.codes.data(), s.codes.size(), "bnb absmax codes " + name);
            linear->nested_absmax =
                upload_bytes(context, s.absmax.data(), s.absmax.size() * sizeof(float), "bnb nested absmax " + name);
            // bitsandbytes stores the same dynamic map with every linear; compared once here (bytes), an equal map
            // uses the shared device copy, so fused groups load one code book (workspace::nested_map).
            if (std::memcmp(s.code.data(), dynamic_map_signed().data(), sizeof(s.code)) == 0)
                v.nested_code = ws->nested_map();
            else
                linear->nested_code = upload_bytes(context, s.code.data(), sizeof(s.code), "bnb nested map " + name);
            v.nested_blocksize = static_cast<int>(s.blocksize);
            v.nested_offset = s.offset;
        } else {
            linear->absmax =
                upload_bytes(context, pre->absmax.data(), pre->absmax.size() * sizeof(float), "bnb absmax " + name);
        }
    } else {
        // Quantize on the GPU as the tensor arrives: transient fp16 copy -> packed nibbles + absmax.
        v.blocksize_log2 = log2_exact(p.blocksize);
        fill_view_code(v, code_book(p.type));
        const std::int64_t blocks = (n + p.blocksize - 1) / p.blocksize;
        device_buffer f16 = upload_f16_weight(request, context);
        linear->packed = context.allocate(static_cast<std::uint64_t>((n + 1) / 2), "bnb packed 4-bit " + name);
        device_buffer absmax = context.allocate(static_cast<std::uint64_t>(blocks) * sizeof(float), "bnb absmax " + name);
        const launch_options o{context.stream(), false};
        launch_quantize_4bit(f16.as<__half>(), n, p.type, p.blocksize, linear->packed.as<std::uint8_t>(),
                             absmax.as<float>(), o);
        if (p.double_quant) {
            // Every linear quantized here uses the same map: the workspace's one device copy.
            v.nested_code = ws->nested_map();
            device_buffer offset = context.allocate(sizeof(float), "bnb nested offset " + name);
            linear->codes = context.allocate(static_cast<std::uint64_t>(blocks), "bnb absmax codes " + name);
            const std::int64_t nested_blocks = (blocks + k_nested_blocksize - 1) / k_nested_blocksize;
            linear->nested_absmax =
                context.allocate(static_cast<std::uint64_t>(nested_blocks) * sizeof(float), "bnb nested absmax " + name);
            launch_absmax_mean(absmax.as<float>(), blocks, offset.as<float>(), o);
            launch_double_quantize(absmax.as<float>(), blocks, offset.as<float>(), v.nested_code,
                                   k_nested_blocksize, linear->codes.as<std::uint8_t>(),
                                   linear->nested_absmax.as<float>(), o);
            QB_CUDA_CHECK(cudaMemcpyAsync(&v.nested_offset, offset.get(), sizeof(float), cudaMemcpyDeviceToHost,
                                          context.stream()));
            v.nested_blocksize = static_cast<int>(k_nested_blocksize);
            QB_CUDA_CHECK(cudaStreamSynchronize(context.stream()));
        } else {
            linear->absmax = std::move(absmax);
        }
        QB_CUDA_CHECK(cudaStreamSynchronize(context.stream()));  // the transient buffers are released below
    }
    v.packed = linear->packed.as<std::uint8_t>();
    v.absmax = linear->absmax ? linear->absmax.as<float>() : nullptr;
    v.absmax_codes = linear->codes ? linear->codes.as<std::uint8_t>() : nullptr;
    v.nested_absmax = linear->nested_absmax ? linear->nested_absmax.as<float>() : nullptr;
    if (linear->nested_code) v.nested_code = linear->nested_code.as<float>();
    linear->bytes = linear->packed.size() + linear->absmax.size() + linear->codes.size() + linear->nested_absmax.size();
    // forward_residual_normed's arrival counter, at zero before any launch can use it (not weight bytes).
    linear->arrivals = context.allocate(sizeof(unsigned), "bnb arrival counter " + name);
    QB_CUDA_CHECK(cudaMemsetAsync(linear->arrivals.get(), 0, sizeof(unsigned), context.stream()));
    QB_CUDA_CHECK(cudaStreamSynchronize(context.stream()));
    // The batch > 1 path needs room for this layer's fp16 weight (shared by all layers).
    ws->reserve_dequant(static_cast<std::uint64_t>(n));
    return linear;
}

std::unique_ptr<device_linear> load_int8_device_linear(const linear_request& request, device_context& context) {
    auto ws = workspace::of(context);
    const auto threshold = static_cast<float>(request.cell.bnb.int8_threshold);
    auto linear = std::make_unique<device_int8_linear>(context, ws, request.out_features, request.in_features, threshold);
    const std::int64_t n = request.out_features * request.in_features;
    const std::string& name = request.prefix;
    if (auto pre = read_prequantized_int8(request)) {
        linear->cb = upload_bytes(context, pre->cb.data(), pre->cb.size(), "bnb int8 CB " + name);
        linear->scb = upload_bytes(context, pre->scb.data(), pre->scb.size() * sizeof(float), "bnb int8 SCB " + name);
    } else {
        device_buffer f16 = upload_f16_weight(request, context);
        linear->cb = context.allocate(static_cast<std::uint64_t>(n), "bnb int8 CB " + name);
        linear->scb = context.allocate(static_cast<std::uint64_t>(request.out_features) * sizeof(float),
                                       "bnb int8 SCB " + name);
        launch_quantize_int8_rows(f16.as<__half>(), request.out_features, request.in_features,
                                  linear->cb.as<std::int8_t>(), linear->scb.as<float>(), {context.stream(), false});
        QB_CUDA_CHECK(cudaStreamSynchronize(context.stream()));
    }
    // Small-batch activation buffers now, so decode steps never allocate.
    ws->int8_buffers(k_gemv_int8_max_rows, request.in_features, nullptr);
    return linear;
}

}  // namespace qbench::bnb
