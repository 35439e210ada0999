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

}  // namespace qbench
