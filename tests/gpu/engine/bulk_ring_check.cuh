#pragma once
// The kernel side of test_bulk_ring.cpp: a copy through bulk_ring.cuh's ring of shared-memory stages, so that a stage
// read before its bytes arrived, or overwritten before every consumer released it, shows up as a wrong word.
#include <cuda_runtime.h>

#include <cstdint>

namespace qbench::test {

/// CTA b copies its region of `stages_per_cta` x 4 KB of `src` to the same place in `dst`: one producer thread
/// feeds a ring of `ring` stages (1 or 3) by bulk copies; 4 consumer warps each copy their 1 KB of every stage out,
/// some of them dawdling by varying amounts (so that the producer finds stages not yet released). sm_90 only.
void launch_bulk_ring_copy(int ctas, int ring, std::uint32_t stages_per_cta, const void* src, void* dst,
                           cudaStream_t stream);

}  // namespace qbench::test
