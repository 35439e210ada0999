#pragma once
// A memory-only probe for bench_gptq (BM_stream_pattern): how fast a kernel shaped like the GPTQ kernels streams
// bytes when each warp reads its share as one contiguous run (what v2 and v3 do) or as several runs interleaved
// (closer to the fp16 GEMV, whose warp reads 16 rows at once). No arithmetic besides an XOR per vector, so the figure
// is the memory side alone.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace qbench::gptq::test {

/// Streams `bytes` from `src` over ctas_per_sm x sms CTAs of 8 warps (2 or 4 per SM): warp w's share (whole
/// 512-byte requests) is `streams` (1, 2, 4, 16) equal runs read round-robin, `stages` (8, 16, 32; 4 CTAs per SM:
/// 8, 16) requests of 512 bytes (16 bytes a lane) in flight per warp; one word per warp to `sink`.
void launch_stream_pattern(const void* src, std::size_t bytes, int streams, int stages, int ctas_per_sm, int sms,
                           std::uint32_t* sink, cudaStream_t stream, bool pdl);

}  // namespace qbench::gptq::test
