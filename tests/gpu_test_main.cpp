// Main for GPU test executables: where no CUDA device exists, say so and exit with 77, which CTest reports as
// skipped (SKIP_RETURN_CODE), so a CPU-only machine shows the GPU tests as skipped rather than passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cuda_runtime.h>

#include <cstdio>

int main(int argc, char* argv[]) {
    int devices = 0;
    const cudaError_t err = cudaGetDeviceCount(&devices);
    if (err != cudaSuccess || devices == 0) {
        std::printf("SKIP: no CUDA device (%s); GPU tests need a GPU machine\n",
                    err != cudaSuccess ? cudaGetErrorString(err) : "0 devices");
        return 77;
    }
    return Catch::Session().run(argc, argv);
}
