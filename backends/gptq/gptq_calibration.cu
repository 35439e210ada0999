// The GPU calibration forward (gptq_calibration.cuh).
#include "backends/gptq/gptq_calibration.cuh"

#include "cuda/cuda_check.cuh"
#include "cuda/rms_norm.cuh"
#include "cuda/rope.cuh"
#include "cuda/swiglu.cuh"

#include "qbench/engine/reference_ops.hpp"

#include <cmath>

namespace qbench::gptq {

namespace {

/// Causal softmax of one score row in place: reads the fp32 row, writes fp16 probabilities over its first half
/// (so P has a leading dimension of 2T halves). Row i of head h is block (i, h).
__global__ void causal_softmax_kernel(float* scores, std::int64_t t_len) {
    extern __shared__ float row_values[];
    const std::int64_t i = blockIdx.x, h = blockIdx.y;
    float* row = scores + (h * t_len + i) * t_len;
    const int tid = threadIdx.x, nt = blockDim.x;
    __shared__ float red[32];
    float mx = -INFINITY;
    for (std::int64_t j = tid; j <= i; j += nt) {
        const float v = row[j];
        row_values[j] = v;
        mx = fmaxf(mx, v);
    }
    for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    if ((tid & 31) == 0) red[tid >> 5] = mx;
    __syncthreads();
    if (tid < 32) {
        float v = tid < (nt + 31) / 32 ? red[tid] : -INFINITY;
        for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
        if (tid == 0) red[0] = v;
    }
    __syncthreads();
    mx = red[0];
    __syncthreads();
    float sum = 0.0f;
    for (std::int64_t j = tid; j <= i; j += nt) {
        const float e = expf(row_values[j] - mx);
        row_values[j] = e;
        sum += e;
    }
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if ((tid & 31) == 0) red[tid >> 5] = sum;
    __syncthreads();
    if (tid < 32) {
        float v = tid < (nt + 31) / 32 ? red[tid] : 0.0f;
        for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
        if (tid == 0) red[0] = v;
    }
    __syncthreads();
    const float inv = 1.0f / red[0];
    auto* out = reinterpret_cast<__half*>(row);  // every thread has read the row above (barriers since)
    for (std::int64_t j = tid; j < t_len; j += nt) out[j] = __float2half_rn(j <= i ? row_values[j] * inv : 0.0f);
}

__global__ void residual_add_kernel(const __half* a, const __half* b, std::int64_t n, __half* out) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        out[i] = __float2half_rn(__half2float(a[i]) + __half2float(b[i]));
}

__global__ void widen_kernel(const __half* x, std::int64_t n, float* out) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        out[i] = __half2float(x[i]);
}

// Row-major h: SSYRK (column-major lower) filled the upper triangle; copy it onto the lower one.
__global__ void mirror_upper_kernel(float* h, std::int64_t k) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < k * k; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const std::int64_t r = i / k, c = i % k;
        if (r > c) h[i] = h[c * k + r];
    }
}

}  // namespace

calib_stage stage_of(linear_kind kind) {
    switch (kind) {
    case linear_kind::q_proj:
    case linear_kind::k_proj:
    case linear_kind::v_proj: return calib_stage::attn_in;
    case linear_kind::o_proj: return calib_stage::o_in;
    case linear_kind::gate_proj:
    case linear_kind::up_proj: return calib_stage::mlp_in;
    case linear_kind::down_proj: return calib_stage::down_in;
    default: throw error("gptq calibration: lm_head has no stage");
    }
}

calib_forward::calib_forward(device_context& context, const model_config& model, std::int64_t seq_len,
                             std::int64_t max_sequences)
    : m_context(context), m_model(model), m_seq_len(seq_len), m_max_sequences(max_sequences) {
    QB_CUBLAS_CHECK(cublasCreate(&m_blas));
    QB_CUBLAS_CHECK(cublasSetStream(m_blas, context.stream()));
    const std::uint64_t rows = static_cast<std::uint64_t>(seq_len * max_sequences);
    const std::uint64_t H = static_cast<std::uint64_t>(model.hidden_size), I = static_cast<std::uint64_t>(model.intermediate_size);
    const std::uint64_t qd = static_cast<std::uint64_t>(model.q_size()), kvd = static_cast<std::uint64_t>(model.kv_size());
    auto a = [&](std::uint64_t elems, const char* what) { return context.allocate(elems * 2, what); };
    m_xn = a(rows * H, "gptq calib: attn_in");
    m_q = a(rows * qd, "gptq calib: q");
    m_k = a(rows * kvd, "gptq calib: k");
    m_v = a(rows * kvd, "gptq calib: v");
    m_krot = a(rows * kvd, "gptq calib: k rotated");
    m_vrot = a(rows * kvd, "gptq calib: v copy");
    m_attn = a(rows * qd, "gptq calib: o_in");
    m_tmp = a(rows * H, "gptq calib: linear out");
    m_h2 = a(rows * H, "gptq calib: residual");
    m_xn2 = a(rows * H, "gptq calib: mlp_in");
    m_gate = a(rows * I, "gptq calib: gate");
    m_up = a(rows * I, "gptq calib: up");
    m_act = a(rows * I, "gptq calib: down_in");
    m_scores = context.allocate(static_cast<std::uint64_t>(model.num_heads) * seq_len * seq_len * 4, "gptq calib: attention scores");
    const auto inv = rope_inv_freq(model.head_dim(), model.rope_theta);
    m_inv_freq = context.allocate(inv.size() * 4, "gptq calib: rope frequencies");
    context.upload(m_inv_freq.get(), inv.data(), inv.size() * 4);
}

