#pragma once
/// Fused GPTQ kernel v2: dequantize into mma.sync B fragments, multiply on the tensor cores (fp32 accumulation),
/// for 1..8 activation rows in one launch (the A operand has 16 rows; rows past the batch are zero and cost nothing,
/// so batch 2..8 reads the weights once at the price of batch 1). Weights in the mma layout of gptq_device_layout.hpp.
///
/// Work split (one wave, no split-K, deterministic):
///   CTA (8 warps) owns a contiguous range of n8 tiles (at most k_mma_max_tiles) and all of K; warp w owns k-slice
///   w (k-blocks [KB*w/8, KB*(w+1)/8)) of every tile of the CTA and walks its units (tile, k-block) tile by tile:
///   one contiguous stream of weights and one of per-unit scales/zeros (the layout's unit order), `stages` units in
///   flight, the first ones issued before pdl_wait (weights never change).
///   Per unit a lane decodes its 16 row pairs (magic number in one LOP3, hsub2 of the zero: exact), loads x for its
///   row once per slab (one 16-byte load, used unchanged as the A quad, see slab_mma2), runs 8 mma m16n8k16 into
///   fresh accumulators and adds them times the block's scale (fp32) to its running sums; per-slab scaling from the
///   group meta when a block straddles groups (group size 32 or 64) or its group is not kb >> shift.
///   At the end of a tile each warp stores its partial sums (rows x 8 columns) in shared memory; after the loop the
///   CTA adds the 8 warps' partials in a fixed order and writes fp16.
/// sm_75 has no m16n8k16: two m16n8k8 per step (the same fragments split in k).
/// mma_fused_kernel runs the same unit loop over up to 3 linears of one input (q/k/v; gate/up with the SwiGLU
/// product in the epilogue) in one launch, bit-identical to separate launches: "Fused launches" below.
/// Measured on the H200 and read in SASS: PERF_NOTES.md.
#include "backends/gptq/gptq_decode.hpp"
#include "backends/gptq/gptq_device_layout.hpp"
#include "backends/gptq/gptq_stream_load.cuh"
#include "cuda/launch.cuh"
#include "cuda/swiglu.cuh"

#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

