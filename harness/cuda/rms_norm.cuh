#pragma once
/// RMSNorm with the residual add folded in (one pass over the row instead of two kernels).
#include "cuda/launch.cuh"

#include <cuda_fp16.h>

#include <cstdint>

namespace qbench {

/// For each of `rows` rows of width `hidden`: when `delta` is not null, x = fp16(x + delta) (the residual stream,
/// updated in place); then out = fp16( fp16(x * inv) * weight ), inv = float(1 / sqrt(mean(x^2) + eps)) with the
/// mean in double (rms_norm_ref).
void launch_rms_norm(__half* x, const __half* delta, const __half* weight, double eps, std::int64_t rows,
                     std::int64_t hidden, __half* out, const launch_options& o);

}  // namespace qbench