calib_forward::~calib_forward() {
    if (m_blas) cublasDestroy(m_blas);
}

std::int64_t calib_forward::width(calib_stage s) const {
    switch (s) {
    case calib_stage::attn_in: return m_model.hidden_size;
    case calib_stage::o_in: return m_model.q_size();
    case calib_stage::mlp_in: return m_model.hidden_size;
    case calib_stage::down_in: return m_model.intermediate_size;
    default: return m_model.hidden_size;
    }
}

const __half* calib_forward::input(calib_stage s) const {
    switch (s) {
    case calib_stage::attn_in: return m_xn.as<const __half>();
    case calib_stage::o_in: return m_attn.as<const __half>();
    case calib_stage::mlp_in: return m_xn2.as<const __half>();
    case calib_stage::down_in: return m_act.as<const __half>();
    default: throw error("gptq calibration: the output is not a stage input");
    }
}

void calib_forward::linear(const __half* x, std::int64_t rows, const __half* w, std::int64_t in, std::int64_t out, __half* y) {
    // Row-major y[rows, out] = x[rows, in] · W^T, W [out, in] row-major (as the fp16 device linear).
    const float one = 1.0f, zero = 0.0f;
    QB_CUBLAS_CHECK(cublasGemmEx(m_blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out), static_cast<int>(rows),
                                 static_cast<int>(in), &one, w, CUDA_R_16F, static_cast<int>(in), x, CUDA_R_16F,
                                 static_cast<int>(in), &zero, y, CUDA_R_16F, static_cast<int>(out), CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
}

void calib_forward::hessian_add(float* h, const __half* x, std::int64_t rows, std::int64_t k) {
    // H (k x k) += X^T X in plain fp32, as AutoGPTQ does (inp.float() @ inp.t(), TF32 off): X widened to fp32, then
    // SSYRK into one triangle (column-major lower = row-major upper), mirrored by symmetrize_hessian(). A
    // tensor-core GEMM from fp16 operands gave Vicuna-13B's late o_proj inputs a Hessian that 1.01 x the mean diagonal
    // of damping could not make positive definite, even factorized in fp64.
    const std::uint64_t n = static_cast<std::uint64_t>(rows * k);
    if (!m_x32 || m_x32.size() < n * 4) {
        m_x32.reset();
        m_x32 = m_context.allocate(n * 4, "gptq calib: fp32 inputs for the Hessian");
    }
    widen_kernel<<<static_cast<unsigned>(std::min<std::uint64_t>((n + 255) / 256, 65535)), 256, 0, m_context.stream()>>>(
        x, static_cast<std::int64_t>(n), m_x32.as<float>());
    QB_CUDA_CHECK_LAUNCH(m_context.stream());
    const float one = 1.0f;
    QB_CUBLAS_CHECK(cublasSsyrk(m_blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, static_cast<int>(k), static_cast<int>(rows),
                                &one, m_x32.as<const float>(), static_cast<int>(k), &one, h, static_cast<int>(k)));
}

void calib_forward::symmetrize_hessian(float* h, std::int64_t k) {
    const std::int64_t n = k * k;
    mirror_upper_kernel<<<static_cast<unsigned>(std::min<std::int64_t>((n + 255) / 256, 65535)), 256, 0, m_context.stream()>>>(h, k);
    QB_CUDA_CHECK_LAUNCH(m_context.stream());
}

void calib_forward::attention(std::int64_t sequences) {
    const std::int64_t T = m_seq_len, heads = m_model.num_heads, kv = m_model.num_kv_heads, d = m_model.head_dim();
    const std::int64_t group = heads / kv, qd = heads * d, kvd = kv * d;
    const launch_options lo{m_context.stream(), false};
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d))), one = 1.0f, zero = 0.0f;
    float* scores = m_scores.as<float>();
    for (std::int64_t s = 0; s < sequences; ++s) {
        __half* q = m_q.as<__half>() + s * T * qd;
        const __half* k = m_k.as<const __half>() + s * T * kvd;
        const __half* v = m_v.as<const __half>() + s * T * kvd;
        __half* krot = m_krot.as<__half>() + s * T * kvd;
        __half* vrot = m_vrot.as<__half>() + s * T * kvd;
        launch_rope_append(q, k, v, m_inv_freq.as<const float>(), T, 0, static_cast<int>(heads), static_cast<int>(kv),
                           static_cast<int>(d), krot, vrot, lo);
        // scores_h (column-major T_j x T_i) = K_kvh (op T of column-major d x T) · Q_h (column-major d x T_i);
        // query head h = j * group + o for kv head j: one strided batch over kv heads per o.
        for (std::int64_t o = 0; o < group; ++o)
            QB_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
                m_blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(T), static_cast<int>(T), static_cast<int>(d), &scale,
                krot, CUDA_R_16F, static_cast<int>(kvd), d, q + o * d, CUDA_R_16F, static_cast<int>(qd), group * d, &zero,
                scores + o * T * T, CUDA_R_32F, static_cast<int>(T), group * T * T, static_cast<int>(kv), CUBLAS_COMPUTE_32F,
                CUBLAS_GEMM_DEFAULT));
        const int threads = 256;
        causal_softmax_kernel<<<dim3(static_cast<unsigned>(T), static_cast<unsigned>(heads)), threads,
                                static_cast<std::size_t>(T) * sizeof(float), m_context.stream()>>>(scores, T);
        QB_CUDA_CHECK_LAUNCH(m_context.stream());
        // out_h (column-major d x T_i, ld heads*d) = V_kvh (column-major d x T_j) · P_h (column-major T_j x T_i, ld 2T).
        const auto* p = reinterpret_cast<const __half*>(scores);
        __half* out = m_attn.as<__half>() + s * T * qd;
        for (std::int64_t o = 0; o < group; ++o)
            QB_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
                m_blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(d), static_cast<int>(T), static_cast<int>(T), &one,
                vrot, CUDA_R_16F, static_cast<int>(kvd), d, p + o * 2 * T * T, CUDA_R_16F, static_cast<int>(2 * T),
                group * 2 * T * T, &zero, out + o * d, CUDA_R_16F, static_cast<int>(qd), group * d, static_cast<int>(kv),
                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
}