namespace qbench::gptq {

inline constexpr int k_mma_threads = 256;
inline constexpr int k_mma_warps = k_mma_threads / 32;
inline constexpr int k_mma_max_rows = 8;
inline constexpr int k_mma_max_tiles = 16;

struct mma_args {
    const std::uint32_t* qweight = nullptr;      ///< [unit (unit_index order)][32 * bits]
    const std::uint32_t* meta = nullptr;         ///< group meta [ntiles][groups][6] (per-slab path)
    const std::uint32_t* unit_meta = nullptr;    ///< unit meta [unit][6] (block path)
    const std::int32_t* slab_group = nullptr;    ///< [kblocks * 4] (per-slab path; padded with the last group)
    const __half* x = nullptr;                   ///< [rows][ldx], 16-byte aligned rows, kblocks*128 readable per
                                                 ///< row, zero past K
    std::int64_t ldx = 0;
    __half* y = nullptr;                         ///< [rows][n]
    int n = 0;
    int rows = 1;
    int slabs = 0;
    int kblocks = 0;
    int ntiles = 0;
    int groups = 0;
    int group_shift = 0;                         ///< block path: group of block kb = kb >> group_shift
};

/// Dynamic shared memory of a launch: one fp32 partial per (tile of the CTA, warp, row, column).
inline std::size_t mma_smem_bytes(int max_tiles_per_cta, int rows) {
    return static_cast<std::size_t>(max_tiles_per_cta) * k_mma_warps * rows * 8 * sizeof(float);
}

using mma_launcher = void (*)(const mma_args& args, int ctas, const launch_options& o);

/// Variants of the v2 kernel: 2 CTAs per SM with a deeper pipeline (default), 3 CTAs per SM under a register cap
/// of 85 (QBENCH_GPTQ_OCC=3), and the default shape with its weights read past L1 (QBENCH_GPTQ_LOAD=na,
/// gptq_stream_load.cuh); PERF_NOTES.md has them measured.
enum class mma_variant : int { occ2 = 0, occ3 = 1, occ2_l1na = 2 };

/// The launcher / kernel for a width (2, 3, 4, 8), whether every k-block lies in one group, and a variant; nullptr
/// for other widths.
mma_launcher mma_launcher_for(int bits, bool block_groups, mma_variant v);
const void* mma_kernel_for(int bits, bool block_groups, mma_variant v);
/// Per-width tables (one translation unit per width): entry 2 * variant + block_groups.
const mma_launcher* mma_launchers_b2();
const mma_launcher* mma_launchers_b3();
const mma_launcher* mma_launchers_b4();
const mma_launcher* mma_launchers_b8();
const void* mma_kernel_b2(int variant);
const void* mma_kernel_b3(int variant);
const void* mma_kernel_b4(int variant);
const void* mma_kernel_b8(int variant);

/// Converts AutoGPTQ's qweight [ceil(k/32)*bits][n] (device) into the mma layout (device), through row_of.
void launch_repack_mma(int bits, const std::int32_t* qweight_autogptq, const std::int32_t* row_of, std::int64_t k,
                       std::int64_t n, int kblocks, int ntiles, std::uint32_t* qweight_device, const launch_options& o);

/// Reconstructs W^T [k][n] fp16 (original row order) from the mma layout (groups per sorted row from row_group).
void launch_reconstruct_mma(int bits, const std::uint32_t* qweight, const std::uint32_t* meta,
                            const std::int32_t* row_group, const std::int32_t* row_of, std::int64_t k, std::int64_t n,
                            int kblocks, int ntiles, int groups, __half* w_t, const launch_options& o);

/// ---- Fused launches (harness/cuda/fused_linear.hpp): several linears of one input in one kernel ---------------
///
/// q, k and v: the segments' n8 tiles, concatenated, are one work range cut into contiguous CTA ranges as above; a
/// CTA's range is at most k_mma_max_segments pieces (segment, its tiles [lt, lt + nt)), each one contiguous stream
/// of that segment's layout, walked one after the other. gate and up (swiglu): the work range is the tile pairs
/// (gate tile t, up tile t); a CTA owns pairs [p0, p1) as two pieces, gate tiles then up tiles, so its epilogue holds
/// both sums of every output and writes fp16(silu(fp16 g) * fp16 u) (silu_times, as launch_swiglu).
/// Every output column is summed exactly as the single launch sums it (same k-slice per warp, same unit order within
/// the warp, same fixed-order reduction over the warps): bit-identical to separate forwards.
inline constexpr int k_mma_max_segments = 3;

/// One linear of a fused launch (all share K, groups, row order and block grouping).
struct mma_segment {
    const std::uint32_t* qweight = nullptr;
    const std::uint32_t* meta = nullptr;
    const std::uint32_t* unit_meta = nullptr;
    __half* y = nullptr;  ///< [rows][n]; swiglu: segment 0's y receives the product, segment 1's is not used
    int n = 0;
    int ntiles = 0;
};

/// common: x, ldx, rows, slabs, kblocks, groups, group_shift, slab_group of all segments; common.ntiles is the work
/// range (q/k/v: the sum of the segments' tiles; swiglu: the tile pairs); common.qweight/meta/y are not used.
struct mma_fused_args {
    mma_args common;
    mma_segment seg[k_mma_max_segments];
    int count = 1;
};

enum class mma_fusion : int { group = 0, swiglu = 1 };

using mma_fused_launcher = void (*)(const mma_fused_args& args, int ctas, const launch_options& o);

/// Dynamic shared memory of a fused launch with at most `max_work_per_cta` work items (tiles, or pairs) per CTA.
inline std::size_t mma_fused_smem_bytes(mma_fusion mode, int max_work_per_cta, int rows) {
    return mma_smem_bytes((mode == mma_fusion::swiglu ? 2 : 1) * (max_work_per_cta + 1), rows);
}
/// The most work items one CTA may own (the shared-memory partials stay under 48 KB).
inline constexpr int mma_fused_max_work(mma_fusion mode) {
    return mode == mma_fusion::swiglu ? k_mma_max_tiles / 2 : k_mma_max_tiles;
}

/// The fused launcher / kernel for a width (2, 3, 4, 8) and block grouping, at the default variant (2 CTAs per SM);
/// nullptr for other widths.
mma_fused_launcher mma_fused_launcher_for(int bits, bool block_groups, mma_fusion mode);
const void* mma_fused_kernel_for(int bits, bool block_groups, mma_fusion mode);
/// Per-width tables (one translation unit per width): entry 2 * mode + block_groups.
const mma_fused_launcher* mma_fused_launchers_b2();
const mma_fused_launcher* mma_fused_launchers_b3();
const mma_fused_launcher* mma_fused_launchers_b4();
const mma_fused_launcher* mma_fused_launchers_b8();
const void* mma_fused_kernel_b2(int entry);
const void* mma_fused_kernel_b3(int entry);
const void* mma_fused_kernel_b4(int entry);
const void* mma_fused_kernel_b8(int entry);

#if defined(__CUDACC__)
namespace detail {

/// Units in flight per warp: about 128 bytes per lane at 2 CTAs per SM (16 warps), about 64-80 at 3 (24 warps, a
/// register cap of 85).
template <int Bits, int Occ>
inline constexpr int k_mma_stages = Occ >= 3 ? (Bits == 2 ? 8 : (Bits == 3 ? 6 : (Bits == 4 ? 5 : 2)))
                                             : (Bits == 2 ? 16 : (Bits == 3 ? 10 : (Bits == 4 ? 8 : 4)));

__device__ __forceinline__ half2 u2h(std::uint32_t v) {
    half2 h;
    std::memcpy(&h, &v, sizeof(h));
    return h;
}
__device__ __forceinline__ std::uint32_t h2u(half2 h) {
    std::uint32_t v;
    std::memcpy(&v, &h, sizeof(v));
    return v;
}

/// d += A * B with the whole A quad (a0..a3) as loaded: see slab_mma2.
__device__ __forceinline__ void mma_quad(float (&d)[4], const uint4& a, std::uint32_t b0, std::uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b0), "r"(b1));
#else
    asm("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a.x), "r"(a.y), "r"(b0));
    asm("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a.z), "r"(a.w), "r"(b1));
#endif
}

/// (u & mask) | magic in one LOP3 (the compiler splits the C++ form into two).
template <std::uint32_t Mask, std::uint32_t Magic>
__device__ __forceinline__ std::uint32_t and_or(std::uint32_t u) {
    std::uint32_t r;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(u), "n"(Mask), "n"(Magic));
    return r;
}

/// Pair P of a lane's stream minus its zero pair: (q_lo - z, q_hi - z) as half2 bits (exact).
template <int Bits, int P>
__device__ __forceinline__ std::uint32_t lane_b(const std::uint32_t (&w)[Bits], std::uint32_t zz) {
    using g = pair_geometry<Bits>;
    if constexpr (Bits == 3 && P == 15) {
        const std::uint32_t v = decode_special_pair3(w[0], w[1], w[2]);
        return h2u(__hsub2(u2h(v), u2h(zz | 0x64006400u)));
    } else {
        constexpr int j = P % g::pairs_per_word;
        constexpr int f = g::field_shift(j);
        constexpr std::uint32_t field = ((1u << Bits) - 1u) << f;
        constexpr std::uint32_t magic = magic_half(f) * 0x00010001u;
        const std::uint32_t v = and_or<field | (field << 16), magic>(w[P / g::pairs_per_word] >> g::source_shift(j));
        return h2u(__hsub2(u2h(v), u2h((zz << f) | magic)));
    }
}

/// Slab J of the unit with the 16-byte x load used as the A quad unchanged (no register moves): x rows 8q+0..7 as
/// (a0, a1, a2, a3) = (r0 r1, r2 r3, r4 r5, r6 r7). Step 0 pairs (a0, a2) with B pairs P0 (rows 0,1), P2 (rows
/// 4,5) and keeps D rows 0..7 (d0[0..1]); step 1 pairs (a1, a3) -- A rows 8..15, which hold row g's own data --
/// with P1 (rows 2,3), P3 (rows 6,7) and keeps D rows 8..15 (d1[2..3]). The other halves of d0, d1 are cross
/// terms, never read. zz = (z, z) in the two half-words.
template <int Bits, int J>
__device__ __forceinline__ void slab_mma2(const std::uint32_t (&w)[Bits], const uint4& xv, std::uint32_t zz,
                                          float (&d0)[4], float (&d1)[4]) {
    const std::uint32_t b0 = lane_b<Bits, 4 * J + 0>(w, zz), b1 = lane_b<Bits, 4 * J + 1>(w, zz);
    const std::uint32_t b2 = lane_b<Bits, 4 * J + 2>(w, zz), b3 = lane_b<Bits, 4 * J + 3>(w, zz);
    mma_quad(d0, xv, b0, b2);
    mma_quad(d1, xv, b1, b3);
}

template <int Bits>
__device__ __forceinline__ void block_mma2(const std::uint32_t (&w)[Bits], const uint4 (&xv)[4], std::uint32_t zz,
                                           float (&d0)[4], float (&d1)[4]) {
    slab_mma2<Bits, 0>(w, xv[0], zz, d0, d1);
    slab_mma2<Bits, 1>(w, xv[1], zz, d0, d1);
    slab_mma2<Bits, 2>(w, xv[2], zz, d0, d1);
    slab_mma2<Bits, 3>(w, xv[3], zz, d0, d1);
}

template <int Bits>
__device__ __forceinline__ void one_slab_mma2(const std::uint32_t (&w)[Bits], int j, const uint4& xv, std::uint32_t zz,
                                              float (&d0)[4], float (&d1)[4]) {
    switch (j) {
    case 0: slab_mma2<Bits, 0>(w, xv, zz, d0, d1); break;
    case 1: slab_mma2<Bits, 1>(w, xv, zz, d0, d1); break;
    case 2: slab_mma2<Bits, 2>(w, xv, zz, d0, d1); break;
    default: slab_mma2<Bits, 3>(w, xv, zz, d0, d1); break;
    }
}

/// A lane's `Bits` words of a unit from a pointer that already includes the lane's offset.
template <int Bits, bool NoAlloc = false>
__device__ __forceinline__ void load_unit_lane(const std::uint32_t* p, std::uint32_t (&w)[Bits]) {
    if constexpr (Bits % 4 == 0) {
#pragma unroll
        for (int v = 0; v < Bits / 4; ++v) {
            const uint4 u = stream_load<NoAlloc>(reinterpret_cast<const uint4*>(p + v * 128));
            w[4 * v + 0] = u.x;
            w[4 * v + 1] = u.y;
            w[4 * v + 2] = u.z;
            w[4 * v + 3] = u.w;
        }
    } else if constexpr (Bits == 2) {
        const uint2 u = stream_load<NoAlloc>(reinterpret_cast<const uint2*>(p));
        w[0] = u.x;
        w[1] = u.y;
    } else {
#pragma unroll
        for (int v = 0; v < Bits; ++v) w[v] = stream_load<NoAlloc>(p + v * 32);
    }
}

/// The kernel (see the top of this file). The units of a warp (its k-slice of consecutive tiles) are one
/// contiguous stream in the mma layout, and so is their unit meta: the loads advance by constant strides.
template <int Bits, bool BlockGroups, int Occ, bool NoAlloc = false>
__global__ void __launch_bounds__(k_mma_threads, Occ) mma_gemm_kernel(mma_args a) {
    static_assert(k_kslices == k_mma_warps, "one k-slice per warp");
    extern __shared__ float red[];  // [tile of the CTA][warp][row][8]
    constexpr int D = k_mma_stages<Bits, Occ>;
    constexpr int unit_words = 32 * Bits;
    const int tid = static_cast<int>(threadIdx.x);
    const int warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, q = lane & 3;
    const int ctas = static_cast<int>(gridDim.x), b = static_cast<int>(blockIdx.x);
    const int t0 = static_cast<int>(static_cast<long long>(a.ntiles) * b / ctas);
    const int t1 = static_cast<int>(static_cast<long long>(a.ntiles) * (b + 1) / ctas);
    const int kb0 = static_cast<int>(kslice_begin(a.kblocks, warp)), kb1 = static_cast<int>(kslice_begin(a.kblocks, warp + 1));
    const int nkb = kb1 - kb0;
    const int units = nkb * (t1 - t0);
    const int zword = 4 + (g >> 2);
    // Byte g&3 of the zero word into both half-words (PRMT): (z, z) ready to shift into a field position.
    const unsigned zsel = static_cast<unsigned>(g & 3) * 0x0101u + 0x4040u;

    // Load side: this warp's units are units first .. first + units - 1 of the layout.
    const std::size_t first = static_cast<std::size_t>(a.ntiles) * kb0 + static_cast<std::size_t>(t0) * nkb;
    const std::uint32_t* ldp = a.qweight + first * unit_words + lane * unit_vector_words(Bits);
    const std::uint32_t* lmp = a.unit_meta + first * k_meta_words;
    std::uint32_t buf[D][Bits];
    std::uint32_t mscale[D] = {}, mzero[D] = {};
    auto issue = [&](std::uint32_t(&w)[Bits], std::uint32_t& ms, std::uint32_t& mz) {
        load_unit_lane<Bits, NoAlloc>(ldp, w);
        ldp += unit_words;
        if constexpr (BlockGroups) {
            ms = __ldg(lmp + q);
            mz = __ldg(lmp + zword);
            lmp += k_meta_words;
        }
    };
    // Prologue: the first D units before waiting for the previous kernel (weights and meta never change).
#pragma unroll
    for (int i = 0; i < D; ++i)
        if (i < units) issue(buf[i], mscale[i], mzero[i]);

    const int red_count = (t1 - t0) * k_mma_warps * a.rows * 8;
    for (int i = tid; i < red_count; i += k_mma_threads) red[i] = 0.0f;
    __syncthreads();

    pdl_wait();  // x and y belong to the previous kernels
    pdl_trigger();

    // Compute side: x of this lane's row g, rows 8q.. of each slab. Lanes of rows past the batch read the last row
    // (their D rows are never stored); x is readable up to kblocks * 128, zero past K (the host stages it).
    const bool row_ok = g < a.rows;
    const __half* xbase = a.x + static_cast<std::size_t>(row_ok ? g : a.rows - 1) * a.ldx + 8 * q +
                          static_cast<std::size_t>(kb0) * k_block_rows;
    const __half* xp = xbase;
    const std::uint32_t* pr_meta = a.meta + static_cast<std::size_t>(t0) * a.groups * k_meta_words;  // per-slab path
    int pr_kb = kb0, pr_tl = 0;
    float acc0 = 0.0f, acc1 = 0.0f;
    for (int base = 0; base < units; base += D) {
#pragma unroll
        for (int i = 0; i < D; ++i) {
            if (base + i < units) {
                uint4 xv[4];
#pragma unroll
                for (int j = 0; j < 4; ++j) xv[j] = __ldg(reinterpret_cast<const uint4*>(xp + 32 * j));
                if constexpr (BlockGroups) {
                    const std::uint32_t zz = __byte_perm(mzero[i], 0u, zsel);
                    float d0[4] = {0.0f, 0.0f, 0.0f, 0.0f}, d1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                    block_mma2<Bits>(buf[i], xv, zz, d0, d1);
                    const float2 sc = __half22float2(u2h(mscale[i]));
                    acc0 = fmaf(sc.x, d0[0] + d1[2], acc0);
                    acc1 = fmaf(sc.y, d0[1] + d1[3], acc1);
                } else {
                    // slab_group is padded to kblocks * 4 entries (slabs past K: x is zero there).
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        const int grp = __ldg(a.slab_group + pr_kb * static_cast<int>(k_block_slabs) + j);
                        const std::uint32_t* rec = pr_meta + grp * static_cast<int>(k_meta_words);
                        const std::uint32_t zz = __byte_perm(__ldg(rec + zword), 0u, zsel);
                        const float2 sc = __half22float2(u2h(__ldg(rec + q)));
                        float d0[4] = {0.0f, 0.0f, 0.0f, 0.0f}, d1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                        one_slab_mma2<Bits>(buf[i], j, xv[j], zz, d0, d1);
                        acc0 = fmaf(sc.x, d0[0] + d1[2], acc0);
                        acc1 = fmaf(sc.y, d0[1] + d1[3], acc1);
                    }
                }
                if (base + i + D < units) issue(buf[i], mscale[i], mzero[i]);
                xp += k_block_rows;
                if (++pr_kb == kb1) {  // this warp's last block of the tile: park its partial sums
                    if (row_ok) {
                        float* slot = red + ((pr_tl * k_mma_warps + warp) * a.rows + g) * 8 + 2 * q;
                        *reinterpret_cast<float2*>(slot) = make_float2(acc0, acc1);
                    }
                    acc0 = acc1 = 0.0f;
                    pr_kb = kb0;
                    ++pr_tl;
                    xp = xbase;
                    pr_meta += static_cast<std::size_t>(a.groups) * k_meta_words;
                }
            }
        }
    }
    __syncthreads();
    const int outputs = (t1 - t0) * a.rows * 8;
    for (int i = tid; i < outputs; i += k_mma_threads) {
        const int tl = i / (a.rows * 8), rem = i % (a.rows * 8);
        const int r = rem >> 3, col = rem & 7;
        float s = 0.0f;
#pragma unroll
        for (int wp = 0; wp < k_mma_warps; ++wp) s += red[((tl * k_mma_warps + wp) * a.rows + r) * 8 + col];
        const int n = (t0 + tl) * 8 + col;
        if (n < a.n) a.y[static_cast<std::size_t>(r) * a.n + n] = __float2half_rn(s);
    }
}

