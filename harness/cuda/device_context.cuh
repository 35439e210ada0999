#pragma once
/// One GPU as a cell sees it: the accounting allocator every device allocation goes through, the stream all work is
/// enqueued on, the cuBLAS/cuBLASLt handles (their workspace allocated through the allocator, so it is counted), and
/// the memory the CUDA context and the libraries take before any allocation (measured, and counted against a budget).
///
/// Budget: an emulated instance's usable VRAM (nvidia-smi's figure) covers the context, the libraries and every
/// allocation. When an allocation would exceed it, or the real device runs out, allocate() throws
/// out_of_memory(vram, requested, available): an outcome, never a crash.
///
/// Host code may include this header (it needs only the CUDA runtime and cuBLAS headers); the runner uses the
/// host-only wrapper qbench/engine/cuda_api.hpp instead.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "qbench/common/host_memory.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qbench {

class device_context;

/// A device allocation owned by one object; returned to its context (and its accounting) on destruction.
class device_buffer {
public:
    device_buffer() = default;
    device_buffer(device_buffer&& other) noexcept { swap(other); }
    device_buffer& operator=(device_buffer&& other) noexcept {
        device_buffer tmp(std::move(other));
        swap(tmp);
        return *this;
    }
    device_buffer(const device_buffer&) = delete;
    device_buffer& operator=(const device_buffer&) = delete;
    ~device_buffer() { reset(); }

    void* get() const { return m_ptr; }
    template <class T> T* as() const { return static_cast<T*>(m_ptr); }
    std::uint64_t size() const { return m_bytes; }
    explicit operator bool() const { return m_ptr != nullptr; }
    /// Frees now (and returns the bytes to the accounting).
    void reset() noexcept;

private:
    friend class device_context;
    device_buffer(device_context* context, void* ptr, std::uint64_t bytes)
        : m_context(context), m_ptr(ptr), m_bytes(bytes) {}
    void swap(device_buffer& o) noexcept {
        std::swap(m_context, o.m_context);
        std::swap(m_ptr, o.m_ptr);
        std::swap(m_bytes, o.m_bytes);
    }
    device_context* m_context = nullptr;
    void* m_ptr = nullptr;
    std::uint64_t m_bytes = 0;
};

struct device_context_options {
    int device = 0;
    /// Usable VRAM of the emulated instance (context + libraries + allocations); empty = no budget.
    std::optional<std::uint64_t> budget_bytes;
    /// cuBLAS workspace (cublasSetWorkspace); shared with cuBLASLt callers through workspace().
    std::uint64_t workspace_bytes = 32ull << 20;
    /// Programmatic dependent launch on sm_90+ (kernels start while their predecessor drains); QBENCH_PDL=0 turns
    /// it off as well.
    bool allow_pdl = true;
};

/// Memory figures of a context, all in bytes.
struct device_memory_figures {
    std::uint64_t allocated_current = 0;  ///< live allocations through the allocator
    std::uint64_t allocated_peak = 0;     ///< high-water mark of the above
    std::uint64_t device_peak = 0;        ///< high-water mark of (total - free) from cudaMemGetInfo, all processes
    std::uint64_t context = 0;            ///< taken by creating the CUDA context (total - free right after)
    std::uint64_t libraries = 0;          ///< taken by creating the cuBLAS/cuBLASLt handles
    std::uint64_t workspace = 0;          ///< cuBLAS workspace (part of allocated_*)
    std::uint64_t device_total = 0;       ///< the device's memory
    std::optional<std::uint64_t> budget;
};

/// Every device_buffer must be released before its context is destroyed.
class device_context {
public:
    explicit device_context(const device_context_options& options = {});
    ~device_context();
    device_context(const device_context&) = delete;
    device_context& operator=(const device_context&) = delete;

    /// cudaMalloc through the accounting; throws out_of_memory(vram, ...) over budget or when the device is full.
    /// `what` names the allocation in the error message.
    device_buffer allocate(std::uint64_t bytes, std::string_view what);

