#include "cuda/attention.cuh"
#include "cuda/attention_block.cuh"

#include "qbench/common/errors.hpp"

#include <algorithm>

namespace qbench {

namespace {

constexpr int k_threads = 256;
constexpr std::size_t k_smem_limit = 48 * 1024;

// Floats of dynamic shared memory (attention_block.cuh).
std::size_t smem_floats(int head_dim, std::int64_t max_len) { return attention_smem_floats(k_threads, head_dim, max_len); }

// One block per (head, query): attention_block with the block's 256 threads (blockIdx.x the head, blockIdx.y the
// query row); the inputs are waited for through PDL.
template <bool DECODE, int D>
__global__ void __launch_bounds__(k_threads)
    attention_kernel(const __half* __restrict__ q, const __half* __restrict__ k_new, const __half* __restrict__ v_new,
                     const float* __restrict__ inv_freq, const std::int32_t* pos_ptr, std::int64_t pos0,
                     const std::int32_t* slot_table, int heads, int kv_heads, int head_dim, std::int64_t max_len,
                     float scale, __half* k_cache, __half* v_cache, __half* out, bool early_trigger) {
    extern __shared__ float smem[];
    __shared__ float scratch[32];
    const int d = D > 0 ? D : head_dim;
    const int h = blockIdx.x;
    const std::int64_t row = blockIdx.y;
    const int g = h / (heads / kv_heads);
    const std::int64_t kw = static_cast<std::int64_t>(kv_heads) * d;
    const std::int64_t qw = static_cast<std::int64_t>(heads) * d;
    const __half* krow = DECODE ? k_new + row * kw + static_cast<std::int64_t>(g) * d : nullptr;
    const __half* vrow = DECODE ? v_new + row * kw + static_cast<std::int64_t>(g) * d : nullptr;
    attention_block<DECODE, D, k_threads>(static_cast<int>(threadIdx.x), row, h, q + row * qw + static_cast<std::int64_t>(h) * d,
                                          krow, vrow, out + row * qw + static_cast<std::int64_t>(h) * d, inv_freq, pos_ptr,
                                          pos0, slot_table, heads, kv_heads, head_dim, max_len, scale, k_cache, v_cache,
                                          smem, scratch, block_sync{}, [&] { pdl_enter(early_trigger); });
}

template <bool DECODE>
using attention_fn = void (*)(const __half*, const __half*, const __half*, const float*, const std::int32_t*,
                              std::int64_t, const std::int32_t*, int, int, int, std::int64_t, float, __half*, __half*,
                              __half*, bool);

// The instance for a head size: fully unrolled for the common sizes, generic otherwise.
template <bool DECODE>
attention_fn<DECODE> pick(int head_dim) {
    switch (head_dim) {
    case 32: return attention_kernel<DECODE, 32>;
    case 64: return attention_kernel<DECODE, 64>;
    case 128: return attention_kernel<DECODE, 128>;
    case 256: return attention_kernel<DECODE, 256>;
    default: return attention_kernel<DECODE, 0>;
    }
}

void check_shape(const attention_shape& s) {
    if (s.head_dim <= 0 || s.head_dim % 2 != 0 || s.head_dim > 256 || s.kv_heads <= 0 || s.heads % s.kv_heads != 0)
        throw unsupported_error("attention: head_dim " + std::to_string(s.head_dim) + " with " +
                                std::to_string(s.heads) + "/" + std::to_string(s.kv_heads) +
                                " heads is not supported (head_dim must be even and <= 256)");
    if (s.max_len > attention_max_len(s.head_dim))
        throw unsupported_error("attention: context of " + std::to_string(s.max_len) + " positions exceeds the " +
                                std::to_string(attention_max_len(s.head_dim)) + " this kernel supports");
}

}  // namespace

std::int64_t attention_max_len(int head_dim) {
    const std::size_t fixed = smem_floats(head_dim, 0);
    return static_cast<std::int64_t>(k_smem_limit / sizeof(float) - fixed);
}

void launch_attention_prefill(const __half* q, const __half* k_cache, const __half* v_cache, std::int64_t rows,
                              std::int64_t pos0, const attention_shape& shape, __half* out, const launch_options& o) {
    if (rows <= 0) return;
    check_shape(shape);
    const std::size_t smem = smem_floats(shape.head_dim, shape.max_len) * sizeof(float);
    launch_kernel(pick<false>(shape.head_dim), dim3(shape.heads, static_cast<unsigned>(rows)), dim3(k_threads), smem, o,
                  q, static_cast<const __half*>(nullptr), static_cast<const __half*>(nullptr),
                  static_cast<const float*>(nullptr), static_cast<const std::int32_t*>(nullptr), pos0,
                  static_cast<const std::int32_t*>(nullptr), shape.heads, shape.kv_heads, shape.head_dim,
                  shape.max_len, shape.scale, const_cast<__half*>(k_cache), const_cast<__half*>(v_cache), out,
                  o.early_trigger);
}

void launch_attention_decode(const __half* q, const __half* k_new, const __half* v_new, const float* inv_freq,
                             const std::int32_t* pos, const std::int32_t* slot_table, std::int64_t beams,
                             const attention_shape& shape, __half* k_cache, __half* v_cache, __half* out,
                             const launch_options& o) {
    if (beams <= 0) return;
    check_shape(shape);
    const std::size_t smem = smem_floats(shape.head_dim, shape.max_len) * sizeof(float);
    launch_kernel(pick<true>(shape.head_dim), dim3(shape.heads, static_cast<unsigned>(beams)), dim3(k_threads), smem, o,
                  q, k_new, v_new, inv_freq, pos, std::int64_t{0}, slot_table, shape.heads, shape.kv_heads,
                  shape.head_dim, shape.max_len, shape.scale, k_cache, v_cache, out, o.early_trigger);
}

}  // namespace qbench
