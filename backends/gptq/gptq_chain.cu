// The persistent GPTQ chain (gptq_chain.cuh): v3's arithmetic, fed by a bulk-copy ring, synchronised by write-once
// activations.
#include "backends/gptq/gptq_chain.cuh"

#include "backends/gptq/gptq_a_layout.hpp"
#include "backends/gptq/gptq_a_ops.cuh"
#include "cuda/bulk_ring.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/launch.cuh"
#include "cuda/write_once.cuh"
#include "qbench/common/errors.hpp"

#include <algorithm>
#include <string>

namespace qbench::gptq {

namespace {

using a_ops::sum_group16;

constexpr int k_bits = 4;
constexpr int k_consumer_warps = k_a_kslices;               // one k-slice per consumer warp, as v3
constexpr int k_consumers = k_consumer_warps * 32;          // the threads of the named barrier 1 and of the hint
constexpr int k_chain_threads = k_consumers + 32;           // and the producer warp
constexpr int k_chain_stages = 8;
constexpr std::uint32_t k_chunk_bytes = a_chunk_words(k_bits) * 4;     // 512: a warp's chunk, a vector per lane
constexpr std::uint32_t k_record_bytes = k_a_record_words * 4;         // 64: an (mtile, k-block) record
/// A stage: every consumer warp's chunk (warp w's at w * 512), then their records (warp w's at 8192 + w * 64; only
/// with a chunk that ends a k-block).
constexpr std::uint32_t k_chain_stage_bytes = k_consumer_warps * (k_chunk_bytes + k_record_bytes);
using chain_ring = bulk_ring<k_chain_stages, k_chain_stage_bytes>;

constexpr std::size_t k_counter_offset = 12288;  // in the scratch, after the table

/// One linear as the kernel reads it (the table in the scratch).
struct chain_entry {
    const uint4* qweight;
    const uint2* meta;
    const std::uint32_t* x;  ///< input words (the previous linear's y, or x0)
    std::uint32_t* y;        ///< output words
    int n, mtiles, kblocks, pad;
};
static_assert(k_chain_max_linears * sizeof(chain_entry) <= k_counter_offset &&
              k_counter_offset + 16 <= chain_plan::scratch_bytes, "the table, then the counter, in the scratch");

__device__ __forceinline__ int kslice0(int kblocks, int w) {
    return static_cast<int>(kslice_begin(kblocks, w, k_consumer_warps));
}

/// The most k-blocks a warp of a linear owns (k-slices differ by one when kblocks % 16 != 0).
__device__ __forceinline__ int most_kblocks(int kblocks) {
    int most = 0;
    for (int w = 0; w < k_consumer_warps; ++w) most = max(most, kslice0(kblocks, w + 1) - kslice0(kblocks, w));
    return most;
}

__device__ __forceinline__ void consumers_sync() { asm volatile("bar.sync 1, %0;" ::"n"(k_consumers) : "memory"); }

/// Dynamic shared memory: the ring's stages, then the input x [kblocks * 128] (fp16), its sums [k-block][8 rows]
/// (fp32; rows past the first stay zero), the partial outputs [mtile of the CTA][warp][16] (fp32).
__global__ void __launch_bounds__(k_chain_threads, 2) gptq_chain_kernel(const chain_entry* table, int count, int max_kb,
                                                                        unsigned* counter) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    constexpr int CR = a_chunk_rows(k_bits), CPB = a_chunks_per_block(k_bits), MMAS = a_mmas_per_chunk(k_bits);
    constexpr int XV = CR / 32;                  // 16-byte activation vectors per lane per chunk
    constexpr int CV = a_chunk_words(k_bits) / 4;  // 16-byte vectors per chunk
    extern __shared__ uint4 smem[];
    __shared__ std::uint64_t full_bars[k_chain_stages], empty_bars[k_chain_stages];
    const chain_ring ring = chain_ring::make(smem, full_bars, empty_bars, k_consumer_warps);
    __half* xs = reinterpret_cast<__half*>(smem + k_chain_stages * chain_ring::stage_vecs);
    float* xsum = reinterpret_cast<float*>(xs + static_cast<std::size_t>(max_kb) * k_block_rows);
    float* red = xsum + static_cast<std::size_t>(max_kb) * 8;
    const int tid = static_cast<int>(threadIdx.x), w = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, t = lane & 3;
    const int b = static_cast<int>(blockIdx.x), ctas = static_cast<int>(gridDim.x);
    auto tiles_of = [&](const chain_entry& e, int& t0) {
        t0 = static_cast<int>(static_cast<long long>(e.mtiles) * b / ctas);
        return static_cast<int>(static_cast<long long>(e.mtiles) * (b + 1) / ctas) - t0;
    };

