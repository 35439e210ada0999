#pragma once
/// Element types (the safetensors dtype set) and a host tensor that owns its bytes.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {

/// Element types, named as safetensors names them.
enum class dtype : std::uint8_t {
    boolean, u8, i8, f8_e5m2, f8_e4m3, i16, u16, f16, bf16, i32, u32, f32, f64, i64, u64,
    count_
};

struct dtype_traits {
    dtype id;
    std::string_view name;  ///< safetensors spelling: "F16", "I32", ...
    int bits;               ///< storage bits per element
};

/// The table of element types (indexed by dtype).
std::span<const dtype_traits> dtype_table();
const dtype_traits& traits_of(dtype t);
std::optional<dtype> parse_dtype(std::string_view safetensors_name);
inline std::size_t dtype_size(dtype t) { return static_cast<std::size_t>(traits_of(t).bits / 8); }

/// A dense row-major tensor on the host that owns its bytes.
struct host_tensor {
    dtype type = dtype::f32;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> data;

    std::int64_t numel() const {
        std::int64_t n = 1;
        for (auto d : shape) n *= d;
        return n;
    }
    std::size_t byte_size() const { return data.size(); }

    /// Typed views; T must match the element size of `type` (checked in debug builds).
    template <class T> std::span<T> as() { return {reinterpret_cast<T*>(data.data()), data.size() / sizeof(T)}; }
    template <class T> std::span<const T> as() const {
        return {reinterpret_cast<const T*>(data.data()), data.size() / sizeof(T)};
    }

    /// A zero-filled tensor of the given type and shape.
    static host_tensor zeros(dtype type, std::vector<std::int64_t> shape);
};

/// Converts any floating tensor (f16, bf16, f32, f64) to a vector of floats.
std::vector<float> to_float_vector(const host_tensor& t);
/// Makes an f16 tensor from floats (round to nearest even).
host_tensor make_f16_tensor(std::span<const float> values, std::vector<std::int64_t> shape);
/// Makes an f32 tensor from floats.
host_tensor make_f32_tensor(std::span<const float> values, std::vector<std::int64_t> shape);

/// "[4096, 11008]" for messages.
std::string shape_to_string(std::span<const std::int64_t> shape);

}  // namespace qbench
