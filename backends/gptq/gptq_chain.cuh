#pragma once
/// GPTQ linears at one activation row in one persistent grid, phase after phase: the persistent design of
/// backends/gptq/PERF_NOTES.md (fifteenth and sixteenth sessions), in two forms over one kernel:
/// - a chain of plain linears, each input the previous output (plan_gptq_chain ...): what its test checks against
///   kernel v3's launches bit for bit, and what BM_gptq_chain times against them;
/// - a decode step's whole layer stack (gptq_decode_stack): per layer five phases, q/k/v with the input RMSNorm folded
///   into the staging of x, attention (RoPE, the KV-cache append, softmax and values: attention_block.cuh, the code of
///   the attention kernel), o with the residual add in its epilogue, gate/up with the post-attention RMSNorm folded
///   and the SwiGLU product in its epilogue (a CTA owns the same mtiles of both, as v3's gate/up kernel), and down
///   with the residual add in its epilogue. The executor
///   runs it for decode steps at one row (harness/cuda/decode_stack.hpp); its outputs are bit-identical to the
///   launched layers' (v3, attention kernel, the folded-norm contract of rms_norm.cuh).
///
/// Why: one kernel per linear pays a fixed ramp and tail per launch that the H200's bandwidth makes a third of the 4-bit
/// step; a persistent grid pays instead a sync per phase, and the phase probe (tests/gpu/gptq/phase_stream.cu) found
/// that a grid barrier's release costs most of it, while activations written once over an unwritten pattern need no
/// release at all (harness/cuda/write_once.cuh).
///
/// Work split of a linear phase, as v3's (gptq_gemm_a.cuh): CTA b owns mtiles [mtiles * b / ctas, mtiles * (b + 1) /
/// ctas) of the phase (the mtiles of its parts, q then k then v, or gate then up, back to back) and all of K; consumer
/// warp w owns k-slice w; an output is the sum of the 16 warps' partials in warp order, each accumulated over its
/// k-blocks in order, so the bits do not depend on which CTA owns the mtile.
/// Per CTA: 16 consumer warps and one producer warp whose lane w fills consumer warp w's own ring of shared-memory
/// slots (harness/cuda/bulk_ring.cuh, warp_rings): a slot is up to 2 KB of one tile of the warp's run (v3's layout puts a
/// warp's chunks of a tile, and its records, back to back), copied in two pieces, chunks and records; the lane runs
/// ahead across the phases (attention included), bounded by the ring only. The consumers, per phase: the relaxed grid
/// hint, the input staged with load_written into shared memory (normed there, with its sums per k-block), v3's decode
/// and mma per chunk, v3's epilogue, the outputs stored once each (store_once of fp16 pairs). An attention
/// phase runs on the first 8 warps of the CTAs that own a head; in the q/k/v phase before it, those CTAs can ask L2
/// for the key and value rows it will read (chain_tuning::prefetch_attention, off: measured slower).
/// The producer lanes poll their rings together (chain_tuning::producer), and a launch can stamp where each phase's
/// time goes (chain_tuning::trace, read by bench_gptq's chain_trace.hpp).
/// (The first form shared each ring stage among the 16 warps, 32 copies of 512 and 64 bytes a stage: bit-identical, but
/// the copies, not the bytes, set its time; PERF_NOTES.md, sixteenth session.)
///
/// Limits: 2, 3, 4 or 8 bits (one width per grid), v3 layouts without act-order, one row, every K a multiple of 128
/// (whole k-blocks), every N a multiple of 16, and what one CTA's shared memory holds (k_chain_max_kblocks,
/// k_chain_max_tiles, the attention's context).
#include "cuda/device_context.cuh"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace qbench::gptq {

inline constexpr int k_chain_max_linears = 256;  ///< a 7B step's 224 linears as a chain
inline constexpr int k_chain_max_kblocks = 96;   ///< K <= 12288 (staged x: 24 KB)
inline constexpr int k_chain_max_tiles = 6;      ///< mtiles per CTA and phase

/// One linear in the v3 layout (a_qweight_words / a_meta_words of its plan), K = kblocks * 128.
struct chain_linear {
    const std::uint32_t* qweight = nullptr;
    const std::uint32_t* meta = nullptr;
    int n = 0;        ///< outputs, a multiple of 16
    int kblocks = 0;  ///< the previous linear's n / 128 (the first: the input's length / 128)
};

/// What a chain launch needs besides the linears: the grid (every CTA resident), its shared memory, the outputs'
/// words, and the bytes of device scratch (the phase table and the hint counter).
struct chain_plan {
    int bits = 4;
    int ctas = 0;
    std::size_t smem = 0;
    int linears = 0;
    int max_kblocks = 0;
    std::size_t y_words = 0;  ///< every linear's outputs back to back, n / 2 words each
    std::size_t scratch_bytes = 0;
};

/// How the producer warp's 16 lanes fill their rings (chain_tuning::producer).
enum chain_producer : int {
    /// Each lane waits (mbarrier try_wait) for its ring's next free slot. The lanes' waits reconverge, so in effect each
    /// slot is issued once the slowest ring has freed one.
    k_producer_blocking = 0,
    /// The 16 lanes poll together (mbarrier test_wait) and each issues whenever its own ring has a free slot.
    k_producer_polling = 1,
};

