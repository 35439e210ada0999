// The GPTQ linear on the GPU: AutoGPTQ tensors uploaded and rearranged into the device layout at load; fused
// dequantize-and-multiply up to the batch threshold, reconstruct-to-fp16 + cuBLAS above it (exllama's strategy).
#include "backends/gptq/gptq_artifact.hpp"
#include "backends/gptq/gptq_chain.cuh"
#include "backends/gptq/gptq_device_layout.hpp"
#include "backends/gptq/gptq_format.hpp"
#include "backends/gptq/gptq_gemm_a.cuh"
#include "backends/gptq/gptq_gemm.cuh"
#include "backends/gptq/gptq_gemm_mma.cuh"
#include "backends/gptq/gptq_launch_plan.cuh"
#include "backends/gptq/gptq_stream_load.cuh"
#include "backends/gptq/gptq_linear.hpp"

#include "cuda/cuda_check.cuh"
#include "cuda/decode_stack.hpp"
#include "cuda/device_context.cuh"
#include "cuda/fused_linear.hpp"
#include "cuda/rms_norm.cuh"

#include "qbench/common/errors.hpp"
#include "qbench/io/tensor_source.hpp"

#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <tuple>
#include <mutex>

namespace qbench::gptq {

namespace {

constexpr int k_max_splits = 8;

/// Scratch shared by the GPTQ linears of one device context: the reconstructed fp16 weight, the staged
/// (permuted/padded) activations and the split-K partial sums. Each is used only inside one forward call, so the
/// linears that run on one stream (in stream order) share one set, as exllama's temp_dq; the executor runs some
/// linears on side streams in parallel, so every stream gets its own set. Loads record the largest sizes; a stream's
/// set is allocated at its first forward (the context's own stream at load time) — an eager forward, since the
/// executor runs one eager step before it captures a graph; allocating inside a capture would fail, so that is
/// reported as an error instead.
class shared_scratch {
public:
    struct buffers {
        device_buffer recons, stage, partials;
    };

    explicit shared_scratch(device_context& context) : m_context(context) {}

    static std::shared_ptr<shared_scratch> for_context(device_context& context) {
        static std::mutex mutex;
        static std::map<const device_context*, std::weak_ptr<shared_scratch>> registry;
        std::lock_guard lock(mutex);
        auto& slot = registry[&context];
        auto s = slot.lock();
        if (!s) {
            s = std::make_shared<shared_scratch>(context);
            slot = s;
        }
        return s;
    }

    /// At load: the sizes one linear needs; the context's stream gets its set (without the reconstruct buffer,
    /// which only batches above the threshold need) right away.
    void reserve(std::uint64_t recons_bytes, std::uint64_t stage_bytes, std::uint64_t partial_bytes) {
        std::lock_guard lock(m_mutex);
        m_recons = std::max(m_recons, recons_bytes);
        m_stage = std::max(m_stage, stage_bytes);
        m_partials = std::max(m_partials, partial_bytes);
        buffers& b = m_sets[m_context.stream()];
        grow(b.stage, m_stage, "gptq scratch: staged activations", nullptr);
        grow(b.partials, m_partials, "gptq scratch: split-K partial sums", nullptr);
    }

