// hold_device_memory (qbench/engine/cuda_api.hpp): an accounted, zero-filled allocation owned by a type-erased handle.
#include "cuda/cuda_check.cuh"
#include "cuda/device_context.cuh"

#include "qbench/engine/cuda_api.hpp"

namespace qbench {

std::shared_ptr<void> hold_device_memory(device_context& context, std::uint64_t bytes, std::string_view what) {
    auto buffer = std::make_shared<device_buffer>(context.allocate(bytes, what));
    QB_CUDA_CHECK(cudaMemsetAsync(buffer->get(), 0, bytes, context.stream()));
    QB_CUDA_CHECK(cudaStreamSynchronize(context.stream()));
    context.sample_device_memory();
    return buffer;
}

}  // namespace qbench
