#include "backends/bnb/bnb_workspace.cuh"

#include "qbench/common/errors.hpp"

#include <array>
#include <map>
#include <mutex>

namespace qbench::bnb {

std::shared_ptr<workspace> workspace::of(device_context& context) {
    static std::mutex mutex;
    static std::map<const device_context*, std::weak_ptr<workspace>> registry;
    const std::lock_guard<std::mutex> lock(mutex);
    if (auto existing = registry[&context].lock()) return existing;
    auto created = std::make_shared<workspace>(context);
    registry[&context] = created;
    return created;
}

void workspace::grow(device_buffer& buffer, std::uint64_t bytes, const char* what, cudaStream_t stream) {
    if (buffer.size() >= bytes) return;
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    if (stream != nullptr) QB_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
    if (status != cudaStreamCaptureStatusNone)
        throw error(std::string("bnb workspace: ") + what + " must grow to " + std::to_string(bytes) +
                    " bytes during a CUDA graph capture; run this batch size once before capturing");
    // Work already queued may still use the old buffer.
    if (buffer) QB_CUDA_CHECK(cudaDeviceSynchronize());
    buffer.reset();
    buffer = m_context.allocate(bytes, what);
}

const float* workspace::nested_map() {
    if (!m_nested_map) {
        const std::array<float, 256>& map = dynamic_map_signed();
        m_nested_map = m_context.allocate(sizeof(map), "bnb nested map (shared by the double-quantized linears)");
        m_context.upload(m_nested_map.get(), map.data(), sizeof(map));
    }
    return m_nested_map.as<float>();
}

void workspace::reserve_dequant(std::uint64_t elements) {
    grow(m_dequant, elements * sizeof(__half), "bnb dequantized fp16 weight (batch > 1 path)", nullptr);
}

int8_act_buffers workspace::int8_buffers(std::int64_t rows, std::int64_t k, cudaStream_t stream) {
    const auto r = static_cast<std::uint64_t>(rows), kk = static_cast<std::uint64_t>(k);
    grow(m_q, r * kk, "bnb int8 activations", stream);
    grow(m_row_stats, r * sizeof(float), "bnb int8 row statistics", stream);
    grow(m_mask, ((kk + 31) / 32) * sizeof(std::uint32_t), "bnb int8 outlier mask", stream);
    grow(m_cols, kk * sizeof(std::int32_t), "bnb int8 outlier columns", stream);
    grow(m_count, sizeof(std::int32_t), "bnb int8 outlier count", stream);
    int8_act_buffers b;
    b.q = m_q.as<std::int8_t>();
    b.row_stats = m_row_stats.as<float>();
    b.outlier_mask = m_mask.as<std::uint32_t>();
    b.outlier_cols = m_cols.as<std::int32_t>();
    b.outlier_count = m_count.as<std::int32_t>();
    return b;
}

std::int32_t* workspace::int8_product(std::int64_t rows, std::int64_t n, cudaStream_t stream) {
    grow(m_product, static_cast<std::uint64_t>(rows) * static_cast<std::uint64_t>(n) * sizeof(std::int32_t),
         "bnb int8 int32 product", stream);
    return m_product.as<std::int32_t>();
}

}  // namespace qbench::bnb
