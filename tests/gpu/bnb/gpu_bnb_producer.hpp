#pragma once
// A deliberately slow producer kernel for the programmatic-dependent-launch tests of the bnb kernels.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace qbench::bnb::test {

/// Enqueues on `stream` one CTA that lets its dependents launch at once (griddepcontrol.launch_dependents), spins for
/// `spin_cycles` SM clock cycles and only then copies n fp16 values src -> dst. A kernel launched after it with PDL
/// runs its prologue during the spin, so one that reads dst before its griddepcontrol.wait sees the old contents.
void launch_slow_producer(const __half* src, __half* dst, std::int64_t n, long long spin_cycles, cudaStream_t stream);

}  // namespace qbench::bnb::test