    if (w == k_consumer_warps) {  // the producer: one thread, every linear's stages in order
        if (lane != 0) return;
        std::uint32_t i = 0;
        for (int p = 0; p < count; ++p) {
            const chain_entry e = table[p];
            int t0 = 0;
            const int ntl = tiles_of(e, t0);
            const int stages = most_kblocks(e.kblocks) * CPB * ntl;
            for (int u = 0; u < stages; ++u, ++i) {
                const bool ends_block = u % CPB == CPB - 1;
                std::uint32_t bytes = 0;
                for (int k = 0; k < k_consumer_warps; ++k)
                    if (u < (kslice0(e.kblocks, k + 1) - kslice0(e.kblocks, k)) * CPB * ntl)
                        bytes += k_chunk_bytes + (ends_block ? k_record_bytes : 0u);
                ring.produce_pieces(i, bytes, [&](unsigned char* stage, std::uint64_t* bar) {
                    for (int k = 0; k < k_consumer_warps; ++k) {
                        const int kb0 = kslice0(e.kblocks, k), nkb = kslice0(e.kblocks, k + 1) - kb0;
                        if (u >= nkb * CPB * ntl) continue;  // warp k's run of this linear is done
                        // warp k's run: chunks first * CPB .. and records first .. (v3's run_weights / run_meta)
                        const std::size_t first = static_cast<std::size_t>(e.mtiles) * kb0 + static_cast<std::size_t>(t0) * nkb;
                        bulk_copy_to_shared(stage + k * k_chunk_bytes, e.qweight + (first * CPB + u) * CV, k_chunk_bytes, bar);
                        if (ends_block)
                            bulk_copy_to_shared(stage + k_consumer_warps * k_chunk_bytes + k * k_record_bytes,
                                                e.meta + (first + u / CPB) * 8, k_record_bytes, bar);
                    }
                });
            }
        }
        return;
    }

