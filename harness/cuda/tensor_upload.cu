#include "cuda/tensor_upload.cuh"

#include "qbench/common/errors.hpp"
#include "qbench/common/half.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace qbench {

device_buffer upload_f16_tensor(device_context& context, const tensor_source& source, std::string_view name,
                                std::span<const std::int64_t> shape) {
    const tensor_info& info = source.require(name);
    if (!std::equal(info.shape.begin(), info.shape.end(), shape.begin(), shape.end()))
        throw input_error(source.path().string(), "tensor '" + info.name + "'",
                          "has shape " + shape_to_string(info.shape) + ", expected " + shape_to_string(shape));
    std::int64_t numel = 1;
    for (auto d : shape) numel *= d;
    const std::uint64_t bytes = static_cast<std::uint64_t>(numel) * 2;
    device_buffer buffer = context.allocate(bytes, info.name);
    if (info.type == dtype::f16) {
        std::byte* staging = context.staging(bytes);
        source.read_into(name, std::span<std::byte>(staging, bytes));
        context.upload(buffer.get(), staging, bytes);
        return buffer;
    }
    if (info.type != dtype::f32 && info.type != dtype::bf16 && info.type != dtype::f64)
        throw input_error(source.path().string(), "tensor '" + info.name + "'",
                          "has dtype " + std::string(traits_of(info.type).name) + ", expected a floating type");
    const std::vector<float> values = to_float_vector(source.read(name));
    std::byte* staging = context.staging(bytes);
    auto* out = reinterpret_cast<std::uint16_t*>(staging);
    for (std::int64_t i = 0; i < numel; ++i) out[i] = float_to_half(values[static_cast<std::size_t>(i)]);
    context.upload(buffer.get(), staging, bytes);
    return buffer;
}

}  // namespace qbench
