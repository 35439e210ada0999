#include "qbench/backend/registry.hpp"

#include "qbench/common/errors.hpp"

namespace qbench {

void backend_registry::add(std::unique_ptr<backend> b) {
    std::string key(b->name());
    if (m_backends.count(key)) throw error("backend registered twice: " + key);
    m_backends.emplace(std::move(key), std::move(b));
}

const backend* backend_registry::find(std::string_view name) const {
    auto it = m_backends.find(name);
    return it == m_backends.end() ? nullptr : it->second.get();
}

std::vector<const backend*> backend_registry::all() const {
    std::vector<const backend*> out;
    for (const auto& [name, b] : m_backends) out.push_back(b.get());
    return out;
}

}  // namespace qbench
