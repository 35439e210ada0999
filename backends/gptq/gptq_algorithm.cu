// GPTQ of one layer on the GPU (gptq_algorithm_cuda.cuh): the reference's steps with cuSOLVER, a column-loop
// kernel per block of 128 columns and cuBLAS SGEMM lazy updates.
#include "backends/gptq/gptq_algorithm_cuda.cuh"
#include "backends/gptq/gptq_format.hpp"
#include "backends/gptq/gptq_quant_math.hpp"

#include "cuda/cuda_check.cuh"

#include "qbench/common/errors.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#define QB_CUSOLVER_CHECK(expr) \
    QB_CHECK_GEN("cuSOLVER", expr, CUSOLVER_STATUS_SUCCESS, [](cusolverStatus_t s) { return std::to_string(static_cast<int>(s)); })

namespace qbench::gptq {

namespace {

constexpr int k_rows_per_cta = 64;   // column-loop kernel: one thread per output row
constexpr int k_block_cols = 128;    // the reference's blocksize
constexpr int k_threads = 256;

unsigned blocks_for(std::int64_t n, int threads) {
    return static_cast<unsigned>(std::min<std::int64_t>((n + threads - 1) / threads, 65535 * 8));
}

__global__ void f16_to_f32_kernel(const __half* in, std::int64_t n, float* out) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        out[i] = __half2float(in[i]);
}

/// One warp per (row, group): min and max over the group's columns [g*gs, min(K, (g+1)*gs)) -> params.
__global__ void range_params_kernel(const float* w, std::int64_t n_rows, std::int64_t k, std::int64_t gs,
                                   std::int64_t groups, int maxq, bool sym, float* scale, float* zero) {
    const std::int64_t warp = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (warp >= n_rows * groups) return;
    const std::int64_t row = warp % n_rows, g = warp / n_rows;
    const std::int64_t c0 = g * gs, c1 = std::min(k, c0 + gs);
    float lo = INFINITY, hi = -INFINITY;
    for (std::int64_t c = c0 + lane; c < c1; c += 32) {
        const float v = w[row * k + c];
        lo = fminf(lo, v);
        hi = fmaxf(hi, v);
    }
    for (int off = 16; off > 0; off >>= 1) {
        lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, off));
        hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, off));
    }
    if (lane == 0) {
        const channel_params p = params_from_range(lo, hi, maxq, sym);
        scale[g * n_rows + row] = p.scale;
        zero[g * n_rows + row] = p.zero;
    }
}

__global__ void dead_columns_kernel(float* h, std::int64_t k, int* dead, float* diag) {
    const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
    if (i >= k) return;
    float d = h[i * k + i];
    dead[i] = d == 0.0f;
    if (d == 0.0f) {
        d = 1.0f;
        h[i * k + i] = 1.0f;
    }
    diag[i] = d;
}

__global__ void zero_dead_kernel(float* w, std::int64_t n_rows, std::int64_t k, const int* dead) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n_rows * k; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        if (dead[i % k]) w[i] = 0.0f;
}

__global__ void permute_cols_kernel(const float* w, std::int64_t n_rows, std::int64_t k, const int* perm, float* out) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n_rows * k; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const std::int64_t r = i / k, c = i % k;
        out[i] = w[r * k + perm[c]];
    }
}

__global__ void permute_sym_kernel(const float* h, std::int64_t k, const int* perm, float* out) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < k * k; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const std::int64_t r = i / k, c = i % k;
        out[i] = h[static_cast<std::int64_t>(perm[r]) * k + perm[c]];
    }
}

/// hd = (double) h + damp on the diagonal: the factorization chain runs in fp64, as the CPU reference does.
__global__ void damped_to_double_kernel(const float* h, std::int64_t k, double damp, double* hd) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < k * k;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        hd[i] = static_cast<double>(h[i]) + (i / k == i % k ? damp : 0.0);
}

__global__ void double_to_float_kernel(const double* hd, std::int64_t n, float* h) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        h[i] = static_cast<float>(hd[i]);
}

__global__ void count_non_finite_kernel(const float* h, std::int64_t n, unsigned long long* count) {
    unsigned long long local = 0;
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        local += !isfinite(h[i]);
    if (local) atomicAdd(count, local);
}

