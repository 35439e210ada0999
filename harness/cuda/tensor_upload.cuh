#pragma once
/// Loading a checkpoint tensor onto the GPU as fp16, through the accounting allocator.
#include "cuda/device_context.cuh"

#include "qbench/io/tensor_source.hpp"

#include <cstdint>
#include <span>
#include <string_view>

namespace qbench {

/// Reads tensor `name` of `source`, which must have shape `shape` (else input_error naming the checkpoint and the
/// tensor), and uploads it as fp16: an F16 tensor is read straight into the pinned staging buffer; F32, F64 and
/// BF16 are rounded to fp16 first (as loading with torch_dtype=float16 does).
device_buffer upload_f16_tensor(device_context& context, const tensor_source& source, std::string_view name,
                                std::span<const std::int64_t> shape);

}  // namespace qbench
