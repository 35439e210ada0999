#include "qbench/common/tensor.hpp"

#include "qbench/common/errors.hpp"
#include "qbench/common/half.hpp"

#include <array>
#include <cstring>

namespace qbench {

namespace {
constexpr std::array<dtype_traits, static_cast<std::size_t>(dtype::count_)> k_dtypes{{
    {dtype::boolean, "BOOL", 8}, {dtype::u8, "U8", 8},        {dtype::i8, "I8", 8},
    {dtype::f8_e5m2, "F8_E5M2", 8}, {dtype::f8_e4m3, "F8_E4M3", 8}, {dtype::i16, "I16", 16},
    {dtype::u16, "U16", 16},     {dtype::f16, "F16", 16},     {dtype::bf16, "BF16", 16},
    {dtype::i32, "I32", 32},     {dtype::u32, "U32", 32},     {dtype::f32, "F32", 32},
    {dtype::f64, "F64", 64},     {dtype::i64, "I64", 64},     {dtype::u64, "U64", 64},
}};
// The table is indexed by the enum: each row must sit at its own id.
constexpr bool table_is_ordered() {
    for (std::size_t i = 0; i < k_dtypes.size(); ++i)
        if (static_cast<std::size_t>(k_dtypes[i].id) != i) return false;
    return true;
}
static_assert(table_is_ordered(), "dtype table rows must be in enum order");
}  // namespace

std::span<const dtype_traits> dtype_table() { return k_dtypes; }
const dtype_traits& traits_of(dtype t) { return k_dtypes.at(static_cast<std::size_t>(t)); }

std::optional<dtype> parse_dtype(std::string_view name) {
    for (const auto& row : k_dtypes)
        if (row.name == name) return row.id;
    return std::nullopt;
}

host_tensor host_tensor::zeros(dtype type, std::vector<std::int64_t> shape) {
    host_tensor t;
    t.type = type;
    t.shape = std::move(shape);
    t.data.assign(static_cast<std::size_t>(t.numel()) * dtype_size(type), std::byte{0});
    return t;
}

std::vector<float> to_float_vector(const host_tensor& t) {
    const auto n = static_cast<std::size_t>(t.numel());
    std::vector<float> out(n);
    switch (t.type) {
    case dtype::f16: {
        auto v = t.as<std::uint16_t>();
        for (std::size_t i = 0; i < n; ++i) out[i] = half_to_float(v[i]);
        break;
    }
    case dtype::bf16: {
        auto v = t.as<std::uint16_t>();
        for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_float(v[i]);
        break;
    }
    case dtype::f32: std::memcpy(out.data(), t.data.data(), n * sizeof(float)); break;
    case dtype::f64: {
        auto v = t.as<double>();
        for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(v[i]);
        break;
    }
    default: throw error("to_float_vector: tensor of type " + std::string(traits_of(t.type).name) + " is not floating");
    }
    return out;
}

host_tensor make_f16_tensor(std::span<const float> values, std::vector<std::int64_t> shape) {
    host_tensor t = host_tensor::zeros(dtype::f16, std::move(shape));
    if (static_cast<std::size_t>(t.numel()) != values.size()) throw error("make_f16_tensor: shape does not match values");
    auto out = t.as<std::uint16_t>();
    for (std::size_t i = 0; i < values.size(); ++i) out[i] = float_to_half(values[i]);
    return t;
}

host_tensor make_f32_tensor(std::span<const float> values, std::vector<std::int64_t> shape) {
    host_tensor t = host_tensor::zeros(dtype::f32, std::move(shape));
    if (static_cast<std::size_t>(t.numel()) != values.size()) throw error("make_f32_tensor: shape does not match values");
    std::memcpy(t.data.data(), values.data(), values.size() * sizeof(float));
    return t;
}

std::string shape_to_string(std::span<const std::int64_t> shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

}  // namespace qbench
