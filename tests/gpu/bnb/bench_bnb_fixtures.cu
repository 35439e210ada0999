// The data every bench_bnb benchmark reads: device fills from the counter RNG (seeded, so every run reads the same
// values), the activations with LLM.int8() outliers, and the rotating copies of one weight per format, quantized on the
// GPU as at load time; copies_for sizes the rotation so the copies together exceed L2.
#include "bench_bnb_common.cuh"
#include "qbench/common/counter_rng.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

namespace bnb_bench {

// ---- fills ------------------------------------------------------------------------------------------------------

namespace {

__global__ void fill_bytes_kernel(std::uint8_t* p, std::uint64_t n, std::uint64_t seed) {
    for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x)
        p[i] = static_cast<std::uint8_t>(random_bits(seed, i) >> 24);
}
__global__ void fill_half_kernel(__half* p, std::uint64_t n, std::uint64_t seed, float scale, float offset) {
    for (std::uint64_t i = blockIdx.x * static_cast<std::uint64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::uint64_t>(gridDim.x) * blockDim.x)
        p[i] = __float2half_rn(offset + scale * normal01(seed, i));
}

}  // namespace

void fill_bytes(void* p, std::uint64_t n, std::uint64_t seed) {
    fill_bytes_kernel<<<1024, 256>>>(static_cast<std::uint8_t*>(p), n, seed);
}
void fill_half(__half* p, std::uint64_t n, std::uint64_t seed, float scale, float offset) {
    fill_half_kernel<<<1024, 256>>>(p, n, seed, scale, offset);
}

void fill_activations_with_outliers(__half* x, std::int64_t m, std::int64_t k) {
    fill_half(x, static_cast<std::uint64_t>(m * k), 5, 1.0f);
    std::vector<std::uint16_t> host(static_cast<std::size_t>(m * k));
    cudaMemcpy(host.data(), x, host.size() * 2, cudaMemcpyDeviceToHost);
    for (std::int64_t r = 0; r < m; ++r)
        for (std::int64_t c = 17; c < k; c += 256) host[static_cast<std::size_t>(r * k + c)] = float_to_half(9.0f);
    cudaMemcpy(x, host.data(), host.size() * 2, cudaMemcpyHostToDevice);
}

int copies_for(std::uint64_t bytes) { return static_cast<int>(std::max<std::uint64_t>(2, k_working_set / std::max<std::uint64_t>(bytes, 1) + 1)); }

// ---- weight copies ----------------------------------------------------------------------------------------------

weights_4bit::weights_4bit(std::int64_t n, std::int64_t k, quant_type t, bool dq, int copies) {
    const std::int64_t count = n * k, blocks = (count + 63) / 64, nested = (blocks + 255) / 256;
    dev<__half> f16(static_cast<std::size_t>(count));
    fill_half(f16.get(), count, 11, 0.02f);
    const auto& map = dynamic_map_signed();
    nested_code = dev<float>(std::vector<float>(map.begin(), map.end()));
    dev<float> am(static_cast<std::size_t>(blocks)), offset(1);
    dev<std::uint8_t> p0(static_cast<std::size_t>((count + 1) / 2));
    launch_quantize_4bit(f16.get(), count, t, 64, p0.get(), am.get(), {});
    dev<std::uint8_t> c0(dq ? static_cast<std::size_t>(blocks) : 0);
    dev<float> n0(dq ? static_cast<std::size_t>(nested) : 0);
    float off = 0;
    if (dq) {
        launch_absmax_mean(am.get(), blocks, offset.get(), {});
        launch_double_quantize(am.get(), blocks, offset.get(), nested_code.get(), 256, c0.get(), n0.get(), {});
        off = offset.download()[0];
    }
    bytes = p0.size() + (dq ? c0.size() + n0.size() * 4 : am.size() * 4);
    for (int c = 0; c < copies; ++c) {
        packed.emplace_back(p0.size());
        cudaMemcpy(packed.back().get(), p0.get(), p0.size(), cudaMemcpyDeviceToDevice);
        device_4bit_view v;
        v.packed = packed.back().get();
        v.rows = n;
        v.cols = k;
        v.blocksize_log2 = 6;
        std::memcpy(v.code, code_book(t).data(), sizeof(v.code));
        if (dq) {
            codes.emplace_back(c0.size());
            nested_absmax.emplace_back(n0.size());
            cudaMemcpy(codes.back().get(), c0.get(), c0.size(), cudaMemcpyDeviceToDevice);
            cudaMemcpy(nested_absmax.back().get(), n0.get(), n0.size() * 4, cudaMemcpyDeviceToDevice);
            v.absmax = nullptr;
            v.absmax_codes = codes.back().get();
            v.nested_absmax = nested_absmax.back().get();
            v.nested_code = nested_code.get();
            v.nested_blocksize = 256;
            v.nested_offset = off;
        } else {
            absmax.emplace_back(am.size());
            cudaMemcpy(absmax.back().get(), am.get(), am.size() * 4, cudaMemcpyDeviceToDevice);
            v.absmax = absmax.back().get();
        }
        views.push_back(v);
    }
    cuda_ok(cudaDeviceSynchronize(), "weights_4bit");
}

weights_int8::weights_int8(std::int64_t n, std::int64_t k, int copies) {
    dev<__half> f16(static_cast<std::size_t>(n * k));
    fill_half(f16.get(), f16.size(), 13, 0.02f);
    dev<std::int8_t> c0(static_cast<std::size_t>(n * k));
    dev<float> s0(static_cast<std::size_t>(n));
    launch_quantize_int8_rows(f16.get(), n, k, c0.get(), s0.get(), {});
    bytes = c0.size() + s0.size() * 4;
    for (int c = 0; c < copies; ++c) {
        cb.emplace_back(c0.size());
        scb.emplace_back(s0.size());
        cudaMemcpy(cb.back().get(), c0.get(), c0.size(), cudaMemcpyDeviceToDevice);
        cudaMemcpy(scb.back().get(), s0.get(), s0.size() * 4, cudaMemcpyDeviceToDevice);
    }
    cuda_ok(cudaDeviceSynchronize(), "weights_int8");
}

weights_f16::weights_f16(std::int64_t n, std::int64_t k, int copies) {
    for (int c = 0; c < copies; ++c) {
        w.emplace_back(static_cast<std::size_t>(n * k));
        fill_half(w.back().get(), w.back().size(), 17 + c, 0.02f);
    }
    cuda_ok(cudaDeviceSynchronize(), "weights_f16");
}

}  // namespace bnb_bench
