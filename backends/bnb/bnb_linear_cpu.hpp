#pragma once
/// CPU reference linears of the bitsandbytes formats (plug into the CPU reference engine). Semantics are those of
/// bnb_quant_ref.hpp; outputs are fp16 values (generation.hpp's contract).
#include "backends/bnb/bnb_format.hpp"
#include "qbench/backend/cpu_linear.hpp"

#include <memory>

namespace qbench::bnb {

/// NF4 / FP4 linear: y = fp16( x . W_deq^T ) with W_deq = fp16(code * absmax) dequantized one row at a time.
std::unique_ptr<cpu_linear> make_4bit_cpu_linear(quant_4bit_weight weight);
/// LLM.int8() linear with the given outlier threshold (0 disables the decomposition).
std::unique_ptr<cpu_linear> make_int8_cpu_linear(int8_weight weight, float threshold);

}  // namespace qbench::bnb
