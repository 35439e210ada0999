#pragma once
/// GPTQ linear layers loaded from an AutoGPTQ checkpoint, for the CPU reference and the GPU.
///
/// CPU semantics: W[n, k] = scales[g, n] * (q[k, n] - z[g, n]) in float (g = g_idx[k]), dequantized once at load;
/// y[r, n] = fp16( sum_k x[r, k] * W[n, k] ), the sum in float with eight fixed partial sums (gptq_cpu_dot.hpp).
/// GPU: the fused kernels of gptq_gemm.cuh up to the batch threshold, reconstruct-to-fp16 + cuBLAS above it.
#include "backends/gptq/gptq_pack.hpp"
#include "qbench/backend/backend.hpp"
#include "qbench/backend/cpu_linear.hpp"

#include <memory>
#include <string>

namespace qbench::gptq {

/// "gptq-int4-g128", with "-act" when g_idx is not sequential.
std::string gptq_format_name(std::int64_t bits, std::int64_t group_size, bool act_order);
/// Bytes of the AutoGPTQ tensors of a layer (qweight, qzeros, scales, g_idx).
std::uint64_t packed_bytes(const packed_linear& p);

/// A CPU linear over an unpacked layer.
std::unique_ptr<cpu_linear> make_gptq_cpu_linear(const quantized_linear& q, std::uint64_t weight_bytes);
/// Reads prefix.{qweight,qzeros,scales,g_idx} from the request's checkpoint (input_error when missing or malformed).
std::unique_ptr<cpu_linear> load_gptq_cpu_linear(const linear_request& request);

#if QBENCH_HAVE_CUDA
/// Uploads a packed layer and rearranges it on the GPU (gptq_device_layout.hpp). `recons_threshold` is the largest
/// row count served by the fused kernels.
std::unique_ptr<device_linear> make_gptq_device_linear(device_context& context, const packed_linear& p,
                                                       std::int64_t recons_threshold);
/// Reads the layer from the request's checkpoint and uploads it.
std::unique_ptr<device_linear> load_gptq_device_linear(const linear_request& request, device_context& context);
#endif

}  // namespace qbench::gptq
