#pragma once
// Helpers of the GPU tests: one device context per test binary, fp16 transfers, fresh random inputs, poisoned
// outputs and the error measures the checks use.
#include "cuda/cuda_check.cuh"
#include "cuda/device_context.cuh"

#include "qbench/common/counter_rng.hpp"
#include "qbench/common/half.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace qbench::test {

/// The test binary's context, created on first use and never destroyed (no CUDA calls during static teardown).
inline device_context& context() {
    static device_context* ctx = new device_context();
    return *ctx;
}

/// A fresh seed per call (printed by the tests through CAPTURE so a failure can be replayed).
inline std::uint64_t fresh_seed() {
    static std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

/// n fp16 values (as floats): normal(0, scale) from the counter RNG, rounded to fp16.
inline std::vector<float> random_halves(std::size_t n, float scale, std::uint64_t seed) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = round_to_half(normal01(seed, i) * scale);
    return v;
}

inline device_buffer to_device_f16(const std::vector<float>& values) {
    std::vector<std::uint16_t> bits(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) bits[i] = float_to_half(values[i]);
    device_buffer b = context().allocate(std::max<std::size_t>(bits.size() * 2, 16), "test input");
    QB_CUDA_CHECK(cudaMemcpy(b.get(), bits.data(), bits.size() * 2, cudaMemcpyHostToDevice));
    return b;
}

template <class T>
device_buffer to_device(const std::vector<T>& values) {
    device_buffer b = context().allocate(std::max<std::size_t>(values.size() * sizeof(T), 16), "test input");
    QB_CUDA_CHECK(cudaMemcpy(b.get(), values.data(), values.size() * sizeof(T), cudaMemcpyHostToDevice));
    return b;
}

/// Waits for the context's stream, then copies n fp16 values back as floats.
inline std::vector<float> from_device_f16(const void* ptr, std::size_t n) {
    QB_CUDA_CHECK(cudaStreamSynchronize(context().stream()));
    std::vector<std::uint16_t> bits(n);
    QB_CUDA_CHECK(cudaMemcpy(bits.data(), ptr, n * 2, cudaMemcpyDeviceToHost));
    std::vector<float> out(n);
    for (std::size_t i = 0; i < n; ++i) out[i] = half_to_float(bits[i]);
    return out;
}

template <class T>
std::vector<T> from_device(const void* ptr, std::size_t n) {
    QB_CUDA_CHECK(cudaStreamSynchronize(context().stream()));
    std::vector<T> out(n);
    QB_CUDA_CHECK(cudaMemcpy(out.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost));
    return out;
}

/// An fp16 output buffer filled with NaN (0xffff), so an element the kernel never writes cannot pass.
inline device_buffer poisoned(std::size_t halves) {
    device_buffer b = context().allocate(std::max<std::size_t>(halves * 2, 16), "test output");
    // On the context's stream, which does not wait for the legacy default stream (non-blocking): the kernels under
    // test run on it, after the poison.
    QB_CUDA_CHECK(cudaMemsetAsync(b.get(), 0xff, b.size(), context().stream()));
    return b;
}

/// ||a - ref|| / ||ref|| (NaN anywhere gives NaN, which fails every bound).
inline double rel_l2(const std::vector<float>& a, const std::vector<float>& ref) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const double d = static_cast<double>(a[i]) - ref[i];
        num += d * d;
        den += static_cast<double>(ref[i]) * ref[i];
    }
    return std::sqrt(num / std::max(den, 1e-300));
}

/// Distance in fp16 units in the last place (both must be fp16 values; NaN gives a huge distance).
inline int half_ulps(float a, float b) {
    if (std::isnan(a) || std::isnan(b)) return 1 << 20;
    auto ordered = [](float f) {
        const int h = float_to_half(f);
        return (h & 0x8000) ? -(h & 0x7fff) : h;
    };
    return std::abs(ordered(a) - ordered(b));
}

struct ulp_summary {
    int max_ulps = 0;
    double exact_fraction = 0;
};
inline ulp_summary compare_ulps(const std::vector<float>& a, const std::vector<float>& ref) {
    ulp_summary s;
    std::size_t exact = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const int u = half_ulps(a[i], ref[i]);
        s.max_ulps = std::max(s.max_ulps, u);
        exact += u == 0;
    }
    s.exact_fraction = a.empty() ? 1.0 : static_cast<double>(exact) / a.size();
    return s;
}

}  // namespace qbench::test
