#pragma once
/// Scratch memory the bnb linears of one device context share: the fp16 weight that the batch > 1 path dequantizes
/// into (sized for the largest 4-bit layer, as bitsandbytes' per-call dequantized weight peaks at one layer), the
/// LLM.int8() activation buffers, and the one device copy of the nested (double-quantization) code book. Everything goes through the context's accounting allocator; it is sized at
/// load time so a forward neither allocates nor synchronizes (graph capture), except when a batch larger than any
/// seen before needs bigger int8 GEMM buffers (then outside a capture only).
#include "backends/bnb/bnb_kernels.cuh"
#include "cuda/device_context.cuh"

#include <cstdint>
#include <memory>

namespace qbench::bnb {

class workspace {
public:
    /// The one workspace of `context` (created on first use, shared while any linear holds it).
    static std::shared_ptr<workspace> of(device_context& context);

    explicit workspace(device_context& context) : m_context(context) {}

    device_context& context() const { return m_context; }

    /// The 256-entry signed dynamic map of double quantization (dynamic_map_signed()) on the device, uploaded on first
    /// use (load time). Every double-quantized linear whose map equals it points here: a fused group whose members
    /// share one map pointer loads one code book instead of one per member, and one 1 KiB map stays hot in L2
    /// instead of 224 copies that a decode step's weight stream evicts (bnb_gemv_team_4bit.cu).
    const float* nested_map();

    /// Makes the fp16 dequantization buffer at least `elements` long (load time).
    void reserve_dequant(std::uint64_t elements);
    __half* dequant() const { return m_dequant.as<__half>(); }

    /// Activation buffers for up to `rows` rows of width `k` (and an int32 [rows, n] product when n > 0).
    /// Grows on demand; throws error when growth is needed while `stream` is being captured.
    int8_act_buffers int8_buffers(std::int64_t rows, std::int64_t k, cudaStream_t stream);
    std::int32_t* int8_product(std::int64_t rows, std::int64_t n, cudaStream_t stream);

private:
    void grow(device_buffer& buffer, std::uint64_t bytes, const char* what, cudaStream_t stream);

    device_context& m_context;
    device_buffer m_nested_map;
    device_buffer m_dequant;
    device_buffer m_q, m_row_stats, m_mask, m_cols, m_count, m_product;
};

}  // namespace qbench::bnb