/// The column loop of one block [i1, i1 + cnt) for 64 rows. W (global) keeps its block-start values: group params
/// are taken from it, as the reference does; the running copy W1 lives in shared memory.
__global__ void __launch_bounds__(k_rows_per_cta) block_kernel(
    const float* w, std::int64_t n_rows, std::int64_t k, std::int64_t i1, int cnt, const float* hinv, std::int64_t gs,
    bool grouped, bool static_groups, const int* perm, const float* static_scale, const float* static_zero,
    float* cur_scale, float* cur_zero, float* list_scale, float* list_zero, int maxq, bool sym, std::uint8_t* codes,
    float* err1, double* loss) {
    __shared__ float w1[k_rows_per_cta][k_block_cols + 1];
    const int tid = static_cast<int>(threadIdx.x);
    const std::int64_t row0 = static_cast<std::int64_t>(blockIdx.x) * k_rows_per_cta;
    for (int idx = tid; idx < k_rows_per_cta * cnt; idx += k_rows_per_cta) {
        const int r = idx / cnt, c = idx % cnt;
        if (row0 + r < n_rows) w1[r][c] = w[(row0 + r) * k + i1 + c];
    }
    __syncthreads();
    const std::int64_t row = row0 + tid;
    double lsum = 0.0;
    if (row < n_rows) {
        float sc = cur_scale[row], zr = cur_zero[row];
        for (int i = 0; i < cnt; ++i) {
            const std::int64_t col = i1 + i;
            if (grouped) {
                if (!static_groups) {
                    if (col % gs == 0) {
                        const float* src = w + row * k;
                        const std::int64_t end = std::min(k, col + gs);
                        float lo = src[col], hi = src[col];
                        for (std::int64_t c = col + 1; c < end; ++c) {
                            lo = fminf(lo, src[c]);
                            hi = fmaxf(hi, src[c]);
                        }
                        const channel_params p = params_from_range(lo, hi, maxq, sym);
                        sc = p.scale;
                        zr = p.zero;
                        list_scale[(col / gs) * n_rows + row] = sc;
                        list_zero[(col / gs) * n_rows + row] = zr;
                    }
                } else {
                    const std::int64_t g = (perm ? perm[col] : col) / gs;
                    sc = static_scale[g * n_rows + row];
                    zr = static_zero[g * n_rows + row];
                }
            }
            const channel_params p{sc, zr};
            const float x = w1[tid][i];
            const float qc = quantize_code(x, p, maxq);
            const float q = dequantize_code(qc, p);
            codes[row * k + col] = static_cast<std::uint8_t>(qc);
            const float* hrow = hinv + col * k + i1;
            const float d = __ldg(hrow + i);
            lsum += static_cast<double>(x - q) * static_cast<double>(x - q) / (static_cast<double>(d) * d) / 2.0;
            const float err = (x - q) / d;
            for (int j = i; j < cnt; ++j) w1[tid][j] -= err * __ldg(hrow + j);
            err1[row * cnt + i] = err;
        }
        cur_scale[row] = sc;
        cur_zero[row] = zr;
    }
    for (int off = 16; off > 0; off >>= 1) lsum += __shfl_xor_sync(0xffffffffu, lsum, off);
    if ((tid & 31) == 0) atomicAdd(loss, lsum);
}

/// Fake-quantized fp16 weight in the original column order from the permuted codes and the params list.
__global__ void dequant_kernel(const std::uint8_t* codes, std::int64_t n_rows, std::int64_t k, const float* list_scale,
                               const float* list_zero, const int* col_param, const int* perm, __half* out) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n_rows * k; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const std::int64_t r = i / k, c = i % k;
        const std::int64_t g = col_param[c];
        const channel_params p{list_scale[g * n_rows + r], list_zero[g * n_rows + r]};
        out[r * k + (perm ? perm[c] : c)] = __float2half_rn(dequantize_code(static_cast<float>(codes[i]), p));
    }
}