    /// At a forward: the set of `stream`, grown to the recorded sizes if needed.
    const buffers& get(cudaStream_t stream, bool with_recons) {
        std::lock_guard lock(m_mutex);
        buffers& b = m_sets[stream];
        grow(b.stage, m_stage, "gptq scratch: staged activations", stream);
        grow(b.partials, m_partials, "gptq scratch: split-K partial sums", stream);
        if (with_recons) grow(b.recons, m_recons, "gptq scratch: reconstructed fp16 weight", stream);
        return b;
    }

private:
    void grow(device_buffer& b, std::uint64_t bytes, const char* what, cudaStream_t stream) {
        if (bytes <= b.size()) return;
        if (stream != nullptr) {
            cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
            QB_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
            if (status != cudaStreamCaptureStatusNone)
                throw cuda_error(std::string(what) + ": first used on a stream inside a graph capture; run one eager "
                                                     "forward on that stream before capturing");
        }
        b.reset();
        b = m_context.allocate(bytes, what);
    }
    device_context& m_context;
    std::mutex m_mutex;
    std::uint64_t m_recons = 0, m_stage = 0, m_partials = 0;
    std::map<cudaStream_t, buffers> m_sets;
};

template <class T>
device_buffer upload_vector(device_context& context, const std::vector<T>& v, const char* what) {
    device_buffer b = context.allocate(std::max<std::uint64_t>(v.size() * sizeof(T), 16), what);
    if (!v.empty()) context.upload(b.get(), v.data(), v.size() * sizeof(T));
    return b;
}

class gptq_device_linear final : public device_linear, public fused_linear, public decode_stack_provider {
public:
    gptq_device_linear(device_context& context, const packed_linear& p, const void* qweight_host,
                       std::int64_t recons_threshold)
        : m_context(context) {
        const std::int64_t K = p.in_features, N = p.out_features;
        const std::int64_t G = static_cast<std::int64_t>(p.scales.size()) / N;
        m_plan = plan_layout(K, N, p.bits, G, p.g_idx);
        m_group_size = p.group_size;
        m_format = gptq_format_name(p.bits, p.group_size, !m_plan.sequential);

        m_version = chosen_kernel(m_plan);
        m_bypass_l1 = weight_loads_bypass_l1();
        m_x_copy = chosen_x_copy();
        m_pairing = a_pairing_from_env();
        m_l2_prefetch_bytes = a_l2_prefetch_from_env();
        m_norm_probe = a_norm_probe_from_env();
        m_norm_scaled = a_norm_scaled_from_env();
        m_mma = m_version != kernel_version::v1;
        m_variant = chosen_mma_variant();
        // qweight: AutoGPTQ's layout uploaded as is, rearranged on the GPU (exllama's make_sequential + our shuffle).
        const std::uint64_t src_bytes = static_cast<std::uint64_t>(qweight_rows(K, p.bits) * N) * 4;
        device_buffer src = context.allocate(src_bytes, "gptq qweight (AutoGPTQ layout, load only)");
        context.upload(src.get(), qweight_host, src_bytes);
        if (!m_plan.sequential) m_row_of = upload_vector(context, m_plan.row_of, "gptq row permutation");
        // v1/v2 read the group of each slab (v2 of whole k-blocks: padded to kblocks * 4 slabs with the last group, x is
        // zero there); v3 keeps a record per k-block with its weights instead.
        if (m_version != kernel_version::v3) {
            std::vector<std::int32_t> slab_group = m_plan.slab_group;
            slab_group.resize(static_cast<std::size_t>(m_plan.kblocks * k_block_slabs), slab_group.empty() ? 0 : slab_group.back());
            m_slab_group = upload_vector(context, slab_group, "gptq slab groups");
        }
        m_block_path = m_plan.mma_block_path();
        if (m_version == kernel_version::v3) {
            m_qweight = context.allocate(a_qweight_words(m_plan) * 4, "gptq qweight (v3 layout)");
            launch_repack_a(static_cast<int>(p.bits), src.as<const std::int32_t>(), row_of(), K, N,
                            static_cast<int>(m_plan.kblocks), m_qweight.as<std::uint32_t>(), launch_options{context.stream(), false});
            m_meta = upload_vector(context, a_meta(m_plan, p.scales, p.qzeros), "gptq scales and zeros (v3 layout)");
        } else if (m_mma) {
            m_qweight = context.allocate(m_plan.mma_qweight_words() * 4, "gptq qweight (mma layout)");
            launch_repack_mma(static_cast<int>(p.bits), src.as<const std::int32_t>(), row_of(), K, N,
                              static_cast<int>(m_plan.kblocks), static_cast<int>(m_plan.ntiles),
                              m_qweight.as<std::uint32_t>(), launch_options{context.stream(), false});
            const auto meta = mma_meta(m_plan, p.scales, p.qzeros);
            m_meta = upload_vector(context, meta, "gptq scales and zeros (mma layout, per group)");
            if (m_plan.mma_block_path())
                m_unit_meta = upload_vector(context, mma_unit_meta(m_plan, meta), "gptq scales and zeros (mma layout, per unit)");
        } else {
            m_qweight = context.allocate(m_plan.qweight_words() * 4, "gptq qweight (device layout)");
            launch_repack(static_cast<int>(p.bits), src.as<const std::int32_t>(), row_of(), K, N,
                          static_cast<int>(m_plan.slabs), static_cast<int>(m_plan.tiles), m_qweight.as<std::uint32_t>(),
                          launch_options{context.stream(), false});
            m_scales = upload_vector(context, tile_scales(m_plan, p.scales), "gptq scales");
            m_zeros = upload_vector(context, tile_zeros(m_plan, p.qzeros), "gptq zeros");
        }
        if (m_version != kernel_version::v3) {  // v1/v2's reconstruct reads the group of each row; v1 splits K
            std::vector<std::int32_t> row_group(static_cast<std::size_t>(K));
            for (std::int64_t r = 0; r < K; ++r)
                row_group[static_cast<std::size_t>(r)] = p.g_idx[static_cast<std::size_t>(m_plan.row_of[static_cast<std::size_t>(r)])];
            m_row_group = upload_vector(context, row_group, "gptq row groups");
        }
        if (m_version == kernel_version::v1) {
            m_counters = context.allocate(static_cast<std::uint64_t>(m_plan.tiles) * sizeof(unsigned), "gptq split-K counters");
            QB_CUDA_CHECK(cudaMemsetAsync(m_counters.get(), 0, m_counters.size(), context.stream()));
        }
        if (m_version == kernel_version::v3) {  // forward_residual_normed's arrival counter (its last CTA re-arms it)
            m_counters = context.allocate(sizeof(unsigned), "gptq v3 arrival counter");
            QB_CUDA_CHECK(cudaMemsetAsync(m_counters.get(), 0, m_counters.size(), context.stream()));
        }
        QB_CUDA_CHECK(cudaStreamSynchronize(context.stream()));  // the repack read `src`, freed on return

        m_fused_rows = m_plan.fused_ok ? std::max<std::int64_t>(0, recons_threshold) : 0;
        if (m_version == kernel_version::v3)
            m_a_rows = a_rows_per_launch(static_cast<int>(m_plan.kblocks), a_tiles_guess(context, static_cast<int>(a_mtiles(m_plan))));
        for (int r = 1; r <= k_fused_max_rows; ++r)
            m_splits[static_cast<std::size_t>(r)] =
                m_version == kernel_version::v3 ? a_ctas(context, static_cast<int>(p.bits), m_bypass_l1, static_cast<int>(a_mtiles(m_plan)),
                                                         std::min(r, m_a_rows), static_cast<int>(m_plan.kblocks))
                : m_mma ? mma_ctas(context, static_cast<int>(p.bits), m_block_path, m_variant, static_cast<int>(m_plan.ntiles), r)
                      : choose_splits(static_cast<int>(m_plan.tiles), static_cast<int>(m_plan.slabs),
                                      resident_ctas(context, static_cast<int>(p.bits), r), k_max_splits);
        m_scratch = shared_scratch::for_context(context);
        const std::uint64_t padded_k = static_cast<std::uint64_t>(padded_in());
        const std::uint64_t stage_rows = static_cast<std::uint64_t>(std::max<std::int64_t>(1, m_fused_rows));
        std::uint64_t partial_bytes = 16;
        for (int r = 1; r <= k_fused_max_rows; ++r)
            if (!m_mma && m_splits[static_cast<std::size_t>(r)] > 1)
                partial_bytes = std::max<std::uint64_t>(
                    partial_bytes, static_cast<std::uint64_t>(m_splits[static_cast<std::size_t>(r)] * r * m_plan.tiles * 32) * 4);
        // Staging is also the fallback for an x that is not 16-byte aligned, so every layer reserves it.
        m_scratch->reserve(static_cast<std::uint64_t>(K * N) * 2, stage_rows * padded_k * 2, partial_bytes);
    }

