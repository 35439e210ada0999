#pragma once
// The CUDA executor's measurement switches, read from the environment at each generate so that A/B runs can flip them
// within one process: where the RMSNorm is folded into the linears, which decode-step kernels are ablated, and whether
// the small kernels trigger their successor early. Private to the executor (cuda_executor_impl.cuh).
#include "cuda/fused_linear.hpp"

#include <string>

namespace qbench::executor_detail {

// Where the RMSNorm is folded into the linears: QBENCH_FP16_FOLD_NORM=1 wherever a backend can, =0 nowhere, unset
// where the backend prefers it (fused_linear::prefers_folded_norm). Read at each generate, for A/B runs in one process.
enum class fold_choice { backend, on, off };
fold_choice fold_norm_from_env();
bool folds(fold_choice choice, const fused_linear* f);

// Measurement only: QBENCH_DECODE_ABLATE=attention,norm (read at each generate) leaves the named kernels out of
// decode steps, so an A/B run shows what each costs inside the step (bench_decode --ablate-ab 1). The outputs are
// wrong while it is set, and the kernel path string says "+ablate-..." so such a figure cannot pass for a real one.
enum ablate_bits : unsigned { k_ablate_attention = 1, k_ablate_norm = 2 };
unsigned ablate_from_env();
std::string ablate_suffix(unsigned bits);

// The RMSNorm and attention kernels let the next GEMV launch before their own wait (launch.cuh: early trigger), so
// its first weight loads overlap the drain of the GEMV before them. QBENCH_PDL_EARLY_TRIGGER=0 (read at each
// generate) restores the trigger after the wait, for A/B runs (bench_decode variant "graph+pdl-late-trigger").
bool early_trigger_from_env();

// QBENCH_DECODE_STACK=1 (read at each generate): decode steps at one row run the backend's persistent layer stack where
// it offers one (decode_stack.hpp). Off by default: the GPTQ stack is bit-identical to the launched layers but measured
// 1.8x slower on the H100 (backends/gptq/PERF_NOTES.md, sixteenth session), so it is for measurement until it wins.
bool decode_stack_from_env();

// QBENCH_NORM_IN_EPILOGUE=1 (read at each generate): o_proj and down_proj add into the residual stream and form the
// next RMSNorm in their own launch where the backend offers it (fused_linear::forward_residual_normed: the launch's
// last CTA), so no RMSNorm kernel runs between them and the next linears. Off by default: bit-identical (its GPU
// tests pass) but measured slower end to end on the H100 (backends/gptq/PERF_NOTES.md, nineteenth session).
bool norm_in_epilogue_from_env();

}  // namespace qbench::executor_detail
