#pragma once
/// The GPTQ quantizer's scalar arithmetic (IST-DASLab gptq `quant.py::Quantizer`, per-channel, mse off), shared by
/// the CPU reference and the CUDA kernels so both round at the same points. fp32 throughout, like the reference;
/// rounding is half-to-even (torch.round), via rintf on the device and nearbyint on the host.
#include <cmath>
#include <cstdint>

#ifndef QB_GPTQ_HD
#if defined(__CUDACC__)
#define QB_GPTQ_HD __host__ __device__
#else
#define QB_GPTQ_HD
#endif
#endif

namespace qbench::gptq {

/// Scale and zero point of one output channel (one row of W, within one group).
struct channel_params {
    float scale = 1.0f;
    float zero = 0.0f;
};

QB_GPTQ_HD inline float round_even(float x) {
#if defined(__CUDA_ARCH__)
    return rintf(x);
#else
    return std::nearbyint(x);
#endif
}

/// From the channel's min and max over the group (any values; the zero clamp happens here).
QB_GPTQ_HD inline channel_params params_from_range(float x_min, float x_max, std::int32_t maxq, bool sym) {
    float xmin = x_min < 0.0f ? x_min : 0.0f;  // xmin = min(min(x), 0)
    float xmax = x_max > 0.0f ? x_max : 0.0f;  // xmax = max(max(x), 0)
    if (sym) {
        const float a = xmin < 0.0f ? -xmin : xmin;
        xmax = a > xmax ? a : xmax;
        if (xmin < 0.0f) xmin = -xmax;  // only where xmin < 0: an all-positive row keeps xmin = 0 (as published)
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }
    channel_params p;
    p.scale = (xmax - xmin) / static_cast<float>(maxq);
    p.zero = sym ? static_cast<float>(maxq + 1) / 2.0f : round_even(-xmin / p.scale);
    return p;
}

/// Integer code of x: clamp(round(x / scale) + zero, 0, maxq).
QB_GPTQ_HD inline float quantize_code(float x, channel_params p, std::int32_t maxq) {
    float q = round_even(x / p.scale) + p.zero;
    q = q < 0.0f ? 0.0f : q;
    const float m = static_cast<float>(maxq);
    return q > m ? m : q;
}

/// The fake-quantized value scale * (q - zero).
QB_GPTQ_HD inline float dequantize_code(float q, channel_params p) { return p.scale * (q - p.zero); }

}  // namespace qbench::gptq
