#pragma once
/// Accounting of the large host buffers (checkpoint staging, calibration activations, quantization workspace)
/// against an optional budget: the emulated instance's host RAM. Exceeding it throws out_of_memory(host), which the
/// runner records as outcome `oom_host`. Small allocations are not tracked; the child's peak RSS is reported beside.
#include <cstdint>
#include <string>

namespace qbench {

class host_memory {
public:
    /// 0 = no budget.
    static void set_budget(std::uint64_t bytes);
    static std::uint64_t budget();
    /// Accounts `bytes` for `what`; throws out_of_memory(host) if the budget would be exceeded.
    static void acquire(std::uint64_t bytes, const std::string& what);
    static void release(std::uint64_t bytes);
    static std::uint64_t current();
    static std::uint64_t peak();
    static void reset_peak();
};

/// RAII holder of an accounted host buffer size.
class host_reservation {
public:
    host_reservation() = default;
    host_reservation(std::uint64_t bytes, const std::string& what) : m_bytes(bytes) { host_memory::acquire(bytes, what); }
    ~host_reservation() { reset(); }
    host_reservation(host_reservation&& o) noexcept : m_bytes(o.m_bytes) { o.m_bytes = 0; }
    host_reservation& operator=(host_reservation&& o) noexcept {
        if (this != &o) {
            reset();
            m_bytes = o.m_bytes;
            o.m_bytes = 0;
        }
        return *this;
    }
    host_reservation(const host_reservation&) = delete;
    host_reservation& operator=(const host_reservation&) = delete;
    void reset() {
        if (m_bytes) host_memory::release(m_bytes);
        m_bytes = 0;
    }
    std::uint64_t bytes() const { return m_bytes; }

private:
    std::uint64_t m_bytes = 0;
};

}  // namespace qbench
