// The one list of built-in backends. Adding a backend = one line here plus its folder.
#include "backends/bnb/bnb_backend.hpp"
#include "backends/fp16/fp16_backend.hpp"
#include "backends/gptq/gptq_backend.hpp"
#include "qbench/backend/registry.hpp"

namespace qbench {

void register_builtin_backends(backend_registry& registry) {
    registry.add(make_fp16_backend());
    registry.add(make_gptq_backend());
    registry.add(make_bnb_backend());
}

// Lives here, beside the list, so the interface library never depends on the backends library.
const backend_registry& builtin_backends() {
    static const backend_registry registry = [] {
        backend_registry r;
        register_builtin_backends(r);
        return r;
    }();
    return registry;
}

}  // namespace qbench
