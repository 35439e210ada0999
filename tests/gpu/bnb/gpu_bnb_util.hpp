#pragma once
// Helpers of the bnb GPU tests and benchmark: a minimal device buffer (plain cudaMalloc, so kernels are tested
// apart from the accounting allocator), fp16 conversions of host vectors, poisoning, and the error bound used to
// compare a GPU product with the CPU reference.
#include "qbench/common/half.hpp"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace qbench::bnb::test {

inline void cuda_ok(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

template <class T>
class dev {
public:
    dev() = default;
    explicit dev(std::size_t n) : m_n(n) {
        if (n) cuda_ok(cudaMalloc(&m_p, n * sizeof(T)), "cudaMalloc");
    }
    explicit dev(const std::vector<T>& host) : dev(host.size()) { upload(host); }
    ~dev() {
        if (m_p) cudaFree(m_p);
    }
    dev(dev&& o) noexcept : m_p(o.m_p), m_n(o.m_n) {
        o.m_p = nullptr;
        o.m_n = 0;
    }
    dev& operator=(dev&& o) noexcept {
        std::swap(m_p, o.m_p);
        std::swap(m_n, o.m_n);
        return *this;
    }
    T* get() const { return m_p; }
    std::size_t size() const { return m_n; }
    void upload(const std::vector<T>& host) {
        if (host.size() != m_n) throw std::runtime_error("upload: size mismatch");
        if (m_n) cuda_ok(cudaMemcpy(m_p, host.data(), m_n * sizeof(T), cudaMemcpyHostToDevice), "upload");
    }
    std::vector<T> download() const {
        std::vector<T> host(m_n);
        cuda_ok(cudaDeviceSynchronize(), "kernel");
        if (m_n) cuda_ok(cudaMemcpy(host.data(), m_p, m_n * sizeof(T), cudaMemcpyDeviceToHost), "download");
        return host;
    }
    /// Fills every byte with 0xFF: fp16 NaN, int8 -1, float NaN; an element a kernel forgot to write stands out.
    /// Waits for the fill: it runs on the legacy stream, which the kernels' non-blocking streams do not wait for.
    void poison() {
        if (m_n) cuda_ok(cudaMemset(m_p, 0xFF, m_n * sizeof(T)), "poison");
        cuda_ok(cudaDeviceSynchronize(), "poison");
    }

private:
    T* m_p = nullptr;
    std::size_t m_n = 0;
};

inline std::vector<std::uint16_t> to_half_bits(const std::vector<float>& v) {
    std::vector<std::uint16_t> out(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) out[i] = float_to_half(v[i]);
    return out;
}

inline dev<__half> to_device_half(const std::vector<float>& v) {
    const std::vector<std::uint16_t> bits = to_half_bits(v);
    dev<__half> d(v.size());
    cuda_ok(cudaMemcpy(d.get(), bits.data(), bits.size() * 2, cudaMemcpyHostToDevice), "upload half");
    return d;
}

inline std::vector<float> from_device_half(const dev<__half>& d) {
    std::vector<std::uint16_t> bits(d.size());
    cuda_ok(cudaDeviceSynchronize(), "kernel");
    cuda_ok(cudaMemcpy(bits.data(), d.get(), bits.size() * 2, cudaMemcpyDeviceToHost), "download half");
    std::vector<float> out(bits.size());
    for (std::size_t i = 0; i < bits.size(); ++i) out[i] = half_to_float(bits[i]);
    return out;
}

/// Per-output scale of a product: S[r, o] = sum_k |x[r, k]| * |w[o, k]|.
inline std::vector<double> abs_product(const std::vector<float>& x, const std::vector<float>& w, std::int64_t m,
                                       std::int64_t n, std::int64_t k) {
    std::vector<double> s(static_cast<std::size_t>(m * n));
    for (std::int64_t o = 0; o < n; ++o)
        for (std::int64_t r = 0; r < m; ++r) {
            double acc = 0;
            for (std::int64_t c = 0; c < k; ++c)
                acc += std::fabs(static_cast<double>(x[static_cast<std::size_t>(r * k + c)])) *
                       std::fabs(w[static_cast<std::size_t>(o * k + c)]);
            s[static_cast<std::size_t>(r * n + o)] = acc;
        }
    return s;
}

/// Result of comparing a GPU output with the reference under |got - ref| <= rel_s * S + rel_y * |ref| + abs.
struct comparison {
    std::int64_t bad = 0;        ///< elements over the bound (NaN counts: unwritten or wrong)
    std::int64_t first_bad = -1;
    double worst_ratio = 0;      ///< max |got - ref| / bound
    double rel_l2 = 0;           ///< ||got - ref|| / ||ref||
};

inline comparison compare(const std::vector<float>& got, const std::vector<float>& ref, const std::vector<double>& s,
                          double rel_s, double rel_y, double abs) {
    comparison c;
    double e2 = 0, r2 = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        const double d = std::fabs(static_cast<double>(got[i]) - ref[i]);
        const double bound = rel_s * s[i] + rel_y * std::fabs(ref[i]) + abs;
        if (!(d <= bound)) {
            if (c.first_bad < 0) c.first_bad = static_cast<std::int64_t>(i);
            ++c.bad;
        }
        if (std::isfinite(d)) c.worst_ratio = std::max(c.worst_ratio, d / bound);
        e2 += std::isfinite(d) ? d * d : 1e30;
        r2 += static_cast<double>(ref[i]) * ref[i];
    }
    c.rel_l2 = std::sqrt(e2 / std::max(r2, 1e-30));
    return c;
}

}  // namespace qbench::bnb::test