template <int Bits, bool BlockGroups, int Occ, bool NoAlloc = false>
void launch_mma(const mma_args& args, int ctas, const launch_options& o) {
    const int max_tiles = (args.ntiles + ctas - 1) / ctas;
    launch_kernel(mma_gemm_kernel<Bits, BlockGroups, Occ, NoAlloc>, dim3(static_cast<unsigned>(ctas)), dim3(k_mma_threads),
                  mma_smem_bytes(max_tiles + 1, args.rows), o, args);
}

/// Entry 2 * variant + block_groups (variant: mma_variant).
template <int Bits>
struct mma_table {
    static constexpr mma_launcher launchers[6] = {&launch_mma<Bits, false, 2>,       &launch_mma<Bits, true, 2>,
                                                  &launch_mma<Bits, false, 3>,       &launch_mma<Bits, true, 3>,
                                                  &launch_mma<Bits, false, 2, true>, &launch_mma<Bits, true, 2, true>};
    static const void* kernel(int entry) {
        static const void* const kernels[6] = {reinterpret_cast<const void*>(&mma_gemm_kernel<Bits, false, 2>),
                                               reinterpret_cast<const void*>(&mma_gemm_kernel<Bits, true, 2>),
                                               reinterpret_cast<const void*>(&mma_gemm_kernel<Bits, false, 3>),
                                               reinterpret_cast<const void*>(&mma_gemm_kernel<Bits, true, 3>),
                                               reinterpret_cast<const void*>(&mma_gemm_kernel<Bits, false, 2, true>),
                                               reinterpret_cast<const void*>(&mma_gemm_kernel<Bits, true, 2, true>)};
        return entry >= 0 && entry < 6 ? kernels[entry] : nullptr;
    }
};

