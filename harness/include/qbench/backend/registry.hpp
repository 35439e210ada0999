#pragma once
/// Backends by name. Filled by register_builtin_backends() (backends/register_builtin.cpp): the one list of backends.
#include "qbench/backend/backend.hpp"

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {

class backend_registry {
public:
    void add(std::unique_ptr<backend> b);
    /// nullptr when unknown.
    const backend* find(std::string_view name) const;
    std::vector<const backend*> all() const;

private:
    std::map<std::string, std::unique_ptr<backend>, std::less<>> m_backends;
};

/// Registers fp16, gptq and bnb.
void register_builtin_backends(backend_registry& registry);
/// A registry with the built-in backends (constructed once).
const backend_registry& builtin_backends();

}  // namespace qbench
