#pragma once
// Batch-1 GEMV kernels built for bandwidth ("team" kernels, v3): 4-bit NF4/FP4 (plain or double-quantized absmax)
// and LLM.int8() with the activation quantization folded into the same kernel.
//
// This internal header holds what both team kernels share (bnb_gemv_team_4bit.cu, bnb_gemv_team_int8.cu): the kernel
// arguments, a team's share of a group, where a batch's slots land (groups and SwiGLU pairs) and their epilogue, the
// warp transpose-sum, the L2 prefetch hint. It defines only inline functions and constants, templates and structs
// (in qbench::bnb::detail), so several .cu files may include it. The 4-bit decode and the int8 arithmetic live with
// their kernels; the launch shapes and the grid planning in bnb_team_geometry.cuh.
//
// Work split. A team is as many threads as a row has 32-column slices (K / 32, rounded up to whole warps); thread t
// of a team always owns columns [32t, 32t + 32) (4-bit: the 16-byte chunk t of every row; int8: the 16-byte chunks t
// and t + K/32), so its activations stay in registers for the whole kernel and are read once. Every team works on
// one member of a group (teams are shared out in proportion to the members' rows, team_args::team_begin) and owns a
// contiguous range of its rows, walked U at a time; per row a thread makes one 16-byte coalesced load (two for int8)
// and the team sums its partials: warp shuffles, then shared memory across the team's warps. So a load is a pointer
// step: placing every load from scratch in the concatenated rows of a group (member selects over the kernel
// parameters) cost about as many instructions as decoding the row (SASS: 2880 instructions in the U=8 kernel against
// 1528 before groups; the H200 per-layer times rose 30-80%, fifth session). Loads run U rows ahead in a ring of registers (U * 16 bytes per thread in flight), and
// the first U rows are requested before the programmatic-dependent-launch wait, so the weight stream of a kernel
// starts while its predecessor drains.
//
// Groups (fusion, cuda/fused_linear.hpp): a launch takes up to three weights of one K (q, k, v) and treats their
// concatenated output rows as one work range, so a single launch streams all of them and pays one ramp-up and tail; a
// single linear is the group of one, so both paths run the same machine code. SwiGLU mode (its own instantiation, see
// gemv_4bit_team_kernel) pairs gate and up row by row in one team (even slots gate, odd slots the same row of up, read
// at a fixed distance from the gate row) and writes fp16(silu(g) * u) from the team's first warp.
#include "backends/bnb/bnb_device_common.cuh"
#include "cuda/l2_prefetch.cuh"
#include "cuda/rms_norm.cuh"
#include "cuda/swiglu.cuh"

#include <cstdint>
#include <cstring>

