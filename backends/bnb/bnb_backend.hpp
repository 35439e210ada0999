#pragma once
/// The bnb backend: bitsandbytes-style NF4/FP4 blockwise 4-bit (optional double quantization) and LLM.int8(),
/// quantized on the GPU while the FP16 checkpoint loads; bits 16 is the fp16 path, bits 2 and 3 are unsupported.
#include "qbench/backend/backend.hpp"

#include <memory>

namespace qbench {
/// Creates the "bnb" backend (registered by register_builtin_backends()).
std::unique_ptr<backend> make_bnb_backend();
}
