// Fault injection for the runner's isolation test: a kernel that writes through a wild pointer leaves the CUDA
// context with a sticky error (cudaErrorIllegalAddress), which only ending the process clears.
#include "qbench/runner/cuda_cell.hpp"

#include <cuda_runtime.h>

#include <cstdio>

namespace {
__global__ void write_through_wild_pointer(int* p) { p[threadIdx.x] = 42; }
}  // namespace

namespace qbench {

void cuda_fault_now() {
    write_through_wild_pointer<<<1, 32>>>(reinterpret_cast<int*>(0x10));
    const cudaError_t err = cudaDeviceSynchronize();
    std::fprintf(stderr, "qbench cell: injected CUDA fault: %s\n", cudaGetErrorString(err));
    throw std::runtime_error(std::string("CUDA fault: ") + cudaGetErrorString(err));
}

}  // namespace qbench