void calib_forward::run(const calib_layer_weights& w, const __half* h, std::int64_t sequences, calib_stage upto,
                        __half* out) {
    if (sequences > m_max_sequences) throw error("gptq calibration: chunk larger than the buffers");
    const std::int64_t rows = sequences * m_seq_len;
    const std::int64_t H = m_model.hidden_size, I = m_model.intermediate_size, qd = m_model.q_size(), kvd = m_model.kv_size();
    const launch_options lo{m_context.stream(), false};
    auto W = [&](linear_kind k) { return w.linear[static_cast<std::size_t>(k)]; };
    // attn_in
    launch_rms_norm(const_cast<__half*>(h), nullptr, w.input_norm, m_model.rms_norm_eps, rows, H, m_xn.as<__half>(), lo);
    if (upto == calib_stage::attn_in) return;
    // o_in
    linear(m_xn.as<const __half>(), rows, W(linear_kind::q_proj), H, qd, m_q.as<__half>());
    linear(m_xn.as<const __half>(), rows, W(linear_kind::k_proj), H, kvd, m_k.as<__half>());
    linear(m_xn.as<const __half>(), rows, W(linear_kind::v_proj), H, kvd, m_v.as<__half>());
    attention(sequences);
    if (upto == calib_stage::o_in) return;
    // mlp_in: h2 = h + o(attn); xn2 = rms_norm(h2)
    linear(m_attn.as<const __half>(), rows, W(linear_kind::o_proj), qd, H, m_tmp.as<__half>());
    QB_CUDA_CHECK(cudaMemcpyAsync(m_h2.get(), h, static_cast<std::size_t>(rows * H) * 2, cudaMemcpyDeviceToDevice, m_context.stream()));
    launch_rms_norm(m_h2.as<__half>(), m_tmp.as<const __half>(), w.post_norm, m_model.rms_norm_eps, rows, H, m_xn2.as<__half>(), lo);
    if (upto == calib_stage::mlp_in) return;
    // down_in
    linear(m_xn2.as<const __half>(), rows, W(linear_kind::gate_proj), H, I, m_gate.as<__half>());
    linear(m_xn2.as<const __half>(), rows, W(linear_kind::up_proj), H, I, m_up.as<__half>());
    launch_swiglu(m_gate.as<const __half>(), m_up.as<const __half>(), rows * I, m_act.as<__half>(), lo);
    if (upto == calib_stage::down_in) return;
    // output = h2 + down(act)
    linear(m_act.as<const __half>(), rows, W(linear_kind::down_proj), I, H, m_tmp.as<__half>());
    const std::int64_t n = rows * H;
    residual_add_kernel<<<static_cast<unsigned>(std::min<std::int64_t>((n + 255) / 256, 65535)), 256, 0, m_context.stream()>>>(
        m_h2.as<const __half>(), m_tmp.as<const __half>(), n, out);
    QB_CUDA_CHECK_LAUNCH(m_context.stream());
}

}  // namespace qbench::gptq
