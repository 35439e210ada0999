#pragma once
// The kernel side of test_grid_barrier.cpp: a persistent kernel whose CTAs exchange values across grid_barrier.cuh's
// barriers, so a barrier that let a CTA through early shows up as a value from the wrong round.
#include <cuda_runtime.h>

#include <cstdint>

namespace qbench::test {

/// Round k = 1 .. rounds: CTA b writes slot b = k * 65536 + b, passes a barrier, reads the slots of CTAs b + 1 and
/// b + ctas / 2 (mod ctas) and counts into errors[b] each that is not this round's, then passes a second barrier
/// (so that no CTA overwrites a slot still being read). `counter` is zeroed in the same stream first; with
/// `barriers` false the kernel leaves them out (the test's control: it must then see stale values).
/// Launched cooperatively with `ctas` CTAs of 256 threads (the caller keeps ctas within what stays resident); `named`:
/// CTAs of 288 threads whose first 256 pass grid_barrier_among<1, 256> while the 9th warp has left.
void launch_grid_barrier_check(int ctas, int rounds, bool barriers, unsigned* counter, std::uint32_t* slots,
                               std::uint32_t* errors, cudaStream_t stream, bool named = false);

/// CTAs (of 288 threads, so that either form fits) launch_grid_barrier_check's kernel can keep resident per SM.
int grid_barrier_check_ctas_per_sm();

}  // namespace qbench::test