    unsigned hints = 0;
    std::uint32_t i = 0;  // the ring's copy index, as the producer's
    for (int p = 0; p < count; ++p) {
        const chain_entry e = table[p];
        int t0 = 0;
        const int ntl = tiles_of(e, t0);
        const int kb0 = kslice0(e.kblocks, w), nkb = kslice0(e.kblocks, w + 1) - kb0;
        const int units = nkb * CPB * ntl, stages = most_kblocks(e.kblocks) * CPB * ntl;
        // The input: written by every CTA of the previous linear. The hint says when it probably is; the words say
        // when it is (load_written), so nothing here needs a fence.
        if (p > 0) grid_hint_among<1, k_consumers>(counter, ++hints * static_cast<unsigned>(ctas));
        if (ntl == 0) continue;  // no mtiles of this linear here (and so no stages)
        for (int j = tid; j < e.kblocks * 8; j += k_consumers) xsum[j] = 0.0f;
        for (int j = tid; j < ntl * k_consumer_warps * static_cast<int>(k_a_tile_cols); j += k_consumers) red[j] = 0.0f;
        consumers_sync();
        const int vecs = e.kblocks * static_cast<int>(k_block_rows) / 8;  // a multiple of 16
        for (int base = 0; base < vecs; base += k_consumers) {
            const int v = base + tid;
            const bool valid = v < vecs;  // whole half-warps are valid or not
            const uint4 u4 = valid ? load_written(reinterpret_cast<const uint4*>(e.x) + v) : make_uint4(0u, 0u, 0u, 0u);
            if (valid) reinterpret_cast<uint4*>(xs)[v] = u4;
            sum_group16(u4, valid, 0, valid ? v : 0, xsum);
        }
        consumers_sync();

        // v3's main loop (gptq_gemm_a.cu, a_gemm_kernel's consume) at one row, the chunk and its record read from the
        // stage instead of the register ring. Every warp takes every stage (releasing it) so that the empty
        // barriers' phases stay in step, whether or not the stage holds a chunk of its own.
        const __half* xbase = xs + static_cast<std::size_t>(kb0) * k_block_rows + t * (CR / 4);
        const float* sbase = xsum + kb0 * 8 + 2 * t;
        const __half* xp = xbase;
        const float* sp = sbase;
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f}, out[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        int blocks_left = nkb, tl = 0;
        for (int u = 0; u < stages; ++u, ++i) {
            const uint4* stage = ring.acquire(i);
            const bool mine = u < units;
            uint4 wv = make_uint4(0u, 0u, 0u, 0u);
            uint2 md = make_uint2(0u, 0u);
            if (mine) {
                wv = stage[w * 32 + lane];
                if (u % CPB == CPB - 1)
                    md = reinterpret_cast<const uint2*>(stage + k_consumer_warps * k_chunk_bytes / 16)[w * 8 + g];
            }
            ring.release(i, lane);
            if (!mine) continue;
            std::uint32_t xw[4 * XV];
            a_ops::load_x_words<XV>(xp, xw);
            xp += CR;
            const std::uint32_t wq[a_lane_words(k_bits)] = {wv.x, wv.y, wv.z, wv.w};
            if (u % CPB == 0) {
#pragma unroll
                for (int q = 0; q < 4; ++q) acc[q] = 0.0f;
            }
            a_ops::chunk_mmas<k_bits, XV, MMAS>(wq, xw, acc);
            if (u % CPB == CPB - 1) {
                a_ops::correct_block<k_bits>(out, acc, md, sp);
                if (--blocks_left == 0) {  // this warp's slice of the mtile is done: park its partial sums (row 0)
                    float* slot = red + static_cast<std::size_t>(tl * k_consumer_warps + w) * k_a_tile_cols;
                    if (t == 0) {
                        slot[g] = out[0];
                        slot[g + 8] = out[2];
                    }
#pragma unroll
                    for (int q = 0; q < 4; ++q) out[q] = 0.0f;
                    blocks_left = nkb;
                    ++tl;
                    xp = xbase;
                    sp = sbase;
                }
            }
        }
        consumers_sync();
        // v3's epilogue: the 16 warps' partials of an output added in warp order, rounded to fp16; here two adjacent
        // outputs per thread, stored once as one word.
        for (int j = tid; j < ntl * 8; j += k_consumers) {
            const int tile = j / 8, col = 2 * (j % 8);
            float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
            for (int wq = 0; wq < k_consumer_warps; ++wq) {
                s0 += red[(tile * k_consumer_warps + wq) * k_a_tile_cols + col];
                s1 += red[(tile * k_consumer_warps + wq) * k_a_tile_cols + col + 1];
            }
            const std::uint32_t lo = __half_as_ushort(__float2half_rn(s0)), hi = __half_as_ushort(__float2half_rn(s1));
            const int n0 = (t0 + tile) * static_cast<int>(k_a_tile_cols) + col;
            store_once(e.y + n0 / 2, written_word(lo | (hi << 16)));
        }
        consumers_sync();  // the partials and x are rewritten by the next linear
    }
#else
    (void)table, (void)count, (void)max_kb, (void)counter;
    __trap();
#endif
}

std::size_t chain_smem(int max_kb) {
    return static_cast<std::size_t>(k_chain_stages) * k_chain_stage_bytes + static_cast<std::size_t>(max_kb) * k_block_rows * 2 +
           static_cast<std::size_t>(max_kb) * 8 * sizeof(float) +
           static_cast<std::size_t>(k_chain_max_tiles) * k_consumer_warps * k_a_tile_cols * sizeof(float);
}

int max_kblocks(const std::vector<chain_linear>& linears) {
    int most = 0;
    for (const chain_linear& l : linears) most = std::max(most, l.kblocks);
    return most;
}

}  // namespace

