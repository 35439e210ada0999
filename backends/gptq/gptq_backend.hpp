#pragma once
#include "qbench/backend/backend.hpp"

#include <memory>

namespace qbench {
/// gptq: AutoGPTQ-format artifacts quantized ahead of time (`qbench quantize`, cached by model, bits, group, options
/// and seed); exllama-style kernels on the GPU; lm_head stays fp16.
std::unique_ptr<backend> make_gptq_backend();
}