    /// Synchronous host-to-device copy, timed (upload_seconds()) so a load report can split read, upload, quantize.
    void upload(void* dst, const void* src, std::uint64_t bytes);
    /// A pinned host buffer of at least `bytes` for reading a tensor before upload (a pinned copy runs at the link's
    /// speed, a pageable one at about half). Grown on demand, accounted as host memory; valid until the next call.
    std::byte* staging(std::uint64_t bytes);
    double upload_seconds() const { return m_upload_s; }
    std::uint64_t uploaded_bytes() const { return m_uploaded_bytes; }

    device_memory_figures memory() const;
    /// Bytes the budget still allows (or the device's free memory without a budget).
    std::uint64_t available_bytes() const;
    /// Restarts the peak figures at the current values (e.g. after a provenance measurement).
    void reset_peaks();
    /// Samples cudaMemGetInfo into the device-level peak (also done after every allocation).
    void sample_device_memory();

    int device() const { return m_device; }
    const cudaDeviceProp& properties() const { return m_props; }
    /// Compute capability as 10 * major + minor (90 for H100/H200).
    int compute_capability() const { return m_props.major * 10 + m_props.minor; }
    cudaStream_t stream() const { return m_stream; }
    cublasHandle_t cublas() const { return m_cublas; }
    /// The cuBLAS handle bound to `stream`, with an accounted workspace (cublasSetStream resets a handle's workspace
    /// to cuBLAS's own pool, so the two are set together). Each stream gets its own workspace (the first, the
    /// context's stream's, at creation; others on first use), so GEMMs on concurrent streams never share one.
    cublasHandle_t cublas_on(cudaStream_t stream);
    /// Called before destroying a stream that was given to cublas_on: drops its workspace and binding.
    void forget_stream(cudaStream_t stream) noexcept;
    cublasLtHandle_t cublaslt() const { return m_cublaslt; }
    void* workspace() const { return m_workspace.get(); }
    std::uint64_t workspace_bytes() const { return m_workspace.size(); }

    /// Whether kernels that support programmatic dependent launch should be launched with it.
    bool pdl_enabled() const { return m_pdl; }
    void set_pdl_enabled(bool on) { m_pdl = on && compute_capability() >= 90; }

    /// Name, compute capability, SMs, L2, memory, clocks, ECC, driver/runtime/cuBLAS versions (for provenance).
    nlohmann::json gpu_environment() const;
    /// Read-only streaming bandwidth in GB/s (10^9 bytes/s): 16-byte loads over >= 2 GiB, median of 15 timed runs
    /// after warm-up. Its scratch buffer goes through the allocator but is left out of the peak figures.
    double measure_stream_bandwidth_gbs();

private:
    friend class device_buffer;
    void release(void* ptr, std::uint64_t bytes) noexcept;

    int m_device = 0;
    cudaDeviceProp m_props{};
    cudaStream_t m_stream = nullptr;
    cublasHandle_t m_cublas = nullptr;
    cublasLtHandle_t m_cublaslt = nullptr;
    std::optional<std::uint64_t> m_budget;
    std::uint64_t m_total = 0;
    std::uint64_t m_context_bytes = 0;
    std::uint64_t m_library_bytes = 0;
    std::uint64_t m_current = 0;
    std::uint64_t m_peak = 0;
    std::uint64_t m_device_peak = 0;
    double m_upload_s = 0;
    std::uint64_t m_uploaded_bytes = 0;
    bool m_pdl = false;
    cudaStream_t m_cublas_stream = nullptr;
    std::uint64_t m_workspace_size = 0;
    std::vector<std::pair<cudaStream_t, device_buffer>> m_stream_workspaces;  // streams other than m_stream
    std::byte* m_staging = nullptr;
    std::uint64_t m_staging_bytes = 0;
    host_reservation m_staging_reservation;
    device_buffer m_workspace;
};

}  // namespace qbench
