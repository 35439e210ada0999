#include "cuda/embedding.cuh"

#include "qbench/common/counter_rng.hpp"

namespace qbench {

namespace {

__device__ __forceinline__ std::int64_t clamp_token(std::int32_t t, std::int64_t vocab) {
    return t < 0 ? 0 : (t >= vocab ? vocab - 1 : t);
}

__global__ void embed_prompt_kernel(const __half* __restrict__ table, std::int64_t vocab, std::int64_t hidden,
                                    const std::int32_t* tokens, std::int64_t image_offset, std::int64_t image_tokens,
                                    std::uint64_t image_key, __half* out) {
    pdl_wait();
    pdl_trigger();
    const std::int64_t r = blockIdx.x;
    __half* dst = out + r * hidden;
    if (r >= image_offset && r < image_offset + image_tokens) {
        const std::uint64_t base = static_cast<std::uint64_t>(r - image_offset) * hidden;
        for (std::int64_t h = threadIdx.x; h < hidden; h += blockDim.x)
            dst[h] = __float2half_rn(normal01(image_key, base + h));
        return;
    }
    const std::int64_t t = r < image_offset ? r : r - image_tokens;
    const __half* src = table + clamp_token(tokens[t], vocab) * hidden;
    for (std::int64_t h = threadIdx.x; h < hidden; h += blockDim.x) dst[h] = src[h];
}

__global__ void embed_tokens_kernel(const __half* __restrict__ table, std::int64_t vocab, std::int64_t hidden,
                                    const std::int32_t* tokens, __half* out) {
    pdl_wait();
    pdl_trigger();
    const std::int64_t b = blockIdx.x;
    const __half* src = table + clamp_token(tokens[b], vocab) * hidden;
    __half* dst = out + b * hidden;
    if (hidden % 8 == 0 && reinterpret_cast<std::uintptr_t>(table) % 16 == 0 &&
        reinterpret_cast<std::uintptr_t>(out) % 16 == 0) {
        // 16-byte copies, every load of a thread issued before its first store (one memory round trip).
        const uint4* s4 = reinterpret_cast<const uint4*>(src);
        uint4* d4 = reinterpret_cast<uint4*>(dst);
        const std::int64_t chunks = hidden / 8;
        for (std::int64_t c0 = threadIdx.x; c0 < chunks; c0 += 4 * static_cast<std::int64_t>(blockDim.x)) {
            uint4 v[4];
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const std::int64_t c = c0 + u * static_cast<std::int64_t>(blockDim.x);
                if (c < chunks) v[u] = s4[c];
            }
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const std::int64_t c = c0 + u * static_cast<std::int64_t>(blockDim.x);
                if (c < chunks) d4[c] = v[u];
            }
        }
        return;
    }
    for (std::int64_t h = threadIdx.x; h < hidden; h += blockDim.x) dst[h] = src[h];
}

}  // namespace

void launch_embed_prompt(const __half* table, std::int64_t vocab, std::int64_t hidden, const std::int32_t* tokens,
                         std::int64_t rows, std::int64_t image_offset, std::int64_t image_tokens,
                         std::uint64_t image_key, __half* out, const launch_options& o) {
    if (rows <= 0) return;
    launch_kernel(embed_prompt_kernel, dim3(static_cast<unsigned>(rows)), dim3(256), 0, o, table, vocab, hidden,
                  tokens, image_offset, image_tokens, image_key, out);
}

void launch_embed_tokens(const __half* table, std::int64_t vocab, std::int64_t hidden, const std::int32_t* tokens,
                         std::int64_t rows, __half* out, const launch_options& o) {
    if (rows <= 0) return;
    launch_kernel(embed_tokens_kernel, dim3(static_cast<unsigned>(rows)), dim3(256), 0, o, table, vocab, hidden,
                  tokens, out);
}

}  // namespace qbench