    std::int64_t in_features() const override { return m_plan.in_features; }
    std::int64_t out_features() const override { return m_plan.out_features; }
    std::uint64_t weight_bytes() const override {
        if (m_version == kernel_version::v3) return a_device_bytes(m_plan);
        return m_mma ? m_plan.mma_device_bytes() : m_plan.device_bytes();
    }
    std::string format_name() const override { return m_format; }
    std::string kernel_path(std::int64_t rows) const override {
        if (rows <= m_fused_rows)
            return std::string(m_version == kernel_version::v3 ? "gptq-fused-v3-" : m_mma ? "gptq-fused-mma-" : "gptq-fused-") +
                   std::to_string(m_plan.bits) + "b" + (m_plan.sequential ? "" : "-perm") + (pairs_at(rows) ? "-paired" : "") +
                   l2_prefetch_suffix();
        return "recons+cublas";
    }
    /// A v3 layer whose L2 prefetch (QBENCH_GPTQ_L2PRE) is not the default says so: "-l2pre<KB per warp>".
    std::string l2_prefetch_suffix() const {
        if (m_version != kernel_version::v3 || m_l2_prefetch_bytes == 0) return "";
        return "-l2pre" + std::to_string(m_l2_prefetch_bytes / 1024);
    }
    /// Whether this layer's v3 launches of `rows` rows pair their CTAs (pairs_for with the CTAs of a single forward;
    /// fused launches have at least as many).
    bool pairs_at(std::int64_t rows) const {
        if (m_version != kernel_version::v3 || rows < 1 || rows > m_fused_rows) return false;
        const int rr = static_cast<int>(std::min<std::int64_t>(rows, m_a_rows));
        return pairs_for(rr, m_splits[static_cast<std::size_t>(rr)]);
    }

