#pragma once
/// A chain of GPTQ linears at one activation row in one persistent grid: the first persistent kernel of the design in
/// backends/gptq/PERF_NOTES.md (fifteenth session). Not used by the executor: a prototype to measure against kernel
/// v3's launches, whose outputs it reproduces bit for bit.
///
/// Why: one kernel per linear pays a fixed ramp and tail per launch that the H200's bandwidth makes a third of the 4-bit
/// step; a persistent grid pays instead a sync per phase, and the phase probe (tests/gpu/gptq/phase_stream.cu) found
/// that a grid barrier's release costs most of it, while activations written once over an unwritten pattern need no
/// release at all (harness/cuda/write_once.cuh).
///
/// Work split, per linear, as v3's (gptq_gemm_a.cuh): CTA b owns mtiles [mtiles * b / ctas, mtiles * (b + 1) / ctas)
/// and all of K; consumer warp w owns k-slice w; an output is the sum of the 16 warps' partials in warp order, each
/// accumulated over its k-blocks in order, so the bits do not depend on which CTA owns the mtile.
/// Per CTA: 16 consumer warps and one producer warp. The producer's first thread copies, stage by stage, each consumer
/// warp's next 512-byte chunk of its run (v3's layout: one contiguous run per warp) and, with a chunk that ends a
/// k-block, that k-block's 64-byte record, into a ring of shared-memory stages (harness/cuda/bulk_ring.cuh): it runs
/// ahead across the linears, bounded by the ring only. The consumers, per linear: the relaxed grid hint, the input read
/// with load_written into shared memory (with its sums per k-block), v3's decode and mma per chunk, v3's epilogue, and
/// the outputs stored once each (store_once of fp16 pairs through written_word).
///
/// Limits of the prototype: 4 bits, one row, every K a multiple of 128 (whole k-blocks), every N a multiple of 16, at
/// most k_chain_max_linears linears, and what one CTA's shared memory holds (k_chain_max_kblocks, k_chain_max_tiles).
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

namespace qbench::gptq {

inline constexpr int k_chain_max_linears = 256;  ///< a 7B step's 224 linears as a chain
inline constexpr int k_chain_max_kblocks = 96;  ///< K <= 12288 (staged x: 24 KB)
inline constexpr int k_chain_max_tiles = 6;     ///< mtiles per CTA and linear

/// One linear of a chain, in the v3 layout (a_qweight_words / a_meta_words of its plan), K = kblocks * 128.
struct chain_linear {
    const std::uint32_t* qweight = nullptr;
    const std::uint32_t* meta = nullptr;
    int n = 0;        ///< outputs, a multiple of 16
    int kblocks = 0;  ///< the previous linear's n / 128 (the first: the input's length / 128)
};

/// What a chain launch needs besides the linears: the grid (every CTA resident), its shared memory, the outputs'
/// words, and the bytes of device scratch (the linears' table and the hint counter).
struct chain_plan {
    int ctas = 0;
    std::size_t smem = 0;
    int linears = 0;
    int max_kblocks = 0;
    std::size_t y_words = 0;  ///< every linear's outputs back to back, n / 2 words each
    static constexpr std::size_t scratch_bytes = 16384;
};

/// Checks the chain against the prototype's limits (throws qbench::error naming the linear) and sizes its grid for
/// this device.
chain_plan plan_gptq_chain(const std::vector<chain_linear>& linears);

/// Copies the chain's table into `scratch` (chain_plan::scratch_bytes of device memory) and waits for the copy: x0
/// holds the first input as kblocks * 64 words (fp16 pairs through written_word, written before each launch), y
/// (plan.y_words) receives every linear's outputs. Once, outside any stream capture.
void upload_gptq_chain(const chain_plan& plan, const std::vector<chain_linear>& linears, const std::uint32_t* x0,
                       std::uint32_t* y, void* scratch, cudaStream_t stream);

/// Enqueues one run of the uploaded chain on `stream`: y re-armed (set unwritten), the hint counter zeroed, the
/// cooperative launch. Capturable in a CUDA graph.
void enqueue_gptq_chain(const chain_plan& plan, std::uint32_t* y, void* scratch, cudaStream_t stream);

}  // namespace qbench::gptq