__global__ void rtn_kernel(const float* w, std::int64_t n_rows, std::int64_t k, std::int64_t gs, const float* scale,
                           const float* zero, int maxq, float* out) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n_rows * k; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
        const std::int64_t r = i / k, c = i % k, g = c / gs;
        const channel_params p{scale[g * n_rows + r], zero[g * n_rows + r]};
        out[i] = dequantize_code(quantize_code(w[i], p, maxq), p);
    }
}

__global__ void diff_f16_kernel(const float* a, const __half* b, std::int64_t n, float* out) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        out[i] = a[i] - __half2float(b[i]);
}

__global__ void diff_f32_kernel(const float* a, const float* b, std::int64_t n, float* out) {
    for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
        out[i] = a[i] - b[i];
}

template <class T>
std::vector<T> download(const device_buffer& b, std::size_t count) {
    std::vector<T> v(count);
    if (count) QB_CUDA_CHECK(cudaMemcpy(v.data(), b.get(), count * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
}

}  // namespace

gptq_gpu::gptq_gpu(device_context& context) : m_context(context), m_stream(context.stream()) {
    QB_CUSOLVER_CHECK(cusolverDnCreate(&m_solver));
    QB_CUSOLVER_CHECK(cusolverDnSetStream(m_solver, m_stream));
    QB_CUBLAS_CHECK(cublasCreate(&m_blas));
    QB_CUBLAS_CHECK(cublasSetStream(m_blas, m_stream));
    QB_CUBLAS_CHECK(cublasSetMathMode(m_blas, CUBLAS_DEFAULT_MATH));  // no TF32: fp32 products as the reference
}

gptq_gpu::~gptq_gpu() {
    if (m_blas) cublasDestroy(m_blas);
    if (m_solver) cusolverDnDestroy(m_solver);
}

gptq_result gptq_gpu::quantize(const __half* w16, std::int64_t N, std::int64_t K, float* h, const gptq_config& cfg,
                               __half* wq) {
    if (!is_supported_bits(cfg.bits)) throw unsupported_error("gptq: unsupported bits " + std::to_string(cfg.bits));
    const int maxq = static_cast<int>(max_code(cfg.bits));
    const std::int64_t gs = effective_group(cfg.group_size, K);
    const std::int64_t G = ceil_div(K, gs);
    const bool grouped = cfg.group_size != -1;
    const cudaStream_t st = m_stream;
    auto alloc = [&](std::uint64_t bytes, const char* what) { return m_context.allocate(std::max<std::uint64_t>(bytes, 16), what); };
    const std::uint64_t NK = static_cast<std::uint64_t>(N * K), KK = static_cast<std::uint64_t>(K * K);

    device_buffer W = alloc(NK * 4, "gptq: W fp32");
    f16_to_f32_kernel<<<blocks_for(NK, k_threads), k_threads, 0, st>>>(w16, static_cast<std::int64_t>(NK), W.as<float>());
    QB_CUDA_CHECK_LAUNCH(st);
    // "Quantizer not ready": per-channel params of the whole row, before dead columns are zeroed.
    device_buffer cur_scale = alloc(N * 4, "gptq: params"), cur_zero = alloc(N * 4, "gptq: params");
    range_params_kernel<<<blocks_for(N * 32, k_threads), k_threads, 0, st>>>(W.as<float>(), N, K, K, 1, maxq, cfg.sym,
                                                                              cur_scale.as<float>(), cur_zero.as<float>());
    QB_CUDA_CHECK_LAUNCH(st);
    device_buffer dead = alloc(K * 4, "gptq: dead"), diag = alloc(K * 4, "gptq: diag");
    dead_columns_kernel<<<blocks_for(K, k_threads), k_threads, 0, st>>>(h, K, dead.as<int>(), diag.as<float>());
    QB_CUDA_CHECK_LAUNCH(st);
    zero_dead_kernel<<<blocks_for(NK, k_threads), k_threads, 0, st>>>(W.as<float>(), N, K, dead.as<int>());
    QB_CUDA_CHECK_LAUNCH(st);

    device_buffer static_scale, static_zero;
    if (grouped && cfg.static_groups) {
        static_scale = alloc(static_cast<std::uint64_t>(G * N) * 4, "gptq: static params");
        static_zero = alloc(static_cast<std::uint64_t>(G * N) * 4, "gptq: static params");
        range_params_kernel<<<blocks_for(N * G * 32, k_threads), k_threads, 0, st>>>(
            W.as<float>(), N, K, gs, G, maxq, cfg.sym, static_scale.as<float>(), static_zero.as<float>());
        QB_CUDA_CHECK_LAUNCH(st);
    }

    const std::vector<float> diag_h = download<float>(diag, static_cast<std::size_t>(K));
    gptq_result res;
    device_buffer perm_dev;
    device_buffer H;  // the working Hessian (permuted copy or h itself)
    float* hw = h;
    if (cfg.act_order) {
        std::vector<std::int32_t> idx(static_cast<std::size_t>(K));
        for (std::int64_t i = 0; i < K; ++i) idx[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
        std::stable_sort(idx.begin(), idx.end(), [&](std::int32_t a, std::int32_t b) {
            return diag_h[static_cast<std::size_t>(a)] > diag_h[static_cast<std::size_t>(b)];
        });
        res.perm = idx;
        perm_dev = alloc(K * 4, "gptq: perm");
        QB_CUDA_CHECK(cudaMemcpy(perm_dev.get(), res.perm.data(), K * 4, cudaMemcpyHostToDevice));
        device_buffer Wp = alloc(NK * 4, "gptq: W permuted");
        permute_cols_kernel<<<blocks_for(NK, k_threads), k_threads, 0, st>>>(W.as<float>(), N, K, perm_dev.as<int>(), Wp.as<float>());
        QB_CUDA_CHECK_LAUNCH(st);
        W = std::move(Wp);
        H = alloc(KK * 4, "gptq: H permuted");
        permute_sym_kernel<<<blocks_for(KK, k_threads), k_threads, 0, st>>>(h, K, perm_dev.as<int>(), H.as<float>());
        QB_CUDA_CHECK_LAUNCH(st);
        hw = H.as<float>();
    }
    double diag_sum = 0.0;
    for (float d : diag_h) diag_sum += d;
    const float mean_diag = static_cast<float>(diag_sum / static_cast<double>(K));

    // A Hessian with inf/NaN (activations that overflowed fp16) cannot be damped into shape: say so plainly.
    {
        device_buffer bad = alloc(8, "gptq: finite check");
        QB_CUDA_CHECK(cudaMemsetAsync(bad.get(), 0, 8, st));
        count_non_finite_kernel<<<1024, k_threads, 0, st>>>(hw, static_cast<std::int64_t>(KK), bad.as<unsigned long long>());
        QB_CUDA_CHECK_LAUNCH(st);
        unsigned long long non_finite = 0;
        QB_CUDA_CHECK(cudaMemcpyAsync(&non_finite, bad.get(), 8, cudaMemcpyDeviceToHost, st));
        QB_CUDA_CHECK(cudaStreamSynchronize(st));
        if (non_finite != 0)
            throw error("gptq: the Hessian has " + std::to_string(non_finite) + " non-finite entries of " +
                        std::to_string(KK) + " (calibration activations overflowed fp16)");
    }

    // Hinv = cholesky(cholesky_inverse(cholesky(H + damp I)), upper), in fp64. In fp32 the chain fails on real
    // shapes whose Hessian carries one dominant direction (the largest eigenvalue near K x the mean diagonal: the
    // rounding of a K-term factorization then exceeds 1% damping; seen on Vicuna-13B's layers), and the CPU reference
    // factorizes in double too. Column-major lower factors read as row-major are the upper factor the column loop
    // wants, so every call uses CUBLAS_FILL_MODE_LOWER.
    device_buffer hd = alloc(KK * 8, "gptq: H fp64 factorization");
    int lwork_a = 0, lwork_b = 0;
    const int k32 = static_cast<int>(K);
    QB_CUSOLVER_CHECK(cusolverDnDpotrf_bufferSize(m_solver, CUBLAS_FILL_MODE_LOWER, k32, hd.as<double>(), k32, &lwork_a));
    QB_CUSOLVER_CHECK(cusolverDnDpotri_bufferSize(m_solver, CUBLAS_FILL_MODE_LOWER, k32, hd.as<double>(), k32, &lwork_b));
    const int lwork = std::max(lwork_a, lwork_b);
    device_buffer work = alloc(static_cast<std::uint64_t>(lwork) * 8, "gptq: cuSOLVER workspace");
    device_buffer info = alloc(4, "gptq: cuSOLVER info");
    double damp = cfg.damp_percent;
    std::string failed_step;
    int failed_info = 0;
    for (int attempt = 0;; ++attempt) {
        damped_to_double_kernel<<<1024, k_threads, 0, st>>>(hw, K, damp * static_cast<double>(mean_diag), hd.as<double>());
        QB_CUDA_CHECK_LAUNCH(st);
        int ok = 0;
        auto check_info = [&](const char* step) {
            QB_CUDA_CHECK(cudaMemcpyAsync(&ok, info.get(), 4, cudaMemcpyDeviceToHost, st));
            QB_CUDA_CHECK(cudaStreamSynchronize(st));
            if (ok != 0) failed_step = step, failed_info = ok;
            return ok == 0;
        };
        bool good = false;
        QB_CUSOLVER_CHECK(cusolverDnDpotrf(m_solver, CUBLAS_FILL_MODE_LOWER, k32, hd.as<double>(), k32, work.as<double>(), lwork, info.as<int>()));
        if (check_info("cholesky(H + damp I)")) {
            QB_CUSOLVER_CHECK(cusolverDnDpotri(m_solver, CUBLAS_FILL_MODE_LOWER, k32, hd.as<double>(), k32, work.as<double>(), lwork, info.as<int>()));
            if (check_info("cholesky_inverse")) {
                QB_CUSOLVER_CHECK(cusolverDnDpotrf(m_solver, CUBLAS_FILL_MODE_LOWER, k32, hd.as<double>(), k32, work.as<double>(), lwork, info.as<int>()));
                good = check_info("cholesky(H^-1)");
            }
        }
        if (good) break;
        // GPTQModel-style escalation (AutoGPTQ gives up at once): record the damping actually used.
        if (attempt >= 100)
            throw error("gptq: Hessian not positive definite even with damping " + std::to_string(damp) + " (" +
                        failed_step + " failed at leading minor " + std::to_string(failed_info) + ", mean diagonal " +
                        std::to_string(mean_diag) + ")");
        damp += 0.01;
    }
    double_to_float_kernel<<<1024, k_threads, 0, st>>>(hd.as<const double>(), static_cast<std::int64_t>(KK), hw);
    QB_CUDA_CHECK_LAUNCH(st);
    hd.reset();
    work.reset();
    res.damp_used = damp;

    const std::int64_t groups_out = grouped ? G : 1;
    device_buffer list_scale = alloc(static_cast<std::uint64_t>(groups_out * N) * 4, "gptq: scales");
    device_buffer list_zero = alloc(static_cast<std::uint64_t>(groups_out * N) * 4, "gptq: zeros");
    if (grouped && cfg.static_groups) {
        QB_CUDA_CHECK(cudaMemcpyAsync(list_scale.get(), static_scale.get(), static_cast<std::size_t>(G * N) * 4, cudaMemcpyDeviceToDevice, st));
        QB_CUDA_CHECK(cudaMemcpyAsync(list_zero.get(), static_zero.get(), static_cast<std::size_t>(G * N) * 4, cudaMemcpyDeviceToDevice, st));
    }
    device_buffer codes = alloc(NK, "gptq: codes");
    device_buffer err1 = alloc(static_cast<std::uint64_t>(N * k_block_cols) * 4, "gptq: block errors");
    device_buffer loss = alloc(8, "gptq: loss");
    QB_CUDA_CHECK(cudaMemsetAsync(loss.get(), 0, 8, st));
    const float minus_one = -1.0f, one = 1.0f;
    for (std::int64_t i1 = 0; i1 < K; i1 += k_block_cols) {
        const std::int64_t i2 = std::min(i1 + k_block_cols, K);
        const int cnt = static_cast<int>(i2 - i1);
        block_kernel<<<static_cast<unsigned>((N + k_rows_per_cta - 1) / k_rows_per_cta), k_rows_per_cta, 0, st>>>(
            W.as<float>(), N, K, i1, cnt, hw, gs, grouped, cfg.static_groups, cfg.act_order ? perm_dev.as<int>() : nullptr,
            static_scale.as<float>(), static_zero.as<float>(), cur_scale.as<float>(), cur_zero.as<float>(),
            list_scale.as<float>(), list_zero.as<float>(), maxq, cfg.sym, codes.as<std::uint8_t>(), err1.as<float>(),
            loss.as<double>());
        QB_CUDA_CHECK_LAUNCH(st);
        if (i2 < K) {
            // W[:, i2:] -= Err1 · Hinv[i1:i2, i2:]  (row-major), as column-major: W^T -= Hinv_blk^T · Err1^T.
            QB_CUBLAS_CHECK(cublasSgemm(m_blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(K - i2), static_cast<int>(N), cnt,
                                        &minus_one, hw + i1 * K + i2, k32, err1.as<float>(), cnt, &one, W.as<float>() + i2, k32));
        }
    }
    if (!grouped) {
        QB_CUDA_CHECK(cudaMemcpyAsync(list_scale.get(), cur_scale.get(), N * 4, cudaMemcpyDeviceToDevice, st));
        QB_CUDA_CHECK(cudaMemcpyAsync(list_zero.get(), cur_zero.get(), N * 4, cudaMemcpyDeviceToDevice, st));
    }
    QB_CUDA_CHECK(cudaStreamSynchronize(st));

    // Back to the host: un-permute the codes; g_idx as the reference assigns it.
    const auto codes_perm = download<std::uint8_t>(codes, NK);
    res.loss = download<double>(loss, 1)[0];
    quantized_linear& q = res.q;
    q.in_features = K;
    q.out_features = N;
    q.bits = cfg.bits;
    q.group_size = cfg.group_size;
    q.scales = download<float>(list_scale, static_cast<std::size_t>(groups_out * N));
    const auto zeros_f = download<float>(list_zero, static_cast<std::size_t>(groups_out * N));
    q.zeros.resize(zeros_f.size());
    for (std::size_t i = 0; i < zeros_f.size(); ++i) q.zeros[i] = static_cast<std::uint8_t>(zeros_f[i]);
    q.codes.resize(NK);
    for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t c = 0; c < K; ++c) {
            const std::int64_t orig = cfg.act_order ? res.perm[static_cast<std::size_t>(c)] : c;
            q.codes[static_cast<std::size_t>(n * K + orig)] = codes_perm[static_cast<std::size_t>(n * K + c)];
        }
    q.g_idx = make_g_idx(K, cfg.group_size, cfg.static_groups, res.perm);
    q.validate();

    if (wq) {
        std::vector<int> col_param(static_cast<std::size_t>(K), 0);
        if (grouped)
            for (std::int64_t c = 0; c < K; ++c)
                col_param[static_cast<std::size_t>(c)] = static_cast<int>(
                    (cfg.static_groups && cfg.act_order ? res.perm[static_cast<std::size_t>(c)] : c) / gs);
        device_buffer cp = alloc(K * 4, "gptq: column params");
        QB_CUDA_CHECK(cudaMemcpy(cp.get(), col_param.data(), K * 4, cudaMemcpyHostToDevice));
        dequant_kernel<<<blocks_for(NK, k_threads), k_threads, 0, st>>>(
            codes.as<std::uint8_t>(), N, K, list_scale.as<float>(), list_zero.as<float>(), cp.as<int>(),
            cfg.act_order ? perm_dev.as<int>() : nullptr, wq);
        QB_CUDA_CHECK_LAUNCH(st);
        QB_CUDA_CHECK(cudaStreamSynchronize(st));
    }
    return res;
}

void gptq_gpu::rtn(const __half* w16, std::int64_t N, std::int64_t K, std::int64_t bits, std::int64_t group_size,
                   bool sym, float* out) {
    const int maxq = static_cast<int>(max_code(bits));
    const std::int64_t gs = effective_group(group_size, K), G = ceil_div(K, gs);
    const std::uint64_t NK = static_cast<std::uint64_t>(N * K);
    const cudaStream_t st = m_stream;
    device_buffer W = m_context.allocate(NK * 4, "gptq rtn: W fp32");
    device_buffer sc = m_context.allocate(static_cast<std::uint64_t>(G * N) * 4, "gptq rtn: scales");
    device_buffer zr = m_context.allocate(static_cast<std::uint64_t>(G * N) * 4, "gptq rtn: zeros");
    f16_to_f32_kernel<<<blocks_for(NK, k_threads), k_threads, 0, st>>>(w16, static_cast<std::int64_t>(NK), W.as<float>());
    QB_CUDA_CHECK_LAUNCH(st);
    range_params_kernel<<<blocks_for(N * G * 32, k_threads), k_threads, 0, st>>>(W.as<float>(), N, K, gs, G, maxq, sym,
                                                                                 sc.as<float>(), zr.as<float>());
    QB_CUDA_CHECK_LAUNCH(st);
    rtn_kernel<<<blocks_for(NK, k_threads), k_threads, 0, st>>>(W.as<float>(), N, K, gs, sc.as<float>(), zr.as<float>(), maxq, out);
    QB_CUDA_CHECK_LAUNCH(st);
    QB_CUDA_CHECK(cudaStreamSynchronize(st));
}

std::pair<double, double> gptq_gpu::relative_errors(const __half* x, std::int64_t rows, const __half* w,
                                                    const __half* wq, std::int64_t N, std::int64_t K,
                                                    const gptq_config& cfg) {
    const cudaStream_t st = m_stream;
    const std::uint64_t NK = static_cast<std::uint64_t>(N * K), RK = static_cast<std::uint64_t>(rows * K),
                        RN = static_cast<std::uint64_t>(rows * N);
    device_buffer xf = m_context.allocate(RK * 4, "gptq quality: x fp32");
    device_buffer wf = m_context.allocate(NK * 4, "gptq quality: W fp32");
    device_buffer d = m_context.allocate(NK * 4, "gptq quality: W - Wq");
    device_buffer y = m_context.allocate(RN * 4, "gptq quality: outputs");
    f16_to_f32_kernel<<<blocks_for(RK, k_threads), k_threads, 0, st>>>(x, static_cast<std::int64_t>(RK), xf.as<float>());
    QB_CUDA_CHECK_LAUNCH(st);
    f16_to_f32_kernel<<<blocks_for(NK, k_threads), k_threads, 0, st>>>(w, static_cast<std::int64_t>(NK), wf.as<float>());
    QB_CUDA_CHECK_LAUNCH(st);
    const float one = 1.0f, zero = 0.0f;
    // Row-major y[rows, N] = x · M^T: column-major y^T = M^T(op T of the row-major M) · x^T.
    auto norm_of_product = [&](const float* m) {
        QB_CUBLAS_CHECK(cublasSgemm(m_blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(rows),
                                    static_cast<int>(K), &one, m, static_cast<int>(K), xf.as<float>(), static_cast<int>(K),
                                    &zero, y.as<float>(), static_cast<int>(N)));
        float r = 0.0f;
        QB_CUBLAS_CHECK(cublasSetPointerMode(m_blas, CUBLAS_POINTER_MODE_HOST));
        QB_CUBLAS_CHECK(cublasSnrm2(m_blas, static_cast<int>(RN), y.as<float>(), 1, &r));
        return static_cast<double>(r);
    };
    const double ref = norm_of_product(wf.as<float>());
    diff_f16_kernel<<<blocks_for(NK, k_threads), k_threads, 0, st>>>(wf.as<float>(), wq, static_cast<std::int64_t>(NK), d.as<float>());
    QB_CUDA_CHECK_LAUNCH(st);
    const double eg = norm_of_product(d.as<float>());
    rtn(w, N, K, cfg.bits, cfg.group_size, cfg.sym, d.as<float>());
    diff_f32_kernel<<<blocks_for(NK, k_threads), k_threads, 0, st>>>(wf.as<float>(), d.as<float>(), static_cast<std::int64_t>(NK), d.as<float>());
    QB_CUDA_CHECK_LAUNCH(st);
    const double er = norm_of_product(d.as<float>());
    if (ref <= 0.0) return {0.0, 0.0};
    return {eg / ref, er / ref};
}

}  // namespace qbench::gptq