    void forward(const void* x_ptr, std::int64_t rows, void* y_ptr, CUstream_st* stream) override {
        if (rows <= 0) return;
        const auto* x = static_cast<const __half*>(x_ptr);
        auto* y = static_cast<__half*>(y_ptr);
        const std::int64_t K = m_plan.in_features, N = m_plan.out_features;
        const launch_options lo{stream, m_context.pdl_enabled()};
        const auto& scratch = m_scratch->get(stream, rows > m_fused_rows);
        if (rows <= m_fused_rows) {
            std::int64_t ldx = 0;
            const __half* xin = kernel_input(x, rows, ldx, lo);
            if (m_version == kernel_version::v3) {
                for (std::int64_t r0 = 0; r0 < rows; r0 += m_a_rows) {
                    const int rr = static_cast<int>(std::min<std::int64_t>(m_a_rows, rows - r0));
                    a_args a = a_common(xin + r0 * ldx, ldx, rr);
                    a.m[0] = a_member_of(y + r0 * N, m_splits[static_cast<std::size_t>(rr)]);
                    choose_pairing(a_mode::group, a);
                    launch_a_gemm(static_cast<int>(m_plan.bits), m_bypass_l1, a_mode::group, a, lo);
                }
                return;
            }
            if (m_mma) {
                for (std::int64_t r0 = 0; r0 < rows; r0 += k_mma_max_rows) {
                    const int rr = static_cast<int>(std::min<std::int64_t>(k_mma_max_rows, rows - r0));
                    mma_args a;
                    a.qweight = m_qweight.as<const std::uint32_t>();
                    a.meta = m_meta.as<const std::uint32_t>();
                    a.unit_meta = m_unit_meta.as<const std::uint32_t>();
                    a.slab_group = m_slab_group.as<const std::int32_t>();
                    a.x = xin + r0 * ldx;
                    a.ldx = ldx;
                    a.y = y + r0 * N;
                    a.n = static_cast<int>(N);
                    a.rows = rr;
                    a.slabs = static_cast<int>(m_plan.slabs);
                    a.kblocks = static_cast<int>(m_plan.kblocks);
                    a.ntiles = static_cast<int>(m_plan.ntiles);
                    a.groups = static_cast<int>(m_plan.groups);
                    a.group_shift = m_plan.group_shift;
                    mma_launcher_for(static_cast<int>(m_plan.bits), m_block_path, m_variant)(a, m_splits[static_cast<std::size_t>(rr)], lo);
                }
                return;
            }
            for (std::int64_t r0 = 0; r0 < rows; r0 += k_fused_max_rows) {
                const int rr = static_cast<int>(std::min<std::int64_t>(k_fused_max_rows, rows - r0));
                fused_args a;
                a.qweight = m_qweight.as<const std::uint32_t>();
                a.scales = m_scales.as<const __half>();
                a.zeros = m_zeros.as<const std::uint8_t>();
                a.slab_group = m_slab_group.as<const std::int32_t>();
                a.x = xin + r0 * ldx;
                a.ldx = ldx;
                a.y = y + r0 * N;
                a.partials = scratch.partials.as<float>();
                a.counters = m_counters.as<unsigned>();
                a.n = static_cast<int>(N);
                a.slabs = static_cast<int>(m_plan.slabs);
                a.groups = static_cast<int>(m_plan.groups);
                a.tiles = static_cast<int>(m_plan.tiles);
                a.splits = m_splits[static_cast<std::size_t>(rr)];
                fused_launcher_for(static_cast<int>(m_plan.bits), rr)(a, dim3(static_cast<unsigned>(a.tiles), static_cast<unsigned>(a.splits)), lo);
            }
            return;
        }
        if (m_version == kernel_version::v3)
            launch_reconstruct_a(static_cast<int>(m_plan.bits), m_qweight.as<const std::uint32_t>(), m_meta.as<const std::uint32_t>(),
                                 row_of(), K, N, static_cast<int>(m_plan.kblocks), scratch.recons.as<__half>(), lo);
        else if (m_mma)
            launch_reconstruct_mma(static_cast<int>(m_plan.bits), m_qweight.as<const std::uint32_t>(), m_meta.as<const std::uint32_t>(),
                                   m_row_group.as<const std::int32_t>(), row_of(), K, N, static_cast<int>(m_plan.kblocks),
                                   static_cast<int>(m_plan.ntiles), static_cast<int>(m_plan.groups), scratch.recons.as<__half>(), lo);
        else
            launch_reconstruct(static_cast<int>(m_plan.bits), m_qweight.as<const std::uint32_t>(), m_scales.as<const __half>(),
                               m_zeros.as<const std::uint8_t>(), m_row_group.as<const std::int32_t>(), row_of(), K, N,
                               static_cast<int>(m_plan.slabs), static_cast<int>(m_plan.groups),
                               static_cast<int>(m_plan.tiles), scratch.recons.as<__half>(), lo);
        // Row-major y[rows, N] = x[rows, K] · W^T is column-major y^T[N, rows] = (W^T as column-major N x K) · x^T.
        const float alpha = 1.0f, beta = 0.0f;
        QB_CUBLAS_CHECK(cublasGemmEx(m_context.cublas_on(stream), CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(N),
                                     static_cast<int>(rows), static_cast<int>(K), &alpha, scratch.recons.as<const __half>(), CUDA_R_16F,
                                     static_cast<int>(N), x, CUDA_R_16F, static_cast<int>(K), &beta, y, CUDA_R_16F,
                                     static_cast<int>(N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }

    // q, k and v (any linears of this input) in one launch; outputs equal the separate forwards.
    bool forward_group(device_linear* const* others, int count, const void* x, std::int64_t rows, void* const* ys,
                       CUstream_st* stream) override {
        if (!gptq_fusion_enabled(m_version == kernel_version::v3, m_plan.bits)) return false;
        const gptq_device_linear* members[k_mma_max_segments] = {};
        __half* outs[k_mma_max_segments] = {};
        if (!group_members(others, count, ys, members, outs)) return false;
        if (m_version == kernel_version::v3) return run_fused_a(a_mode::group, members, count + 1, x, rows, outs, stream);
        return run_fused(mma_fusion::group, members, count + 1, x, rows, outs, stream);
    }

    // gate (this) and up in one launch, act = fp16(silu(fp16 g) * fp16 u) formed in the epilogue.
    bool forward_swiglu(device_linear& up, const void* x, std::int64_t rows, void* act, CUstream_st* stream) override {
        if (!gptq_fusion_enabled(m_version == kernel_version::v3, m_plan.bits)) return false;
        const gptq_device_linear* members[2] = {this, swiglu_partner(up, act)};
        if (members[1] == nullptr) return false;
        __half* outs[2] = {static_cast<__half*>(act), nullptr};
        if (m_version == kernel_version::v3) return run_fused_a(a_mode::swiglu, members, 2, x, rows, outs, stream);
        return run_fused(mma_fusion::swiglu, members, 2, x, rows, outs, stream);
    }

    // ---- RMSNorm folded in (v3 only): the v3 kernels stage the whole activation rows in shared memory anyway, so the
    // norm costs them one reduction, not a re-read. The seventh session's prologue measured 1% / 5% slower at beams
    // 1 / 4 than the two RMSNorm kernels it replaces (H100, PERF_NOTES.md): its reduction, four barriers and the
    // norm-weight round trip after the PDL wait sat before every CTA's first product. The eighth session's takes two
    // barriers and requests the weights before the wait (gptq_a_norm_staging.cuh, stage_normed_x), and was still slower
    // (eighth session, H100: bench 1.802 / 1.908 / 2.171 ms at beams 1 / 2 / 4 against 1.715 / 1.795 / 2.002 with
    // the norm kernels; qbench 531.4 against 539.9 tok/s at beam 1), so the executor does not fold by default
    // (prefers_folded_norm keeps fused_linear's false); QBENCH_FP16_FOLD_NORM=1 folds.
    // The scaled form (QBENCH_GPTQ_NORM_FOLD=scaled, a_args::norm_scaled; twentieth session) stages x * w in the plain
    // copy's one pass and applies the inverse RMS to the outputs, so it costs a launch about what the plain staging
    // does; it is not bit-identical to the RMSNorm kernel's h (fp16 rounding), so it is asked for, never a default,
    // and a layer that takes it asks the executor to fold (prefers_folded_norm); the kernel path then says
    // "+fold-norm-scaled" (folded_norm_form).

    bool prefers_folded_norm() const override { return m_version == kernel_version::v3 && m_norm_scaled; }
    std::string folded_norm_form() const override { return prefers_folded_norm() ? "-scaled" : ""; }
    a_norm_form norm_form(bool normed) const {
        return !normed ? a_norm_form::none : m_norm_scaled ? a_norm_form::scaled : a_norm_form::exact;
    }

    bool folds_norm(std::int64_t rows) const override {
        const std::int64_t K = m_plan.in_features;
        return m_version == kernel_version::v3 && !m_bypass_l1 && m_plan.sequential && K % k_block_rows == 0 &&
               K <= k_a_max_norm_k && rows >= 1 && rows <= m_fused_rows && gptq_fusion_enabled(true, m_plan.bits);
    }

    bool forward_group_normed(device_linear* const* others, int count, const normed_input& in, std::int64_t rows,
                              void* const* ys, CUstream_st* stream) override {
        if (!folds_norm(rows) || !normed_input_ok(in)) return false;
        const gptq_device_linear* members[k_mma_max_segments] = {};
        __half* outs[k_mma_max_segments] = {};
        if (!group_members(others, count, ys, members, outs)) return false;
        return run_fused_a(a_mode::group, members, count + 1, in.residual, rows, outs, stream, &in);
    }

    bool forward_swiglu_normed(device_linear& up, const normed_input& in, std::int64_t rows, void* act,
                               CUstream_st* stream) override {
        if (!folds_norm(rows) || !normed_input_ok(in)) return false;
        const gptq_device_linear* members[2] = {this, swiglu_partner(up, act)};
        if (members[1] == nullptr) return false;
        __half* outs[2] = {static_cast<__half*>(act), nullptr};
        return run_fused_a(a_mode::swiglu, members, 2, in.residual, rows, outs, stream, &in);
    }

    bool forward_residual(const void* x, std::int64_t rows, void* residual, CUstream_st* stream) override {
        if (m_version != kernel_version::v3 || residual == nullptr || rows < 1 || rows > m_fused_rows) return false;
        const gptq_device_linear* members[1] = {this};
        __half* outs[1] = {static_cast<__half*>(residual)};
        return run_fused_a(a_mode::group, members, 1, x, rows, outs, stream, nullptr, true);
    }

    bool norms_in_epilogue(std::int64_t rows) const override {
        return m_version == kernel_version::v3 && rows >= 1 && rows <= m_fused_rows && a_norms_rows_of(m_plan.out_features);
    }

    bool forward_residual_normed(const void* x, std::int64_t rows, void* residual, const normed_output& out,
                                 CUstream_st* stream) override {
        auto aligned = [](const void* p) { return p != nullptr && reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
        if (!norms_in_epilogue(rows) || !aligned(residual) || !aligned(out.h) || !aligned(out.norm_weight)) return false;
        const gptq_device_linear* members[1] = {this};
        __half* outs[1] = {static_cast<__half*>(residual)};
        return run_fused_a(a_mode::group, members, 1, x, rows, outs, stream, nullptr, true, &out);
    }

private:
    /// Whether `o` can share a fused launch with this linear: the same kernel (v2 at the default variant, or v3 with
    /// the same weight load policy), the same K, width and row order (g_idx), so the kernel reads one x; v2 also
    /// needs the same group size and groups (one slab-group table), v3 keeps each member's scales with its weights.
    bool fusable_with(const gptq_device_linear& o) const {
        if (&o.m_context != &m_context || o.m_version != m_version) return false;
        if (o.m_plan.in_features != m_plan.in_features || o.m_plan.bits != m_plan.bits || o.m_plan.kblocks != m_plan.kblocks ||
            o.m_plan.sequential != m_plan.sequential)
            return false;
        if (m_version == kernel_version::v3) {
            if (o.m_bypass_l1 != m_bypass_l1) return false;
        } else {
            if (m_version != kernel_version::v2 || m_variant != mma_variant::occ2 || o.m_variant != mma_variant::occ2) return false;
            if (o.m_group_size != m_group_size || o.m_plan.groups != m_plan.groups || o.m_block_path != m_block_path ||
                o.m_plan.group_shift != m_plan.group_shift)
                return false;
            if (&o != this && (o.m_plan.slab_group != m_plan.slab_group || o.m_plan.block_group != m_plan.block_group)) return false;
        }
        return &o == this || m_plan.sequential || o.m_plan.row_of == m_plan.row_of;
    }

    /// forward_group's members (this, then `others`) and outputs; false where one cannot share the launch.
    bool group_members(device_linear* const* others, int count, void* const* ys, const gptq_device_linear** members,
                       __half** outs) const {
        if (count < 0 || count + 1 > k_mma_max_segments || ys == nullptr || (count > 0 && others == nullptr)) return false;
        members[0] = this;
        for (int i = 0; i < count; ++i) {
            members[i + 1] = dynamic_cast<const gptq_device_linear*>(others[i]);
            if (members[i + 1] == nullptr || !fusable_with(*members[i + 1])) return false;
        }
        for (int i = 0; i <= count; ++i) {
            outs[i] = static_cast<__half*>(ys[i]);
            if (outs[i] == nullptr) return false;
        }
        return true;
    }
    /// forward_swiglu's up projection, or nullptr where it cannot share the launch.
    const gptq_device_linear* swiglu_partner(device_linear& up, const void* act) const {
        const auto* other = dynamic_cast<const gptq_device_linear*>(&up);
        if (other == nullptr || act == nullptr || !fusable_with(*other) || other->m_plan.out_features != m_plan.out_features)
            return nullptr;
        return other;
    }
    /// A normed input the folded kernels take: launch_rms_norm's fast path for this K (aligned, whole chunks).
    bool normed_input_ok(const normed_input& in) const {
        return in.residual != nullptr && in.norm_weight != nullptr &&
               rms_norm_fast_path(in.residual, nullptr, in.norm_weight, nullptr, m_plan.in_features);
    }

    /// The v3 launch arguments every member shares.
    a_args a_common(const __half* x, std::int64_t ldx, int rows) const {
        a_args a;
        a.x = x;
        a.ldx = ldx;
        a.rows = rows;
        a.kblocks = static_cast<int>(m_plan.kblocks);
        a.x_copy = m_x_copy;
        a.l2_prefetch_bytes = m_l2_prefetch_bytes;
        return a;
    }
    /// Whether a launch of `rows` rows over `ctas` CTAs pairs them (a_args::paired): where the layer's policy says so;
    /// unless forced (`always`), only where the launch has more CTAs than the GPU has SMs (fewer would leave SMs idle
    /// once paired).
    bool pairs_for(int rows, int ctas) const {
        return m_pairing == a_pairing::always || (a_pairs(m_pairing, static_cast<int>(m_plan.bits), rows) &&
                                                  ctas > m_context.properties().multiProcessorCount);
    }
    void choose_pairing(a_mode mode, a_args& a) const { a.paired = pairs_for(a.rows, a_grid(mode, a)); }
    /// This linear as a member of a v3 launch writing y over `ctas` CTAs.
    a_member a_member_of(__half* y, int ctas) const {
        a_member m;
        m.qweight = m_qweight.as<const std::uint32_t>();
        m.meta = m_meta.as<const std::uint32_t>();
        m.y = y;
        m.n = static_cast<int>(m_plan.out_features);
        m.mtiles = static_cast<int>(a_mtiles(m_plan));
        m.ctas = ctas;
        return m;
    }

    /// x as the fused kernels read it: as given, or staged into this stream's scratch (act-order gathers x into
    /// sorted-row order, a ragged K is zero-padded to whole slabs or k-blocks, an unaligned x is copied); the members
    /// of a fused launch share the row order, so one staged copy serves them all.
    const __half* kernel_input(const __half* x, std::int64_t rows, std::int64_t& ldx, const launch_options& lo) {
        const std::int64_t K = m_plan.in_features;
        ldx = K;
        const bool aligned = (reinterpret_cast<std::uintptr_t>(x) % 16) == 0;
        if (m_plan.sequential && K % (m_mma ? k_block_rows : k_slab_rows) == 0 && aligned) return x;
        const auto& scratch = m_scratch->get(lo.stream, false);
        ldx = padded_in();
        launch_stage_x(x, K, rows, row_of(), K, ldx, scratch.stage.as<__half>(), lo);
        return scratch.stage.as<const __half>();
    }

    /// One v3 launch per chunk of rows (members already checked with fusable_with); false, enqueuing nothing, where
    /// the single forwards would not run the v3 kernel (rows above the fused threshold).
    /// `norm`: x_ptr is the residual stream and the kernel forms rms_norm(x) * weight itself (folds_norm checked);
    /// `residual_add`: outs[0] is the residual stream, updated in place (forward_residual); `out_norm`: and its RMSNorm
    /// written by the launch's last CTA (forward_residual_normed; those launches are never paired).
    bool run_fused_a(a_mode mode, const gptq_device_linear* const* members, int count, const void* x_ptr,
                     std::int64_t rows, __half* const* outs, CUstream_st* stream, const normed_input* norm = nullptr,
                     bool residual_add = false, const normed_output* out_norm = nullptr) {
        if (rows <= 0 || x_ptr == nullptr || count < 1 || count > k_a_max_members) return false;
        for (int i = 0; i < count; ++i)
            if (rows > members[i]->m_fused_rows) return false;
        const int bits = static_cast<int>(m_plan.bits), kblocks = static_cast<int>(m_plan.kblocks);
        const launch_options lo{stream, m_context.pdl_enabled()};
        std::int64_t ldx = m_plan.in_features;
        const __half* xin = norm != nullptr ? static_cast<const __half*>(x_ptr)
                                            : kernel_input(static_cast<const __half*>(x_ptr), rows, ldx, lo);
        // Rows per launch: what fits beside the most mtiles a fused CTA may own.
        const int chunk = a_rows_per_launch(kblocks, k_a_max_tiles);
        // One wave at the occupancy of the largest share (the chunk's rows fit it beside k_a_max_tiles mtiles).
        const int resident = a_resident(m_context, a_kernel_for(bits, m_bypass_l1, mode, norm_form(norm != nullptr)),
                                        a_smem_bytes(k_a_max_tiles, chunk, kblocks));
        for (std::int64_t r0 = 0; r0 < rows; r0 += chunk) {
            const int rr = static_cast<int>(std::min<std::int64_t>(chunk, rows - r0));
            a_args a = a_common(xin + r0 * ldx, ldx, rr);
            a.members = count;
            a.residual_add = residual_add;
            if (norm != nullptr) {
                a.norm_weight = static_cast<const __half*>(norm->norm_weight);
                a.norm_eps = norm->eps;
                a.norm_probe = m_norm_probe;  // measurement only (0 unless set)
                a.norm_scaled = m_norm_scaled;
            }
            for (int i = 0; i < count; ++i)
                a.m[i] = members[i]->a_member_of(outs[i] == nullptr ? nullptr : outs[i] + r0 * members[i]->m_plan.out_features, 0);
            if (mode == a_mode::swiglu) {
                // The pairs are the work: at most k_a_max_tiles / 2 per CTA (gate and up tiles share the partials).
                const int pairs = a.m[0].mtiles;
                int ctas = std::max(std::min(pairs, resident), (pairs + k_a_max_tiles / 2 - 1) / (k_a_max_tiles / 2));
                while (ctas < pairs && a_smem_bytes(2 * ((pairs + ctas - 1) / ctas), rr, kblocks) > k_a_max_smem) ++ctas;
                a.m[0].ctas = a.m[1].ctas = ctas;
            } else {
                a_share_ctas(resident, rr, kblocks, a);
            }
            choose_pairing(mode, a);
            if (out_norm != nullptr) {
                const std::int64_t n = m_plan.out_features;
                a.norm_out = static_cast<__half*>(out_norm->h) + r0 * n;
                a.out_norm_weight = static_cast<const __half*>(out_norm->norm_weight);
                a.out_norm_eps = out_norm->eps;
                a.arrivals = m_counters.as<unsigned>();
                a.paired = false;
            }
            launch_a_gemm(bits, m_bypass_l1, mode, a, lo);
        }
        return true;
    }

    mma_segment segment(__half* y) const {
        mma_segment s;
        s.qweight = m_qweight.as<const std::uint32_t>();
        s.meta = m_meta.as<const std::uint32_t>();
        s.unit_meta = m_unit_meta.as<const std::uint32_t>();
        s.y = y;
        s.n = static_cast<int>(m_plan.out_features);
        s.ntiles = static_cast<int>(m_plan.ntiles);
        return s;
    }

    /// One fused launch per chunk of up to 8 rows (members already checked with fusable_with); false, enqueuing
    /// nothing, where the single forwards would not run the v2 kernel (rows above the fused threshold).
    bool run_fused(mma_fusion mode, const gptq_device_linear* const* members, int count, const void* x_ptr,
                   std::int64_t rows, __half* const* outs, CUstream_st* stream) {
        if (rows <= 0 || x_ptr == nullptr) return false;
        for (int i = 0; i < count; ++i)
            if (rows > members[i]->m_fused_rows) return false;
        const int bits = static_cast<int>(m_plan.bits);
        const mma_fused_launcher launch = mma_fused_launcher_for(bits, m_block_path, mode);
        const void* kernel = mma_fused_kernel_for(bits, m_block_path, mode);
        if (launch == nullptr || kernel == nullptr) return false;
        long long work = 0;
        if (mode == mma_fusion::swiglu) {
            work = m_plan.ntiles;
        } else {
            for (int i = 0; i < count; ++i) work += members[i]->m_plan.ntiles;
        }
        if (work <= 0 || work > (1ll << 30)) return false;

        const launch_options lo{stream, m_context.pdl_enabled()};
        std::int64_t ldx = 0;
        const __half* xin = kernel_input(static_cast<const __half*>(x_ptr), rows, ldx, lo);
        for (std::int64_t r0 = 0; r0 < rows; r0 += k_mma_max_rows) {
            const int rr = static_cast<int>(std::min<std::int64_t>(k_mma_max_rows, rows - r0));
            mma_fused_args f;
            mma_args& a = f.common;
            a.slab_group = m_slab_group.as<const std::int32_t>();
            a.x = xin + r0 * ldx;
            a.ldx = ldx;
            a.rows = rr;
            a.slabs = static_cast<int>(m_plan.slabs);
            a.kblocks = static_cast<int>(m_plan.kblocks);
            a.ntiles = static_cast<int>(work);
            a.groups = static_cast<int>(m_plan.groups);
            a.group_shift = m_plan.group_shift;
            f.count = count;
            for (int i = 0; i < count; ++i)
                f.seg[i] = members[i]->segment(outs[i] == nullptr ? nullptr : outs[i] + r0 * members[i]->m_plan.out_features);
            launch(f, mma_fused_ctas(m_context, kernel, mode, static_cast<int>(work), rr), lo);
        }
        return true;
    }

    /// The whole layer stack as one persistent grid (decode_stack.hpp, gptq_chain.cuh): every linear of it a v3 layer
    /// of this width without act-order, over whole k-blocks.
    std::unique_ptr<decode_stack> make_decode_stack(device_context& context, const decode_stack_desc& d,
                                                    std::string& why) override {
        gptq::stack_shape shape;
        shape.bits = static_cast<int>(m_plan.bits);
        shape.hidden = d.hidden, shape.heads = d.heads, shape.kv_heads = d.kv_heads, shape.head_dim = d.head_dim;
        shape.eps = d.eps, shape.scale = d.scale, shape.max_len = d.max_len;
        shape.inv_freq = d.inv_freq, shape.pos = d.pos, shape.slot_table = d.slot_table, shape.x = d.x;
        std::vector<stack_layer> layers;
        for (const decode_stack_layer& l : d.layers) {
            chain_linear c[7];
            for (int i = 0; i < 7; ++i) {
                const auto* g = dynamic_cast<const gptq_device_linear*>(l.linear[i]);
                if (g == nullptr || g->m_version != kernel_version::v3 || !g->m_plan.sequential || g->m_plan.bits != m_plan.bits ||
                    g->m_plan.kblocks * k_block_rows != g->m_plan.in_features) {
                    why = "not every linear is a " + std::to_string(m_plan.bits) + "-bit v3 layer without act-order over whole k-blocks";
                    return nullptr;
                }
                c[i] = chain_linear{g->m_qweight.as<const std::uint32_t>(), g->m_meta.as<const std::uint32_t>(),
                                    static_cast<int>(g->m_plan.out_features), static_cast<int>(g->m_plan.kblocks)};
            }
            layers.push_back(stack_layer{c[0], c[1], c[2], c[3], c[4], c[5], c[6], l.input_norm, l.post_norm, l.k_cache, l.v_cache});
        }
        why = gptq_stack_refusal(shape, layers);
        if (!why.empty()) return nullptr;
        struct stack final : decode_stack {
            gptq_decode_stack s;
            stack(device_context& c, const stack_shape& sh, const std::vector<stack_layer>& ls) : s(c, sh, ls) {}
            void enqueue(CUstream_st* st) override { s.enqueue(st); }
        };
        try {
            return std::make_unique<stack>(context, shape, layers);
        } catch (const error& e) {  // no room for its grid or its buffers: the launched layers still run
            why = e.what();
            return nullptr;
        }
    }

    /// Row length of staged x: whole slabs (v1) or whole k-blocks (v2), zero-padded past K.
    std::int64_t padded_in() const { return m_mma ? m_plan.kblocks * k_block_rows : m_plan.slabs * k_slab_rows; }
    const std::int32_t* row_of() const { return m_plan.sequential ? nullptr : m_row_of.as<const std::int32_t>(); }

    device_context& m_context;
    std::int64_t m_fused_rows = 0;
    std::int64_t m_group_size = 0;
    layout_plan m_plan;
    std::string m_format;
    device_buffer m_qweight, m_scales, m_zeros, m_slab_group, m_row_group, m_row_of, m_counters, m_meta, m_unit_meta;
    kernel_version m_version = kernel_version::v3;
    int m_a_rows = k_a_max_rows;  ///< v3: activation rows per launch (their copy in shared memory must fit)
    bool m_bypass_l1 = false;     ///< v3: weights read past L1 (QBENCH_GPTQ_LOAD=na), decided at load
    a_x_copy m_x_copy = a_x_copy::quads;  ///< v3: how a CTA stages x (QBENCH_GPTQ_XCOPY), decided at load
    a_pairing m_pairing = a_pairing::by_width;  ///< v3: when launches pair their CTAs (QBENCH_GPTQ_PAIR), decided at load
    int m_l2_prefetch_bytes = 0;  ///< v3: L2 prefetch per warp before the PDL wait (QBENCH_GPTQ_L2PRE), decided at load
    int m_norm_probe = 0;  ///< v3 folded norm: QBENCH_GPTQ_NORM_PROBE (measurement only), read at load
    bool m_norm_scaled = false;  ///< v3 folded norm in the scaled form (QBENCH_GPTQ_NORM_FOLD=scaled), read at load
    bool m_mma = true;          ///< v2 or v3: k-blocks of 128 rows (staging pads x to whole blocks)
    bool m_block_path = false;  ///< v2 scales per k-block (every block in one group, group = kb >> group_shift)
    mma_variant m_variant = mma_variant::occ2;
    std::array<int, k_fused_max_rows + 1> m_splits{};  ///< v1: K splits per row count; v2: CTAs per row count
    std::shared_ptr<shared_scratch> m_scratch;
};

}  // namespace

std::unique_ptr<device_linear> make_gptq_device_linear(device_context& context, const packed_linear& p,
                                                       std::int64_t recons_threshold) {
    if (p.qweight.size() != static_cast<std::size_t>(qweight_rows(p.in_features, p.bits) * p.out_features))
        throw error("gptq: packed layer without its qweight");
    return std::make_unique<gptq_device_linear>(context, p, p.qweight.data(), recons_threshold);
}

std::unique_ptr<device_linear> load_gptq_device_linear(const linear_request& request, device_context& context) {
    const packed_linear p =
        read_packed_linear(request.source, request.prefix, request.in_features, request.out_features, false);
    if (p.bits != request.cell.bits)
        throw input_error(request.source.path().string(), "tensor '" + request.prefix + ".qweight'",
                          "holds " + std::to_string(p.bits) + "-bit weights but the cell asks for " +
                              std::to_string(request.cell.bits) + " bits");
    // qweight straight from the file into pinned memory, then to the GPU.
    const tensor_info& info = request.source.require(qweight_name(request.prefix));
    std::byte* staging = context.staging(info.byte_size);
    request.source.read_into(info.name, std::span<std::byte>(staging, info.byte_size));
    return std::make_unique<gptq_device_linear>(context, p, staging, request.cell.gptq.recons_threshold);
}

}  // namespace qbench::gptq
