#include "qbench/backend/backend.hpp"

#include "qbench/common/errors.hpp"

namespace qbench {

namespace {
// The shape a backend returns must be the shape the model asked for; checked once here for every backend.
template <class Linear>
std::unique_ptr<Linear> checked(std::unique_ptr<Linear> linear, const linear_request& r, std::string_view backend) {
    if (!linear) throw error(std::string(backend) + " backend returned no layer for " + r.prefix);
    if (linear->in_features() != r.in_features || linear->out_features() != r.out_features)
        throw error(std::string(backend) + " backend loaded " + r.prefix + " as [" +
                    std::to_string(linear->out_features()) + ", " + std::to_string(linear->in_features()) +
                    "], expected [" + std::to_string(r.out_features) + ", " + std::to_string(r.in_features) + "]");
    return linear;
}
}  // namespace

std::unique_ptr<cpu_linear> backend::load_cpu_linear(const linear_request& request) const {
    return checked(do_load_cpu_linear(request), request, name());
}

std::unique_ptr<device_linear> backend::load_device_linear(const linear_request& request,
                                                           device_context& context) const {
    return checked(do_load_device_linear(request, context), request, name());
}

std::unique_ptr<device_linear> backend::do_load_device_linear(const linear_request&, device_context&) const {
    throw unsupported_error(std::string(name()) + " backend has no CUDA path in this build");
}

}  // namespace qbench
