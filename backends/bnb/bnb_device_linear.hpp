#pragma once
/// GPU linears of the bnb backend (CUDA builds only; host-only header). Loading reads the FP16 weight tensor by
/// tensor, uploads it to a transient device buffer and quantizes it there (bitsandbytes' Params4bit.cuda() /
/// Int8Params.cuda()), or uploads a linear the checkpoint already holds in bitsandbytes' serialization.
/// Both kinds also implement fused_linear (cuda/fused_linear.hpp) at batch 1: q/k/v in one team launch and gate/up
/// with the SwiGLU product in its epilogue, bit-identical to the separate forwards (bnb_gemv_team_*.cu).
#include "qbench/backend/backend.hpp"

#include <memory>

namespace qbench::bnb {

/// NF4 / FP4 (cell.bnb: quant_type, blocksize, double_quant, small_batch_path). Batch 1 runs the fused GEMV; larger
/// batches dequantize to fp16 and call cuBLAS, as bitsandbytes does, unless small_batch_path is "fused" (then batches
/// up to 8 stay on the fused kernel).
std::unique_ptr<device_linear> load_4bit_device_linear(const linear_request& request, device_context& context);
/// LLM.int8() with cell.bnb.int8_threshold.
std::unique_ptr<device_linear> load_int8_device_linear(const linear_request& request, device_context& context);

}  // namespace qbench::bnb