/// Piece s of a fused CTA's work (see "Fused launches"): segment s's local tiles [lt, lt + nt) inside the CTA's
/// range [t0, t1) of the work (nt = 0: none).
template <bool Swiglu>
__device__ __forceinline__ void fused_piece(const mma_fused_args& f, int s, int t0, int t1, int& lt, int& nt) {
    if constexpr (Swiglu) {
        lt = t0;
        nt = t1 - t0;
    } else {
        int start = 0;
        for (int i = 0; i < s; ++i) start += f.seg[i].ntiles;
        const int lo = max(t0, start), hi = min(t1, start + f.seg[s].ntiles);
        lt = lo - start;
        nt = max(0, hi - lo);
    }
}

/// The next non-empty piece after s (s = -1: the first). Called only while the CTA has units left, so one exists.
template <bool Swiglu>
__device__ __forceinline__ void next_fused_piece(const mma_fused_args& f, int t0, int t1, int& s, int& lt, int& nt) {
    do {
        ++s;
        fused_piece<Swiglu>(f, s, t0, t1, lt, nt);
    } while (nt == 0 && s + 1 < f.count);
}

/// The 8 warps' partial sums of (tile of the CTA, row, column), added in the order of mma_gemm_kernel's epilogue.
__device__ __forceinline__ float sum_partials(const float* red, int tl, int rows, int r, int col) {
    float s = 0.0f;
#pragma unroll
    for (int wp = 0; wp < k_mma_warps; ++wp) s += red[((tl * k_mma_warps + wp) * rows + r) * 8 + col];
    return s;
}

