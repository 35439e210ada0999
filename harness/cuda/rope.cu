#include "cuda/rope.cuh"

namespace qbench {

namespace {

__global__ void rope_append_kernel(__half* q, const __half* __restrict__ k, const __half* __restrict__ v,
                                   const float* __restrict__ inv_freq, std::int64_t pos0, int heads, int kv_heads,
                                   int head_dim, __half* k_cache, __half* v_cache) {
    pdl_wait();
    pdl_trigger();
    const std::int64_t r = blockIdx.x;
    const std::int64_t pos = pos0 + r;
    const int half_d = head_dim / 2;
    const std::int64_t qw = static_cast<std::int64_t>(heads) * head_dim;
    const std::int64_t kw = static_cast<std::int64_t>(kv_heads) * head_dim;
    // One thread per rotation pair of q and of k.
    for (int t = threadIdx.x; t < (heads + kv_heads) * half_d; t += blockDim.x) {
        const int head = t / half_d, i = t % half_d;
        float c, s;
        rope_angle_dev(pos, inv_freq[i], c, s);
        if (head < heads) {
            __half* x = q + r * qw + static_cast<std::int64_t>(head) * head_dim;
            rope_rotate(__half2float(x[i]), __half2float(x[i + half_d]), c, s, x[i], x[i + half_d]);
        } else {
            const int kh = head - heads;
            const __half* x = k + r * kw + static_cast<std::int64_t>(kh) * head_dim;
            __half* dst = k_cache + pos * kw + static_cast<std::int64_t>(kh) * head_dim;
            rope_rotate(__half2float(x[i]), __half2float(x[i + half_d]), c, s, dst[i], dst[i + half_d]);
        }
    }
    const __half* vrow = v + r * kw;
    __half* vdst = v_cache + pos * kw;
    for (std::int64_t e = threadIdx.x; e < kw; e += blockDim.x) vdst[e] = vrow[e];
}

}  // namespace

void launch_rope_append(__half* q, const __half* k, const __half* v, const float* inv_freq, std::int64_t rows,
                        std::int64_t pos0, int heads, int kv_heads, int head_dim, __half* k_cache, __half* v_cache,
                        const launch_options& o) {
    if (rows <= 0) return;
    launch_kernel(rope_append_kernel, dim3(static_cast<unsigned>(rows)), dim3(256), 0, o, q, k, v, inv_freq, pos0,
                  heads, kv_heads, head_dim, k_cache, v_cache);
}

}  // namespace qbench
