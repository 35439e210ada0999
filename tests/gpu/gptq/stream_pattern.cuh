#pragma once
// A memory-only probe for bench_gptq (BM_stream_pattern): how fast a kernel shaped like the GPTQ kernels streams
// bytes when each warp reads its share as one contiguous run (what v2 and v3 do) or as several runs interleaved
// (closer to the fp16 GEMV, whose warp reads 16 rows at once). No arithmetic besides an XOR per vector, so the figure
// is the memory side alone.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace qbench::gptq::test {

/// Streams `bytes` (a multiple of 512 * 2112) from `src` over `ctas` CTAs of 8 warps: warp w's share is `streams`
/// equal runs, read round-robin, 8 requests of 512 bytes (16 bytes a lane) in flight per warp; one word per warp to
/// `sink`.
void launch_stream_pattern(const void* src, std::size_t bytes, int streams, int ctas, std::uint32_t* sink,
                           cudaStream_t stream, bool pdl);

}  // namespace qbench::gptq::test