/// mma_gemm_kernel over several linears of one input (see "Fused launches"). The unit loop is the same code (same
/// sums); what differs is where the streams come from (pieces instead of one range) and the epilogue. Kept apart
/// from mma_gemm_kernel so the single-linear kernel's tuned instruction stream stays as measured.
template <int Bits, bool BlockGroups, int Occ, bool Swiglu>
__global__ void __launch_bounds__(k_mma_threads, Occ) mma_fused_kernel(const mma_fused_args f) {
    static_assert(k_kslices == k_mma_warps, "one k-slice per warp");
    extern __shared__ float red[];  // [tile of the CTA][warp][row][8]
    const mma_args& a = f.common;
    constexpr int D = k_mma_stages<Bits, Occ>;
    constexpr int unit_words = 32 * Bits;
    const int tid = static_cast<int>(threadIdx.x);
    const int warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, q = lane & 3;
    const int ctas = static_cast<int>(gridDim.x), b = static_cast<int>(blockIdx.x);
    const int t0 = static_cast<int>(static_cast<long long>(a.ntiles) * b / ctas);
    const int t1 = static_cast<int>(static_cast<long long>(a.ntiles) * (b + 1) / ctas);
    const int tiles = Swiglu ? 2 * (t1 - t0) : t1 - t0;
    const int kb0 = static_cast<int>(kslice_begin(a.kblocks, warp)), kb1 = static_cast<int>(kslice_begin(a.kblocks, warp + 1));
    const int nkb = kb1 - kb0;
    const int units = nkb * tiles;
    const int zword = 4 + (g >> 2);
    const unsigned zsel = static_cast<unsigned>(g & 3) * 0x0101u + 0x4040u;

    // Load side: piece by piece; within a piece the units are consecutive in the segment's layout.
    int ls = -1, lleft = 0;
    const std::uint32_t* ldp = nullptr;
    const std::uint32_t* lmp = nullptr;
    std::uint32_t buf[D][Bits];
    std::uint32_t mscale[D] = {}, mzero[D] = {};
    auto issue = [&](std::uint32_t(&w)[Bits], std::uint32_t& ms, std::uint32_t& mz) {
        if (lleft == 0) {
            int lt = 0, nt = 0;
            next_fused_piece<Swiglu>(f, t0, t1, ls, lt, nt);
            const std::size_t first = static_cast<std::size_t>(f.seg[ls].ntiles) * kb0 + static_cast<std::size_t>(lt) * nkb;
            ldp = f.seg[ls].qweight + first * unit_words + lane * unit_vector_words(Bits);
            lmp = f.seg[ls].unit_meta + first * k_meta_words;
            lleft = nt * nkb;
        }
        load_unit_lane<Bits>(ldp, w);
        ldp += unit_words;
        if constexpr (BlockGroups) {
            ms = __ldg(lmp + q);
            mz = __ldg(lmp + zword);
            lmp += k_meta_words;
        }
        --lleft;
    };
#pragma unroll
    for (int i = 0; i < D; ++i)
        if (i < units) issue(buf[i], mscale[i], mzero[i]);

    const int red_count = tiles * k_mma_warps * a.rows * 8;
    for (int i = tid; i < red_count; i += k_mma_threads) red[i] = 0.0f;
    __syncthreads();

    pdl_wait();  // x and y belong to the previous kernels
    pdl_trigger();

    const bool row_ok = g < a.rows;
    const __half* xbase = a.x + static_cast<std::size_t>(row_ok ? g : a.rows - 1) * a.ldx + 8 * q +
                          static_cast<std::size_t>(kb0) * k_block_rows;
    const __half* xp = xbase;
    // Compute side (per-slab path only): the group meta of the current tile, piece by piece like the loads.
    int cs = -1, cleft = 0;
    const std::uint32_t* pr_meta = nullptr;
    auto enter_tile = [&]() {
        if constexpr (!BlockGroups) {
            if (cleft == 0) {
                int lt = 0, nt = 0;
                next_fused_piece<Swiglu>(f, t0, t1, cs, lt, nt);
                pr_meta = f.seg[cs].meta + static_cast<std::size_t>(lt) * a.groups * k_meta_words;
                cleft = nt;
            } else {
                pr_meta += static_cast<std::size_t>(a.groups) * k_meta_words;
            }
            --cleft;
        }
    };
    if (units > 0) enter_tile();
    int pr_kb = kb0, pr_tl = 0;
    float acc0 = 0.0f, acc1 = 0.0f;
    for (int base = 0; base < units; base += D) {
#pragma unroll
        for (int i = 0; i < D; ++i) {
            if (base + i < units) {
                uint4 xv[4];
#pragma unroll
                for (int j = 0; j < 4; ++j) xv[j] = __ldg(reinterpret_cast<const uint4*>(xp + 32 * j));
                if constexpr (BlockGroups) {
                    const std::uint32_t zz = __byte_perm(mzero[i], 0u, zsel);
                    float d0[4] = {0.0f, 0.0f, 0.0f, 0.0f}, d1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                    block_mma2<Bits>(buf[i], xv, zz, d0, d1);
                    const float2 sc = __half22float2(u2h(mscale[i]));
                    acc0 = fmaf(sc.x, d0[0] + d1[2], acc0);
                    acc1 = fmaf(sc.y, d0[1] + d1[3], acc1);
                } else {
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        const int grp = __ldg(a.slab_group + pr_kb * static_cast<int>(k_block_slabs) + j);
                        const std::uint32_t* rec = pr_meta + grp * static_cast<int>(k_meta_words);
                        const std::uint32_t zz = __byte_perm(__ldg(rec + zword), 0u, zsel);
                        const float2 sc = __half22float2(u2h(__ldg(rec + q)));
                        float d0[4] = {0.0f, 0.0f, 0.0f, 0.0f}, d1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                        one_slab_mma2<Bits>(buf[i], j, xv[j], zz, d0, d1);
                        acc0 = fmaf(sc.x, d0[0] + d1[2], acc0);
                        acc1 = fmaf(sc.y, d0[1] + d1[3], acc1);
                    }
                }
                if (base + i + D < units) issue(buf[i], mscale[i], mzero[i]);
                xp += k_block_rows;
                if (++pr_kb == kb1) {  // this warp's last block of the tile: park its partial sums
                    if (row_ok) {
                        float* slot = red + ((pr_tl * k_mma_warps + warp) * a.rows + g) * 8 + 2 * q;
                        *reinterpret_cast<float2*>(slot) = make_float2(acc0, acc1);
                    }
                    acc0 = acc1 = 0.0f;
                    pr_kb = kb0;
                    ++pr_tl;
                    xp = xbase;
                    if (base + i + 1 < units) enter_tile();
                }
            }
        }
    }
    __syncthreads();
    const int per_tile = a.rows * 8;
    if constexpr (Swiglu) {
        // Gate tile tl and up tile P + tl; each sum rounded to fp16 as the separate linears store it, then the
        // product exactly as launch_swiglu forms it.
        const int P = t1 - t0;
        const int n_out = f.seg[0].n;
        for (int i = tid; i < P * per_tile; i += k_mma_threads) {
            const int tl = i / per_tile, rem = i % per_tile;
            const int r = rem >> 3, col = rem & 7;
            const int n = (t0 + tl) * 8 + col;
            if (n < n_out) {
                const float gs = __half2float(__float2half_rn(sum_partials(red, tl, a.rows, r, col)));
                const float us = __half2float(__float2half_rn(sum_partials(red, P + tl, a.rows, r, col)));
                f.seg[0].y[static_cast<std::size_t>(r) * n_out + n] = __float2half_rn(silu_times(gs, us));
            }
        }
    } else {
        for (int i = tid; i < tiles * per_tile; i += k_mma_threads) {
            const int tl = i / per_tile, rem = i % per_tile;
            const int r = rem >> 3, col = rem & 7;
            const int t = t0 + tl;
            int s = 0, start = 0;
            while (s + 1 < f.count && t >= start + f.seg[s].ntiles) start += f.seg[s++].ntiles;
            const int n = (t - start) * 8 + col;
            if (n < f.seg[s].n)
                f.seg[s].y[static_cast<std::size_t>(r) * f.seg[s].n + n] = __float2half_rn(sum_partials(red, tl, a.rows, r, col));
        }
    }
}

