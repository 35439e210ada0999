#pragma once
/// The phase table of the persistent GPTQ kernel (gptq_chain.cu), as the kernel reads it and as the host builds it:
/// shared by the chain's host code (gptq_chain.cu) and the decode stack's builder (gptq_decode_stack.cu). Internal to
/// the GPTQ backend; the public face is gptq_chain.cuh.
#include "backends/gptq/gptq_chain.cuh"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace qbench::gptq {

inline constexpr int k_attention_head_dim = 128;  ///< the unrolled attention instance the stack runs

enum : int { k_input_plain = 0, k_input_norm = 1 };

/// One linear of a phase: its mtiles are the phase's [tile0, tile0 + mtiles).
struct chain_part {
    const uint4* qweight = nullptr;
    const uint2* meta = nullptr;
    std::uint32_t* y = nullptr;  // output words
    int mtiles = 0;
    int tile0 = INT_MAX;  // INT_MAX: no such part
};

/// One phase as the kernel reads it (the table in the scratch). A paired phase (gate and up): part 0 and part 1 have
/// the same mtiles, a CTA owns the same mtiles of both (mtiles counts them once) and stores the SwiGLU product of each
/// pair into part 0's y, as v3's gate/up kernel does (each product formed once, by the CTA that owns it).
struct chain_phase {
    int attention = 0;  // 0: linears (parts), 1: attention
    int input = k_input_plain;
    int mtiles = 0, kblocks = 0, residual = 0, paired = 0;
    /// A linear phase before an attention phase: asks L2 for the rows that attention will read (the fields below, the
    /// attention phase's; prefetch_attention_rows), read from this entry so that no CTA loads the next one early.
    int prefetch_rows = 0;
    chain_part part[3];
    const std::uint32_t* x = nullptr;  // plain: the input; norm: the residual stream
    const __half* norm_weight = nullptr;
    double eps = 0;
    const std::uint32_t* res = nullptr;  // residual: the outputs are fp16(res + fp16(sum)), as forward_residual's
    // attention: the q, k and v rows the phase before wrote, the output row, and the decode state (prefetch_rows:
    // the caches, pos, slot_table, max_len, heads and kv_heads of the attention phase after)
    const std::uint32_t* q = nullptr;
    const std::uint32_t* k = nullptr;
    const std::uint32_t* v = nullptr;
    std::uint32_t* out = nullptr;
    __half* k_cache = nullptr;
    __half* v_cache = nullptr;
    const float* inv_freq = nullptr;
    const std::int32_t* pos = nullptr;
    const std::int32_t* slot_table = nullptr;
    long long max_len = 0;
    int heads = 0, kv_heads = 0;
    float scale = 0;
};

/// The host's view of a phase list: the phases, the words of every output the launch writes (re-armed before it), and
/// what sizes the grid.
struct phase_list {
    std::vector<chain_phase> phases;
    int max_kblocks = 0;
    int max_mtiles = 0;         // of unpaired phases
    int max_paired_mtiles = 0;  // of paired ones (a CTA takes twice its share of these)
    std::int64_t max_len = 0;  // the attention phases' context (0: none)
};

/// Sizes the grid for a phase list on this device (throws qbench::error when it cannot run).
chain_plan plan_phases(const phase_list& list, int bits);

/// Copies the table into the scratch (after the hint counter) and waits for the copy.
void upload_table(const std::vector<chain_phase>& phases, void* scratch, cudaStream_t stream);

/// The outputs re-armed (write_once.cuh), the counter zeroed, the cooperative launch.
void launch_phases(const chain_plan& plan, std::uint32_t* outputs, std::size_t output_words, void* scratch, cudaStream_t stream,
                   const chain_tuning& tuning);

/// A phase of linears reading one input (their outputs at ys).
chain_phase linear_phase(std::initializer_list<std::pair<chain_linear, std::uint32_t*>> parts);

/// Why a linear cannot be a part of a phase (empty: it can), worded to follow the linear's name.
std::string linear_refusal(const chain_linear& l);

/// Widens the list's sizes (k-blocks, mtiles) to a linear phase's.
void note_sizes(phase_list& list, const chain_phase& e);

}  // namespace qbench::gptq