namespace qbench::bnb::detail {

inline constexpr int k_team_max_threads = 512;
inline constexpr int k_team_max_warps = k_team_max_threads / 32;

__device__ __forceinline__ __half2 bits_half2(std::uint32_t u) {
    __half2 h;
    memcpy(&h, &u, sizeof(u));
    return h;
}

// The L2 hint of cuda/l2_prefetch.cuh: one instruction per row keeps the memory queues full without registers.
using qbench::prefetch_l2;

// Warp sums of U values (one per row) at once: log2(U) exchange stages halve the values a lane holds (the upper
// lanes of each stage keep the upper half), then plain butterflies finish. Afterwards every lane holds the warp's sum
// of slot transpose_slot<U>(lane); lanes with lane % (32 / U) == 0 hold distinct slots. ~U + 5 - log2(U) shuffles for U rows
// instead of 5 * U.
template <int U>
__device__ __forceinline__ float transpose_sum(float (&v)[U], int lane) {
    static_assert(U >= 1 && U <= 32 && (U & (U - 1)) == 0, "U must be a power of two <= 32");
#pragma unroll
    for (int half = U / 2, off = 16; half >= 1; half /= 2, off /= 2) {
        const bool upper = (lane & off) != 0;
#pragma unroll
        for (int i = 0; i < half; ++i) {
            const float keep = upper ? v[i + half] : v[i];
            const float send = upper ? v[i] : v[i + half];
            v[i] = keep + __shfl_xor_sync(0xffffffffu, send, off);
        }
    }
#pragma unroll
    for (int off = 16 / U; off > 0; off /= 2) v[0] += __shfl_xor_sync(0xffffffffu, v[0], off);
    return v[0];
}

// The row slot whose sum transpose_sum<U> leaves in `lane`.
template <int U>
__device__ __forceinline__ int transpose_slot(int lane) {
    int slot = 0;
#pragma unroll
    for (int half = U / 2, off = 16; half >= 1; half /= 2, off /= 2)
        if (lane & off) slot += half;
    return slot;
}

/// Kernel arguments besides the tensors (all sizes fit 32 bits: a team kernel is only launched when they do).
struct team_args {
    int team_threads = 0;  ///< threads per team (the row's 32-column slices rounded up to whole warps)
    int batches = 0;       ///< batches of U slots per team, the same for every team (barriers are CTA-wide)
    int nested_log2 = 8;   ///< log2 of the nested block size (double quantization)
    int prefetch = 0;      ///< L2 prefetch distance in batches (0: none)
    /// Batches 1..N into L2 before the PDL wait only, none in the loop (QBENCH_BNB_L2PRE, measurement: a CTA that
    /// becomes resident while the previous kernel's last CTAs run puts its rows in flight then; 0: none). Measured on
    /// the H200: +12% per 7B stack (PERF_NOTES.md, eleventh session).
    int prefetch_early = 0;
    /// Teams [team_begin[m], team_begin[m + 1]) work on member m (SwiGLU: all on the row pairs, as member 0); entries
    /// past the last member equal the team count.
    unsigned team_begin[4] = {0, 0, 0, 0};
};

/// What a launch does with a team's sums: store them (groups, single linears), pair gate and up into the SwiGLU
/// product, or add them into the residual stream (o_proj, down_proj: fused_linear::forward_residual[_normed]). A
/// template parameter of the kernels: each mode's epilogue costs registers the others should not pay.
enum class team_epilogue { store, swiglu, residual };

/// team_epilogue::residual: y (member 0's output, one member) is the residual stream, y = fp16(y + fp16(sum)) as
/// launch_rms_norm's add rounds it; with residual_norm::out set (bnb_kernels.cuh), the launch's last CTA then forms
/// the next RMSNorm by rms_norm.cuh's contract (last_block_rms_norm), so no RMSNorm kernel follows.
/// The fast RMSNorm kernel's warps each CTA warp stands for in the last CTA's norm (rms_norm_row_by_warps): hidden
/// <= 8192 in CTAs of at least 4 warps (the host checks rms_norm_warps_fit).
inline constexpr int k_team_norm_per = 8;

/// A team's share: member m, its rows [r0, r1).
struct team_work {
    unsigned m = 0, r0 = 0, r1 = 0;
};
/// `rows` of member 0, 1, 2 (SwiGLU: the pairs as member 0).
__device__ __forceinline__ team_work work_of(const team_args& p, unsigned rows0, unsigned rows1, unsigned rows2,
                                             unsigned g) {
    team_work w;
    w.m = (g >= p.team_begin[1] ? 1u : 0u) + (g >= p.team_begin[2] ? 1u : 0u);
    const unsigned first = w.m == 0 ? p.team_begin[0] : (w.m == 1 ? p.team_begin[1] : p.team_begin[2]);
    const unsigned next = w.m == 0 ? p.team_begin[1] : (w.m == 1 ? p.team_begin[2] : p.team_begin[3]);
    const unsigned rows = w.m == 0 ? rows0 : (w.m == 1 ? rows1 : rows2);
    const std::uint64_t teams = next - first, i = g - first;
    w.r0 = static_cast<unsigned>(rows * i / teams);
    w.r1 = static_cast<unsigned>(rows * (i + 1) / teams);
    return w;
}

// Member fields are picked with selects: a dynamic index into the kernel parameters would go through local memory.
template <class T>
__device__ __forceinline__ T pick3(unsigned m, T a, T b, T c) {
    return m == 0 ? a : (m == 1 ? b : c);
}

/// Where slot u of batch b of a team with share w lands: member m, its row, and whether that row exists.
struct slot_place {
    unsigned m = 0, row = 0;
    bool valid = false;
};

// SwiGLU slots come in pairs: slot 2i holds a gate row, slot 2i + 1 the same row of up, so one row cursor serves both
// (the up row sits at a fixed distance from the gate row, up_distance) and a team keeps a single stream of rows.
__device__ __forceinline__ bool is_up_slot(bool swiglu, int u) { return swiglu && (u & 1) != 0; }

/// The byte distance from member 0's array to member 1's (the same for every thread, so it costs no registers):
/// SwiGLU reads the up row at the gate row's address plus this.
template <class T>
__device__ __forceinline__ std::uint64_t up_distance(const T* gate, const T* up) {
    return reinterpret_cast<std::uintptr_t>(up) - reinterpret_cast<std::uintptr_t>(gate);
}
template <class T>
__device__ __forceinline__ const T* at_distance(const T* p, std::uint64_t distance) {
    return reinterpret_cast<const T*>(reinterpret_cast<std::uintptr_t>(p) + distance);
}

template <int U>
__device__ __forceinline__ slot_place place_of(bool swiglu, unsigned b, unsigned u, const team_work& w) {
    slot_place s;
    if (swiglu) {
        constexpr unsigned H = U / 2;
        s.m = u & 1u;
        s.row = w.r0 + b * H + u / 2;
    } else {
        s.m = w.m;
        s.row = w.r0 + b * U + u;
    }
    s.valid = s.row < w.r1;
    return s;
}

// The epilogue of slot t (run by the team's whole first warp; lanes t >= U carry nothing): store h, or in SwiGLU mode
// fetch the up value from lane t + 1 and store fp16(silu(g) * u) exactly as launch_swiglu rounds it.
/// team_epilogue::residual: the stream's value at slot t's row, requested at the top of the batch so that its round
/// trip hides behind the batch (read past L1: the previous kernel wrote it).
template <int U>
__device__ __forceinline__ __half residual_prior(const __half* y, const slot_place& s, unsigned t) {
    return t < U && s.valid ? __ldcg(y + s.row) : __float2half_rn(0.0f);
}
/// team_epilogue::residual: slot t's row of the stream, updated.
template <int U>
__device__ __forceinline__ void add_slot(__half* y, const slot_place& s, unsigned t, __half prior, __half h) {
    if (t < U && s.valid) y[s.row] = rms_residual_add(prior, h);
}

template <int U>
__device__ __forceinline__ void store_slot(__half* y0, __half* y1, __half* y2, bool swiglu, const slot_place& s,
                                           unsigned t, __half h) {
    if (swiglu) {
        const unsigned up_bits = __shfl_down_sync(0xffffffffu, static_cast<unsigned>(__half_as_ushort(h)), 1);
        const __half up = __ushort_as_half(static_cast<unsigned short>(up_bits));
        if (t < U && (t & 1u) == 0 && s.valid) y0[s.row] = __float2half_rn(silu_times(__half2float(h), __half2float(up)));
    } else if (t < U && s.valid) {
        pick3(s.m, y0, y1, y2)[s.row] = h;
    }
}

}  // namespace qbench::bnb::detail