template <int Bits, bool BlockGroups, bool Swiglu>
void launch_mma_fused(const mma_fused_args& args, int ctas, const launch_options& o) {
    const int per_cta = (args.common.ntiles + ctas - 1) / ctas;
    launch_kernel(mma_fused_kernel<Bits, BlockGroups, 2, Swiglu>, dim3(static_cast<unsigned>(ctas)), dim3(k_mma_threads),
                  mma_fused_smem_bytes(Swiglu ? mma_fusion::swiglu : mma_fusion::group, per_cta, args.common.rows), o, args);
}

/// Entry 2 * mode + block_groups (mode: mma_fusion).
template <int Bits>
struct mma_fused_table {
    static constexpr mma_fused_launcher launchers[4] = {&launch_mma_fused<Bits, false, false>, &launch_mma_fused<Bits, true, false>,
                                                        &launch_mma_fused<Bits, false, true>, &launch_mma_fused<Bits, true, true>};
    static const void* kernel(int entry) {
        static const void* const kernels[4] = {reinterpret_cast<const void*>(&mma_fused_kernel<Bits, false, 2, false>),
                                               reinterpret_cast<const void*>(&mma_fused_kernel<Bits, true, 2, false>),
                                               reinterpret_cast<const void*>(&mma_fused_kernel<Bits, false, 2, true>),
                                               reinterpret_cast<const void*>(&mma_fused_kernel<Bits, true, 2, true>)};
        return entry >= 0 && entry < 4 ? kernels[entry] : nullptr;
    }
};

}  // namespace detail
#endif  // __CUDACC__

}  // namespace qbench::gptq