chain_plan plan_gptq_chain(const std::vector<chain_linear>& linears) {
    if (linears.empty() || linears.size() > static_cast<std::size_t>(k_chain_max_linears))
        throw error("gptq chain: 1 to " + std::to_string(k_chain_max_linears) + " linears, not " + std::to_string(linears.size()));
    for (std::size_t i = 0; i < linears.size(); ++i) {
        const chain_linear& l = linears[i];
        const std::string which = "gptq chain: linear " + std::to_string(i);
        if (l.qweight == nullptr || l.meta == nullptr) throw error(which + " has no weights");
        if (l.n <= 0 || l.n % static_cast<int>(k_a_tile_cols) != 0) throw error(which + ": n = " + std::to_string(l.n) + " is not a multiple of 16");
        if (l.kblocks < 1 || l.kblocks > k_chain_max_kblocks)
            throw error(which + ": K = " + std::to_string(l.kblocks * k_block_rows) + " is outside 128 .. " +
                        std::to_string(k_chain_max_kblocks * k_block_rows));
        if (i > 0 && l.kblocks * static_cast<int>(k_block_rows) != linears[i - 1].n)
            throw error(which + ": K = " + std::to_string(l.kblocks * k_block_rows) + " but the previous linear gives " +
                        std::to_string(linears[i - 1].n));
    }
    chain_plan plan;
    plan.linears = static_cast<int>(linears.size());
    plan.max_kblocks = max_kblocks(linears);
    for (const chain_linear& l : linears) plan.y_words += static_cast<std::size_t>(l.n) / 2;
    plan.smem = chain_smem(plan.max_kblocks);
    QB_CUDA_CHECK(cudaFuncSetAttribute(gptq_chain_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(plan.smem)));
    int per_sm = 0, device = 0, sms = 0;
    QB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gptq_chain_kernel, k_chain_threads, plan.smem));
    QB_CUDA_CHECK(cudaGetDevice(&device));
    QB_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    if (per_sm < 1) throw error("gptq chain: a CTA with " + std::to_string(plan.smem) + " bytes of shared memory does not fit an SM");
    plan.ctas = std::min(per_sm, 2) * sms;
    for (std::size_t i = 0; i < linears.size(); ++i) {
        const int mtiles = linears[i].n / static_cast<int>(k_a_tile_cols);
        if ((mtiles + plan.ctas - 1) / plan.ctas > k_chain_max_tiles)
            throw error("gptq chain: linear " + std::to_string(i) + " gives a CTA more than " + std::to_string(k_chain_max_tiles) + " mtiles");
    }
    return plan;
}

void upload_gptq_chain(const chain_plan& plan, const std::vector<chain_linear>& linears, const std::uint32_t* x0,
                       std::uint32_t* y, void* scratch, cudaStream_t stream) {
    if (static_cast<int>(linears.size()) != plan.linears) throw error("gptq chain: the plan was made for another chain");
    std::vector<chain_entry> table;
    std::size_t words = 0;
    const std::uint32_t* x = x0;
    for (const chain_linear& l : linears) {
        table.push_back(chain_entry{reinterpret_cast<const uint4*>(l.qweight), reinterpret_cast<const uint2*>(l.meta), x, y + words,
                                    l.n, l.n / static_cast<int>(k_a_tile_cols), l.kblocks, 0});
        x = y + words;
        words += static_cast<std::size_t>(l.n) / 2;
    }
    QB_CUDA_CHECK(cudaMemcpyAsync(scratch, table.data(), table.size() * sizeof(chain_entry), cudaMemcpyHostToDevice, stream));
    QB_CUDA_CHECK(cudaStreamSynchronize(stream));  // the host table must outlive the copy
}

void enqueue_gptq_chain(const chain_plan& plan, std::uint32_t* y, void* scratch, cudaStream_t stream) {
    auto* counter = reinterpret_cast<unsigned*>(static_cast<unsigned char*>(scratch) + k_counter_offset);
    QB_CUDA_CHECK(cudaMemsetAsync(counter, 0, sizeof(unsigned), stream));
    QB_CUDA_CHECK(cudaMemsetAsync(y, 0xff, plan.y_words * 4, stream));  // every output unwritten (write_once.cuh)
    launch_options o{stream, false};
    o.cooperative = true;  // consumers wait for other CTAs' outputs: every CTA must be resident
    launch_kernel(gptq_chain_kernel, dim3(static_cast<unsigned>(plan.ctas)), dim3(k_chain_threads), plan.smem, o,
                  static_cast<const chain_entry*>(scratch), plan.linears, plan.max_kblocks, counter);
}

}  // namespace qbench::gptq
