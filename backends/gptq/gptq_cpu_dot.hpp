#pragma once
/// The CPU reference's dot product: float, eight fixed partial sums combined in a fixed order. Deterministic (the
/// order never depends on threads or data) and about ten times faster than a scalar double loop, because the eight
/// independent lanes vectorize; the engine's contract allows float accumulation for a linear.
#include <cstdint>

namespace qbench::gptq {

inline float dot_f32(const float* a, const float* b, std::int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

}  // namespace qbench::gptq
