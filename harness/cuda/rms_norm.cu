#include "cuda/reduce.cuh"
#include "cuda/rms_norm.cuh"

namespace qbench {

namespace {

__global__ void rms_norm_kernel(__half* x, const __half* delta, const __half* __restrict__ weight, double eps,
                                std::int64_t hidden, __half* out) {
    __shared__ double scratch[32];
    pdl_wait();
    pdl_trigger();
    __half* row = x + static_cast<std::int64_t>(blockIdx.x) * hidden;
    const __half* drow = delta != nullptr ? delta + static_cast<std::int64_t>(blockIdx.x) * hidden : nullptr;
    // The mean of squares in double and the inverse RMS rounded once to float, as rms_norm_ref does.
    double sumsq = 0.0;
    for (std::int64_t h = threadIdx.x; h < hidden; h += blockDim.x) {
        float v = __half2float(row[h]);
        if (drow != nullptr) {
            const __half s = __float2half_rn(v + __half2float(drow[h]));
            row[h] = s;
            v = __half2float(s);
        }
        sumsq += static_cast<double>(v) * v;
    }
    sumsq = block_sum(sumsq, scratch);
    const float inv = static_cast<float>(1.0 / sqrt(sumsq / static_cast<double>(hidden) + eps));
    __half* orow = out + static_cast<std::int64_t>(blockIdx.x) * hidden;
    for (std::int64_t h = threadIdx.x; h < hidden; h += blockDim.x) {
        const float normed = __half2float(__float2half_rn(__fmul_rn(__half2float(row[h]), inv)));
        orow[h] = __float2half_rn(__fmul_rn(normed, __half2float(weight[h])));
    }
}

}  // namespace

void launch_rms_norm(__half* x, const __half* delta, const __half* weight, double eps, std::int64_t rows,
                     std::int64_t hidden, __half* out, const launch_options& o) {
    if (rows <= 0) return;
    const int threads = hidden >= 4096 ? 1024 : (hidden >= 1024 ? 256 : 128);
    launch_kernel(rms_norm_kernel, dim3(static_cast<unsigned>(rows)), dim3(threads), 0, o, x, delta, weight, eps,
                  hidden, out);
}

}  // namespace qbench
