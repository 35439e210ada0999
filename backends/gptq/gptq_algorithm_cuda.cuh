#pragma once
/// GPTQ of one linear layer on the GPU: the algorithm of gptq_algorithm_ref.hpp step for step, with the Hessian
/// factorizations in cuSOLVER (potrf, potri, potrf: the upper Cholesky factor of H^-1, fp32), the column loop in a
/// kernel per block of 128 columns (one thread per output row, the block's columns in shared memory) and the lazy
/// batch update as one cuBLAS SGEMM per block. TF32 stays off (the handle is ours, default math mode).
#include "backends/gptq/gptq_algorithm_ref.hpp"

#include "cuda/device_context.cuh"

#include <cuda_fp16.h>
#include <cusolverDn.h>

#include <cstdint>
#include <utility>

namespace qbench::gptq {

class gptq_gpu {
public:
    explicit gptq_gpu(device_context& context);
    ~gptq_gpu();
    gptq_gpu(const gptq_gpu&) = delete;
    gptq_gpu& operator=(const gptq_gpu&) = delete;

    /// w: fp16 [N][K] on the device; h: fp32 [K][K] on the device, symmetric (overwritten). The result comes back to
    /// the host; when `wq` is not null the fake-quantized weight (fp16 [N][K], original column order) is written
    /// there for the calibration forward of the following layers.
    gptq_result quantize(const __half* w, std::int64_t n, std::int64_t k, float* h, const gptq_config& config,
                         __half* wq);

    /// Round-to-nearest fake-quantized weight, fp32 [N][K] (the quality baseline).
    void rtn(const __half* w, std::int64_t n, std::int64_t k, std::int64_t bits, std::int64_t group_size, bool sym,
             float* out);

    /// Relative output errors ||x (W - Wq)^T|| / ||x W^T|| of GPTQ's weight (wq, fp16) and of round-to-nearest with
    /// the same bits and groups, on inputs x (fp16 [rows][K]); fp32 SGEMMs.
    std::pair<double, double> relative_errors(const __half* x, std::int64_t rows, const __half* w, const __half* wq,
                                              std::int64_t n, std::int64_t k, const gptq_config& config);

    cublasHandle_t blas() const { return m_blas; }

private:
    device_context& m_context;
    cudaStream_t m_stream;
    cusolverDnHandle_t m_solver = nullptr;
    cublasHandle_t m_blas = nullptr;
};

}  // namespace qbench::gptq
