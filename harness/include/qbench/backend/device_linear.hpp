#pragma once
/// A linear layer y = x Wᵀ on the GPU, in the backend's weight format. Host-only header: no CUDA includes, so the
/// runner and CPU-only builds can hold these through the interface.
#include <cstdint>
#include <string>

struct CUstream_st;  // cudaStream_t without including the CUDA headers

namespace qbench {

class device_linear {
public:
    virtual ~device_linear() = default;
    virtual std::int64_t in_features() const = 0;
    virtual std::int64_t out_features() const = 0;
    /// y[rows, out] = x[rows, in] · Wᵀ with x and y fp16 row-major device buffers, enqueued on `stream`.
    /// Must be capturable into a CUDA graph when graph_capturable() is true (no host syncs, no allocation).
    virtual void forward(const void* x, std::int64_t rows, void* y, CUstream_st* stream) = 0;
    /// Bytes of weights plus metadata a forward reads (for bandwidth_utilization).
    virtual std::uint64_t weight_bytes() const = 0;
    virtual bool graph_capturable() const { return true; }
    /// Whether a forward of this linear at `rows` rows may run at the same time as other linears' forwards on other
    /// streams (the executor's parallel q/k/v and gate/up branches in decode steps): false where the backend's linears
    /// share per-call scratch memory across streams (bnb's dequantized fp16 weight, LLM.int8()'s activation buffers).
    virtual bool concurrent_forwards(std::int64_t rows) const {
        (void)rows;
        return true;
    }
    /// Which kernel path serves `rows` rows, e.g. "gemv-f16", "cublas-hgemm", "gptq-fused-4b", "recons+cublas".
    virtual std::string kernel_path(std::int64_t rows) const = 0;
    /// Format name, as cpu_linear::format_name().
    virtual std::string format_name() const = 0;
};

}  // namespace qbench
