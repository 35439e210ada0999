#pragma once
/// The fp16 linear layer: the unquantized weight as the checkpoint stores it. Every backend uses it for lm_head,
/// which stays fp16 in every framework style (transformers never quantizes it).
///
/// Layout (PyTorch nn.Linear, row-major), one IEEE binary16 per weight, no metadata:
///
///   weight [out, in]      row o = the `in` weights of output feature o
///   bit    15 | 14..10   | 9..0
///          s  | exponent | mantissa      (bias 15)
///
/// CPU semantics: y[r, o] = fp16( sum_i x[r, i] * w[o, i] ), the sum in double in index order, so the result does not
/// depend on how many threads computed it.
#include "qbench/backend/backend.hpp"
#include "qbench/backend/cpu_linear.hpp"
#include "qbench/common/tensor.hpp"

#include <memory>

namespace qbench {

/// A CPU linear over an F16 tensor [out, in] (throws qbench::error for another dtype or rank).
std::unique_ptr<cpu_linear> make_f16_cpu_linear(host_tensor weight_f16);

/// Reads request.prefix + ".weight" from the request's checkpoint: it must be F16 of shape [out_features,
/// in_features], otherwise input_error naming the checkpoint and the tensor.
std::unique_ptr<cpu_linear> load_f16_cpu_linear(const linear_request& request);

#if QBENCH_HAVE_CUDA
/// The same weight uploaded to the GPU through the context's accounting allocator (fp16_device_linear.cu).
std::unique_ptr<device_linear> load_f16_device_linear(const linear_request& request, device_context& context);
#endif

}  // namespace qbench