/// The trace's fields per (CTA, phase), SM clock cycles (clock64) at: the hint passed, the input staged, every warp's
/// k-slice done (after the barrier before the epilogue), the outputs stored; the producer's lane 0 issuing its first
/// and its last slot of the phase; consumer warp 0's first slot acquired and its k-slice done. An attention phase, or
/// one with no mtiles on the CTA, has only the hint and the stored stamp. Before a CTA's phases its header: the clock
/// and %globaltimer (ns) at the start, then at the end.
enum chain_trace_field : int {
    k_trace_hint = 0,
    k_trace_staged,
    k_trace_loop_done,
    k_trace_stored,
    k_trace_producer_first,
    k_trace_producer_last,
    k_trace_first_slot,
    k_trace_warp0_done,
    k_trace_fields
};

/// Switches for measurement (bench_gptq's BM_gptq_chain / BM_gptq_stack); the executor runs the defaults. (An L2
/// look-ahead, each slot issued also asking L2 for the slot three further on, measured 4-11% slower at every width:
/// PERF_NOTES.md, seventeenth session; removed.)
struct chain_tuning {
    int producer = k_producer_polling;
    /// The phase before an attention phase asks L2 for the key and value rows the attention will read (prefetch.L2).
    /// Off: measured on the H100 it sped the attention up by ~3 us a layer but delayed the q/k/v phase's hint by ~8 us
    /// (the owners of a head arrive late, reading the decode state and issuing the prefetches first), so the 4-bit
    /// stack took 2.93 ms against 2.79 without it (PERF_NOTES.md, eighteenth session).
    bool prefetch_attention = false;
    /// When set, ctas * (phases + 1) * k_trace_fields words the launch fills (every field it stamps; others untouched).
    unsigned long long* trace = nullptr;
};

/// Checks the chain against the kernel's limits (throws qbench::error naming the linear) and sizes its grid for this
/// device.
chain_plan plan_gptq_chain(const std::vector<chain_linear>& linears, int bits = 4);

/// Copies the chain's table into `scratch` (plan.scratch_bytes of device memory) and waits for the copy: x0 holds the
/// first input as kblocks * 64 words (fp16 pairs through written_word, written before each launch), y (plan.y_words)
/// receives every linear's outputs. Once, outside any stream capture.
void upload_gptq_chain(const chain_plan& plan, const std::vector<chain_linear>& linears, const std::uint32_t* x0,
                       std::uint32_t* y, void* scratch, cudaStream_t stream);

/// Enqueues one run of the uploaded chain on `stream`: y re-armed (set unwritten), the hint counter zeroed, the
/// cooperative launch. Capturable in a CUDA graph.
void enqueue_gptq_chain(const chain_plan& plan, std::uint32_t* y, void* scratch, cudaStream_t stream,
                        const chain_tuning& tuning = {});

/// One Llama layer's linears and what the stack's phases read besides them.
struct stack_layer {
    chain_linear q, k, v, o, gate, up, down;
    const __half* input_norm = nullptr;  ///< [hidden]
    const __half* post_norm = nullptr;   ///< [hidden]
    __half* k_cache = nullptr;           ///< the layer's caches (rope.cuh's layout, slot 0 holds the row's positions)
    __half* v_cache = nullptr;
};

/// The model's shape and the decode state the stack's attention phases read (device pointers, as the executor's).
struct stack_shape {
    int bits = 4;
    int hidden = 0, heads = 0, kv_heads = 0, head_dim = 0;
    double eps = 0;
    float scale = 0;           ///< 1 / sqrt(head_dim)
    std::int64_t max_len = 0;  ///< positions per slot in the caches
    const float* inv_freq = nullptr;
    const std::int32_t* pos = nullptr;         ///< the row's position (device)
    const std::int32_t* slot_table = nullptr;  ///< [max_len] of the row (device)
    __half* x = nullptr;  ///< [hidden]: the first layer's input (the embedding), replaced by the last layer's output
};

/// Why a layer stack cannot run as one persistent grid on this device (empty: it can).
std::string gptq_stack_refusal(const stack_shape& shape, const std::vector<stack_layer>& layers);

/// A decode step's layer stack at one row as one persistent grid. Construction allocates the phases' write-once
/// buffers and table (device_context: may throw out_of_memory) and uploads the table (outside any capture); the
/// caches, norms and decode state it names must outlive it, at the same addresses.
class gptq_decode_stack {
public:
    gptq_decode_stack(device_context& context, const stack_shape& shape, const std::vector<stack_layer>& layers);
    /// One run on `stream`: the write-once buffers re-armed, the counter zeroed, the launch. shape.x in, shape.x out.
    /// Capturable in a CUDA graph.
    void enqueue(cudaStream_t stream, const chain_tuning& tuning = {});
    const chain_plan& plan() const { return m_plan; }

private:
    chain_plan m_plan;
    device_buffer m_acts, m_scratch;
};

}  // namespace qbench::gptq
