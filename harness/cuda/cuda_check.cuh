#pragma once
/// Error checks for CUDA runtime, cuBLAS and cuBLASLt calls: every failing call throws qbench::cuda_error naming the
/// expression, file:line and device, after clearing the runtime's last error so the context stays usable (a sticky
/// error such as an illegal address cannot be cleared; the runner retires the process then).
/// Out of memory is not an error here: device_context::allocate turns it into qbench::out_of_memory.
#include "qbench/common/errors.hpp"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

namespace qbench::detail {

[[noreturn]] inline void throw_cuda_error(const char* library, const std::string& code, const char* expr,
                                          const char* file, int line) {
    int device = -1;
    cudaGetDevice(&device);
    cudaGetLastError();  // clear a non-sticky error so later calls are not blamed for this one
    throw cuda_error(std::string(library) + " error " + code + " in `" + expr + "` at " + file + ":" +
                     std::to_string(line) + " (device " + std::to_string(device) + ")");
}

inline std::string cuda_code(cudaError_t e) { return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")"; }
inline std::string cublas_code(cublasStatus_t s) { return std::string(cublasGetStatusName(s)); }

}  // namespace qbench::detail

/// Generic check: `expr` is evaluated once; `ok` is its success value; `to_string` names a failure code.
#define QB_CHECK_GEN(library, expr, ok, to_string)                                                   \
    do {                                                                                               \
        const auto qb_status_ = (expr);                                                                \
        if (qb_status_ != (ok))                                                                        \
            ::qbench::detail::throw_cuda_error(library, to_string(qb_status_), #expr, __FILE__, __LINE__); \
    } while (0)

#define QB_CUDA_CHECK(expr) QB_CHECK_GEN("CUDA", expr, cudaSuccess, ::qbench::detail::cuda_code)
#define QB_CUBLAS_CHECK(expr) QB_CHECK_GEN("cuBLAS", expr, CUBLAS_STATUS_SUCCESS, ::qbench::detail::cublas_code)

/// After every kernel launch: launch-configuration errors surface here, not at some later call. With QBENCH_DEBUG_SYNC
/// defined the stream is synchronized too, so an asynchronous fault is reported at the kernel that caused it.
#ifdef QBENCH_DEBUG_SYNC
#define QB_CUDA_CHECK_LAUNCH(stream)                   \
    do {                                               \
        QB_CUDA_CHECK(cudaGetLastError());             \
        QB_CUDA_CHECK(cudaStreamSynchronize(stream));  \
    } while (0)
#else
#define QB_CUDA_CHECK_LAUNCH(stream) QB_CUDA_CHECK(cudaGetLastError())
#endif

/// For destructors: report and carry on, never throw.
#define QB_CUDA_CHECK_NOEXCEPT(expr)                                                                   \
    do {                                                                                               \
        const cudaError_t qb_status_ = (expr);                                                         \
        if (qb_status_ != cudaSuccess)                                                                 \
            std::fprintf(stderr, "qbench: CUDA error %s in `%s` at %s:%d (ignored in a destructor)\n", \
                         cudaGetErrorName(qb_status_), #expr, __FILE__, __LINE__);                     \
    } while (0)
