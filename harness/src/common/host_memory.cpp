#include "qbench/common/host_memory.hpp"

#include "qbench/common/errors.hpp"

#include <atomic>
#include <mutex>

namespace qbench {

namespace {
std::mutex g_mutex;
std::uint64_t g_budget = 0, g_current = 0, g_peak = 0;
}  // namespace

void host_memory::set_budget(std::uint64_t bytes) {
    std::lock_guard lock(g_mutex);
    g_budget = bytes;
}
std::uint64_t host_memory::budget() {
    std::lock_guard lock(g_mutex);
    return g_budget;
}
void host_memory::acquire(std::uint64_t bytes, const std::string& what) {
    std::lock_guard lock(g_mutex);
    if (g_budget != 0 && g_current + bytes > g_budget) {
        const std::uint64_t available = g_budget > g_current ? g_budget - g_current : 0;
        throw out_of_memory(memory_kind::host, bytes, available,
                            "host RAM budget exceeded by " + what + ": requested " + std::to_string(bytes) +
                                " bytes, " + std::to_string(available) + " of " + std::to_string(g_budget) +
                                " available");
    }
    g_current += bytes;
    if (g_current > g_peak) g_peak = g_current;
}
void host_memory::release(std::uint64_t bytes) {
    std::lock_guard lock(g_mutex);
    g_current = bytes > g_current ? 0 : g_current - bytes;
}
std::uint64_t host_memory::current() {
    std::lock_guard lock(g_mutex);
    return g_current;
}
std::uint64_t host_memory::peak() {
    std::lock_guard lock(g_mutex);
    return g_peak;
}
void host_memory::reset_peak() {
    std::lock_guard lock(g_mutex);
    g_peak = g_current;
}

}  // namespace qbench
