#pragma once
/// What the CPU and GPU loaders of the bnb backend share: the cell's format parameters, reading the FP16 weight a
/// linear is quantized from, and reading (and checking) a linear that a checkpoint already holds in bitsandbytes'
/// serialization.
#include "backends/bnb/bnb_format.hpp"
#include "qbench/backend/backend.hpp"
#include "qbench/common/tensor.hpp"

#include <optional>

namespace qbench::bnb {

/// quant_type / blocksize / double_quant of a 4-bit cell.
quant_4bit_params params_of(const cell_spec& cell);

/// Reads request.prefix + ".weight": F16 [out_features, in_features], else input_error naming file and tensor.
host_tensor read_f16_weight(const linear_request& request);

/// The prequantized 4-bit linear when the checkpoint holds one (checked against the request's shape and the cell's
/// quant_type, blocksize and double_quant; a mismatch is an input_error), nullopt when it holds the FP16 weight.
std::optional<quant_4bit_weight> read_prequantized_4bit(const linear_request& request);
/// The same for LLM.int8() (a P.SCB key).
std::optional<int8_weight> read_prequantized_int8(const linear_request& request);

}  // namespace qbench::bnb
