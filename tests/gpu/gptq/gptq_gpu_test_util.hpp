#pragma once
// Helpers of the GPTQ GPU tests and benches: random quantized layers, a threaded CPU reference of x·W^T, device
// buffers filled from host vectors.
#include "backends/gptq/gptq_format.hpp"
#include "backends/gptq/gptq_pack.hpp"
#include "random_quantized_layer.hpp"

#include "cuda/cuda_check.cuh"
#include "cuda/device_context.cuh"

#include "qbench/common/counter_rng.hpp"
#include "qbench/common/half.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <thread>
#include <vector>

namespace qbench::gptq::test {

inline std::size_t sz(std::int64_t v) { return static_cast<std::size_t>(v); }

/// Sets an environment knob of the GPTQ linear (read when a layer is made) for a scope, restoring what was there.
struct env_choice {
    env_choice(const char* name, const char* value) : m_name(name) {
        if (const char* before = std::getenv(name)) m_before = before, m_had = true;
        setenv(name, value, 1);
    }
    ~env_choice() {
        if (m_had) setenv(m_name, m_before.c_str(), 1);
        else unsetenv(m_name);
    }
    const char* m_name;
    std::string m_before;
    bool m_had = false;
};

/// A random layer (random_quantized_layer.hpp) with scales so that W has the spread of a real layer (about
/// 1/sqrt(K) per weight).
inline quantized_linear random_layer(std::int64_t K, std::int64_t N, std::int64_t bits, std::int64_t gs, bool act_order,
                                     std::uint64_t seed) {
    const auto levels = static_cast<float>(max_code(bits) + 1);
    const float base = 2.0f / (std::sqrt(static_cast<float>(K)) * levels);
    return random_quantized_layer(K, N, bits, gs, act_order, seed, "gptq-gpu-layer",
                                  [base](float u) { return base * (0.5f + u); });
}

/// fp16-valued normal inputs [rows][K].
inline std::vector<float> random_inputs(std::int64_t rows, std::int64_t K, std::uint64_t seed) {
    const auto key = stream_key(seed, hash_string("gptq-gpu-x"));
    std::vector<float> x(sz(rows * K));
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = round_to_half(normal01(key, i));
    return x;
}

/// y[r][n] = sum_k x[r][k] W[n][k] in double (no rounding), threaded over n.
inline std::vector<double> reference_gemm(const std::vector<float>& w, std::int64_t N, std::int64_t K,
                                          const std::vector<float>& x, std::int64_t rows) {
    std::vector<double> y(sz(rows * N));
    const unsigned threads = std::max(1u, std::min(32u, std::thread::hardware_concurrency()));
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            for (std::int64_t n = t; n < N; n += threads)
                for (std::int64_t r = 0; r < rows; ++r) {
                    double s = 0;
                    const float* wr = &w[sz(n * K)];
                    const float* xr = &x[sz(r * K)];
                    for (std::int64_t k = 0; k < K; ++k) s += static_cast<double>(xr[k]) * wr[k];
                    y[sz(r * N + n)] = s;
                }
        });
    for (auto& th : pool) th.join();
    return y;
}

inline std::vector<std::uint16_t> to_half_bits(const std::vector<float>& v) {
    std::vector<std::uint16_t> h(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) h[i] = float_to_half(v[i]);
    return h;
}

template <class T>
device_buffer upload(device_context& ctx, const std::vector<T>& v) {
    device_buffer b = ctx.allocate(std::max<std::size_t>(v.size() * sizeof(T), 16), "test data");
    if (!v.empty()) ctx.upload(b.get(), v.data(), v.size() * sizeof(T));
    return b;
}

template <class T>
std::vector<T> download(const void* p, std::size_t count) {
    std::vector<T> v(count);
    QB_CUDA_CHECK(cudaMemcpy(v.data(), p, count * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
}

/// Relative L2 error of fp16 results against a double reference, and the count of non-finite values.
struct comparison {
    double rel_l2 = 0;
    double max_abs = 0;
    std::int64_t nonfinite = 0;
};
inline comparison compare(const std::vector<std::uint16_t>& got, const std::vector<double>& ref, std::size_t count) {
    comparison c;
    double num = 0, den = 0;
    for (std::size_t i = 0; i < count; ++i) {
        const double g = half_to_float(got[i]);
        if (!std::isfinite(g)) {
            ++c.nonfinite;
            continue;
        }
        num += (g - ref[i]) * (g - ref[i]);
        den += ref[i] * ref[i];
        c.max_abs = std::max(c.max_abs, std::abs(g - ref[i]));
    }
    c.rel_l2 = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    return c;
}

}  // namespace qbench::gptq::test
