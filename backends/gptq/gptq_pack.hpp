#pragma once
/// Packing and unpacking of the AutoGPTQ tensors (layout in gptq_format.hpp), and the unpacked form every other
/// part of the backend works with. CPU reference code: plain loops, the oracle for the kernels.
#include <cstdint>
#include <span>
#include <vector>

namespace qbench::gptq {

/// A quantized linear layer, unpacked: what the GPTQ algorithm produces and what a packed layer decodes to.
struct quantized_linear {
    std::int64_t in_features = 0;   ///< K
    std::int64_t out_features = 0;  ///< N
    std::int64_t bits = 4;
    std::int64_t group_size = 128;  ///< -1 = one group
    std::vector<std::uint8_t> codes;  ///< [N][K] integer weights in [0, maxq]
    std::vector<float> scales;        ///< [G][N]
    std::vector<std::uint8_t> zeros;  ///< [G][N] true zero points in [0, maxq] (not minus one)
    std::vector<std::int32_t> g_idx;  ///< [K]

    std::int64_t groups() const;
    /// W[n, k] = scales[g, n] * (codes[n, k] - zeros[g, n]), g = g_idx[k]; [N][K] floats.
    std::vector<float> dequantize() const;
    /// Throws std::invalid_argument when sizes or values are inconsistent.
    void validate() const;
};

/// The four tensors of an AutoGPTQ layer (scales as fp16 bits).
struct packed_linear {
    std::int64_t in_features = 0;
    std::int64_t out_features = 0;
    std::int64_t bits = 4;
    std::int64_t group_size = 128;
    std::vector<std::int32_t> qweight;  ///< [qweight_rows(K, bits)][N]
    std::vector<std::int32_t> qzeros;   ///< [G][qzeros_cols(N, bits)]
    std::vector<std::uint16_t> scales;  ///< [G][N] fp16 bits
    std::vector<std::int32_t> g_idx;    ///< [K]
};

/// Packs one run of 32 values (each < 2^bits) into `bits` words: value v at stream bits [bits*v, bits*v + bits).
void pack_run(const std::uint32_t* values, std::int64_t bits, std::uint32_t* words);
/// Inverse of pack_run.
void unpack_run(const std::uint32_t* words, std::int64_t bits, std::uint32_t* values);

/// qweight from codes given input-major ([K][N], as qweight is laid out); rows past K are padding (code 0).
std::vector<std::int32_t> pack_qweight(std::span<const std::uint8_t> codes_kn, std::int64_t in_features,
                                       std::int64_t out_features, std::int64_t bits);
/// codes [K][N] from qweight.
std::vector<std::uint8_t> unpack_qweight(std::span<const std::int32_t> qweight, std::int64_t in_features,
                                         std::int64_t out_features, std::int64_t bits);
/// qzeros from true zeros [G][N]: stores (z - 1) & maxq.
std::vector<std::int32_t> pack_qzeros(std::span<const std::uint8_t> zeros, std::int64_t groups,
                                      std::int64_t out_features, std::int64_t bits);
/// True zeros [G][N] from qzeros: (stored + 1) & maxq.
std::vector<std::uint8_t> unpack_qzeros(std::span<const std::int32_t> qzeros, std::int64_t groups,
                                        std::int64_t out_features, std::int64_t bits);

/// AutoGPTQ `pack`'s integer weights: from the fake-quantized weight as the layer stores it (fp16 bits, [N][K]),
/// fp32 scales and zeros [G][N] and g_idx: intweight[k, n] = round((W[n,k] + z*s) / fp16(s)), clamped to
/// [0, maxq] (see gptq_format.hpp). Returns codes [N][K].
std::vector<std::uint8_t> intweight_from_fake_quant(std::span<const std::uint16_t> weight_f16, std::span<const float> scales,
                                                    std::span<const float> zeros, std::span<const std::int32_t> g_idx,
                                                    std::int64_t in_features, std::int64_t out_features,
                                                    std::int64_t bits);

/// Packs an unpacked layer into AutoGPTQ tensors (scales rounded to fp16).
packed_linear pack(const quantized_linear& q);
/// Unpacks AutoGPTQ tensors (scales become the floats of their fp16 values). Validates shapes and g_idx range.
quantized_linear unpack(const packed_linear& p);

}  // namespace qbench::gptq
