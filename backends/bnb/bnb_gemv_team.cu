// Batch-1 GEMV kernels built for bandwidth ("team" kernels, v3): 4-bit NF4/FP4 (plain or double-quantized absmax)
// and LLM.int8() with the activation quantization folded into the same kernel.
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
// 4-bit decode: as v2 (bnb_gemv_4bit.cu), a byte -> half2 (code[hi], code[lo]) table in shared memory with one copy
// per lane (256 entries, 256-byte stride, the lane copies in the first 128 bytes: one PRMT makes the address), half2
// products over 8 weights, fp32 beyond. The spare upper halves of the entries hold the nested code book (double
// quantization) and the partial sums, so the kernel needs exactly 64 KiB of shared memory (the sm_75 limit).
//
// int8: each thread quantizes its 32 activations itself after a team-wide absmax (the row statistic of
// LLM.int8(): over |x| < threshold), keeps them as 8 packed int8 words and uses dp4a; outlier columns (|x| >=
// threshold) are zero in the int8 operand and summed in fp32 against the int8 weight, scaled by SCB / 127 at the end
// (the fp16-dequantized weight column of bitsandbytes' decomposition). No activation buffers, no second kernel.
//
// Groups (fusion, cuda/fused_linear.hpp): a launch takes up to three weights of one K (q, k, v) and treats their
// concatenated output rows as one work range, so a single launch streams all of them and pays one ramp-up and tail; a
// single linear is the group of one, so both paths run the same machine code. SwiGLU mode (its own instantiation, see
// gemv_4bit_team_kernel) pairs gate and up row by row in one team (even slots gate, odd slots the same row of up, read
// at a fixed distance from the gate row) and writes fp16(silu(g) * u) from the team's first warp.
//
// Launch shapes (team_config): rows in flight per thread, CTA size, CTAs per SM, a register budget (team_budget: 128,
// 80, 64 or 56 registers, i.e. the launch bounds) and an L2 bulk prefetch of later batches. On the H200 the plain
// shape (8 rows, 256-thread CTAs, two per SM, 128 registers, no prefetch: 16 warps per SM) measured fastest of the
// v3 shapes; the 80-register ones fit a CTA of the next kernel beside two of this one. The 32-warp shapes (seventh
// session) followed a memory-only probe on an H100 (bench_gptq BM_stream_pattern): a stream of 16 warps per SM reached
// 0.67-0.73 of DRAM whatever each warp kept in flight, 32 warps ~0.87 at the same depth per warp. To fit the register
// budget they keep fewer rows in flight per thread: U = 4 (int8: 2) in two 512-thread CTAs at 64 registers, and U = 2
// in three CTAs of up to 384 threads at 56 (K = 11008 is one 352-thread team: 33 warps; K = 4096 three teams: 36;
// every CTA holds the 64 KiB table, so three CTAs per SM is also the shared-memory limit). Measured on an H100 they
// lose to the default (7B nf4 stack 1855 / 1923 us against 1810; int8-t6 3022 / 3209 against 2713): more warps at
// half or a quarter of the depth do not put more bytes in flight. They stay for benchmarks.
#include "backends/bnb/bnb_device_common.cuh"
#include "cuda/reduce.cuh"
#include "cuda/swiglu.cuh"

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

namespace qbench::bnb {

namespace {

constexpr int k_team_max_threads = 512;
constexpr int k_team_max_warps = k_team_max_threads / 32;
constexpr std::size_t k_team_lut_bytes = 256 * 256;  // 64 KiB

__device__ __forceinline__ __half2 bits_half2(std::uint32_t u) {
    __half2 h;
    memcpy(&h, &u, sizeof(u));
    return h;
}

// A hint: bring [p, p + bytes) into L2 through the bulk copy engine (sm_90; p and bytes multiples of 16). One
// instruction per row keeps the memory queues full without registers or shared memory; elsewhere a no-op.
__device__ __forceinline__ void prefetch_l2(const void* p, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
    (void)p;
    (void)bytes;
#endif
}

// Byte offset of spare word i (i < 8192) in the upper, unused half of the 256-byte table entries: word i sits in
// bank i % 32, as in a flat array.
__device__ __forceinline__ std::uint32_t spare_offset(std::uint32_t i) {
    return ((i >> 5) << 8) | 128u | ((i & 31u) << 2);
}
__device__ __forceinline__ float& spare_float(unsigned char* smem, std::uint32_t i) {
    return *reinterpret_cast<float*>(smem + spare_offset(i));
}

// Nested code books (one per group member, 256 words each), then the partial sums.
constexpr std::uint32_t k_spare_nested = 0;  // member m's book at words 256 m .. (the kernel takes m = word >> 8)
constexpr std::uint32_t k_spare_partial = 256 * k_team_max_members;
static_assert(k_spare_nested == 0, "the nested book's word names its member");

template <int J>
__device__ __forceinline__ std::uint32_t table_address(std::uint32_t word, std::uint32_t lane4) {
    return __byte_perm(word, lane4, 0x5504u | (J << 4));
}
__device__ __forceinline__ __half2 table_load(const unsigned char* lut, std::uint32_t address) {
    return bits_half2(*reinterpret_cast<const std::uint32_t*>(lut + address));
}
// sum over a 16-byte chunk of code(w) * x: two half2 chains of 16 weights (8 products per half), fp32 across.
__device__ __forceinline__ float chunk_dot(const unsigned char* lut, std::uint32_t lane4, const uint4& wv,
                                           const __half2* xs) {
    const std::uint32_t words[4] = {wv.x, wv.y, wv.z, wv.w};
    float s = 0.0f;
#pragma unroll
    for (int p = 0; p < 2; ++p) {
        const std::uint32_t w0 = words[2 * p], w1 = words[2 * p + 1];
        const __half2* xp = xs + 8 * p;
        __half2 h = __hmul2(table_load(lut, table_address<0>(w0, lane4)), xp[0]);
        h = __hfma2(table_load(lut, table_address<1>(w0, lane4)), xp[1], h);
        h = __hfma2(table_load(lut, table_address<2>(w0, lane4)), xp[2], h);
        h = __hfma2(table_load(lut, table_address<3>(w0, lane4)), xp[3], h);
        h = __hfma2(table_load(lut, table_address<0>(w1, lane4)), xp[4], h);
        h = __hfma2(table_load(lut, table_address<1>(w1, lane4)), xp[5], h);
        h = __hfma2(table_load(lut, table_address<2>(w1, lane4)), xp[6], h);
        h = __hfma2(table_load(lut, table_address<3>(w1, lane4)), xp[7], h);
        const float2 f = __half22float2(h);
        s += f.x + f.y;
    }
    return s;
}

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

template <int U, bool Nested>
struct ring_4bit {
    uint4 w[U];
    float a[U];           // plain absmax, or the nested absmax2 of the block
    std::uint32_t c[U];   // nested: the spare word holding the block's nested code value (its member's code book)
};

/// Kernel arguments besides the tensors (all sizes fit 32 bits: a team kernel is only launched when they do).
struct team_args {
    int team_threads = 0;  ///< threads per team (the row's 32-column slices rounded up to whole warps)
    int batches = 0;       ///< batches of U slots per team, the same for every team (barriers are CTA-wide)
    int nested_log2 = 8;   ///< log2 of the nested block size (double quantization)
    int prefetch = 0;      ///< L2 prefetch distance in batches (0: none)
    /// Teams [team_begin[m], team_begin[m + 1]) work on member m (SwiGLU: all on the row pairs, as member 0); entries
    /// past the last member equal the team count.
    unsigned team_begin[4] = {0, 0, 0, 0};
};

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

// A group: up to k_team_max_members weights of one K (q, k, v) whose output rows form one work range, member i
// owning work rows [begin_i, begin_i + rows_i) (absent members begin at ~0u), so one launch streams all of them and
// a single linear is the group of one. Every row's arithmetic is independent of where in the range it lands (the
// same thread owns the same columns, the warp sum is the same butterfly tree in every slot, the team sum the same
// sequential order), so a member's outputs are bit-identical to its own launch. SwiGLU mode: the slots u < U/2 of a
// batch hold gate rows and the slots u >= U/2 the same rows of up, so each pair meets in one team's epilogue.
struct team_4bit_member {
    const unsigned char* packed = nullptr;
    const float* absmax = nullptr;            // plain absmax (not nested)
    const std::uint8_t* codes = nullptr;      // nested: one code per block
    const float* nested_absmax = nullptr;     // nested: one per nested block
    const float* nested_code = nullptr;       // nested: the 256-entry map
    float nested_offset = 0.0f;
    __half* y = nullptr;
    unsigned rows = 0;
    unsigned begin = ~0u;
};
struct team_4bit_group {
    team_4bit_member m[k_team_max_members];
    unsigned cols = 0;
    int blocksize_log2 = 6;
    int count = 0;
    int shared_map = 0;   // nested: every member's nested_code is member 0's pointer (read once, stored per member)
    float code[16] = {};  // the quant map, shared by the members (checked on the host)
};

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

/// The team's stream of rows for the 4-bit kernel: this thread's pointer into the next row, the member's scales and
/// the row (the team's share ends at team_work::r1). SwiGLU: the gate rows; each up row is the same row of member 1.
/// Kept this small on purpose: in the 32-warp shapes (<= 64 registers) every register counts.
struct stream_4bit {
    const unsigned char* packed = nullptr;  // this thread's 16 bytes of the next row
    const unsigned char* scales = nullptr;  // the member's absmax (plain, float) or absmax codes (nested, bytes)
    const float* nested_absmax = nullptr;
    unsigned row = 0;
};

template <bool Nested, class Group>
__device__ __forceinline__ stream_4bit stream_of(const Group& q, unsigned m, unsigned r0, unsigned chunk_offset,
                                                 unsigned row_bytes) {
    stream_4bit c;
    c.row = r0;
    c.packed = pick3(m, q.m[0].packed, q.m[1].packed, q.m[2].packed) + chunk_offset +
               static_cast<std::uint64_t>(r0) * row_bytes;
    if constexpr (Nested) {
        c.scales = pick3(m, q.m[0].codes, q.m[1].codes, q.m[2].codes);
        c.nested_absmax = pick3(m, q.m[0].nested_absmax, q.m[1].nested_absmax, q.m[2].nested_absmax);
    } else {
        c.scales = reinterpret_cast<const unsigned char*>(pick3(m, q.m[0].absmax, q.m[1].absmax, q.m[2].absmax));
    }
    return c;
}

// The epilogue of slot t (run by the team's whole first warp; lanes t >= U carry nothing): store h, or in SwiGLU mode
// fetch the up value from lane t + 1 and store fp16(silu(g) * u) exactly as launch_swiglu rounds it.
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

// Register budgets. A kernel instantiation names its budget (registers per thread) as a template parameter; the
// launch bounds that hold ptxas to it are the widest CTA the kernel is built for and how many CTAs of that width must
// fit in an SM's register file together. A team wider than max_threads (a long row) runs the `wide` budget's kernel.
struct team_budget {
    int regs;         // registers per thread
    int max_threads;  // the widest CTA this kernel is launched with
    int min_ctas;     // CTAs of max_threads that must be resident per SM at once
    int wide;         // the budget of the kernel that runs teams wider than max_threads
};
constexpr int k_sm_registers = 64 * 1024;  // sm_75 .. sm_90
constexpr team_budget k_budgets[] = {
    // Two 256-thread CTAs per SM, 16 warps (the v3 default); 512 threads take the widest team (K = 16384).
    {128, k_team_max_threads, 1, 128},
    // Three 256-thread CTAs per SM: two of one kernel and one of the next, which (with PDL) requests its first rows
    // while its predecessor drains.
    {80, 384, 2, 128},
    // 32 warps per SM (two 512-thread CTAs; K = 4096: four teams each): a stream of 16 warps per SM reaches only
    // 0.67-0.73 of DRAM whatever each warp has in flight, 32 warps ~0.87 (PERF_NOTES.md, seventh session).
    {64, k_team_max_threads, 2, 64},
    // 33-36 warps per SM as three CTAs of 352-384 threads: K = 11008 is one team of 352, which the 512-thread budget
    // fits only twice (22 warps); K = 4096 packs three teams. The 64 KiB table of each CTA also limits an SM to three.
    {56, 384, 3, 64},
};

constexpr team_budget budget_of(int regs) {
    for (const team_budget& b : k_budgets)
        if (b.regs == regs) return b;
    return {0, 0, 0, 0};
}
// Each budget is exactly what its bounds give: `regs` fit, 8 more (ptxas' allocation step) would not.
constexpr bool budgets_exact() {
    for (const team_budget& b : k_budgets) {
        const int threads = b.max_threads * b.min_ctas;
        if (b.regs * threads > k_sm_registers || (b.regs + 8) * threads <= k_sm_registers) return false;
        if (b.max_threads > k_team_max_threads || budget_of(b.wide).max_threads != k_team_max_threads) return false;
    }
    return true;
}
static_assert(budgets_exact(), "a register budget does not match its launch bounds");

#define QB_TEAM_BOUNDS(Regs) __launch_bounds__(budget_of(Regs).max_threads, budget_of(Regs).min_ctas)

// Swiglu: members 0 (gate) and 1 (up) paired row by row, fp16(silu(g) * u) written to member 0's y. A template
// parameter, not a flag: the double-precision SiLU of the epilogue needs ~20 registers while the whole ring and the
// activations are live, which pushed the <= 64-register kernels into spilling (ptxas: 116 bytes at U = 4, against
// 4 without it), and groups and single linears need none of it.
template <int U, bool Nested, bool Swiglu, int Regs>
__global__ void QB_TEAM_BOUNDS(Regs)
    gemv_4bit_team_kernel(team_4bit_group q, const __half* x, team_args p) {
    extern __shared__ __align__(16) unsigned char smem[];
    const unsigned tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5, warps = blockDim.x >> 5;
    const unsigned team_threads = static_cast<unsigned>(p.team_threads);
    const unsigned team = tid / team_threads, t = tid - team * team_threads;
    const unsigned team_warps = team_threads >> 5;
    const unsigned teams_per_cta = blockDim.x / team_threads;
    const unsigned g = blockIdx.x * teams_per_cta + team;
    const unsigned cols = q.cols;
    const unsigned row_bytes = cols / 2, slices = cols / 32;
    // Threads past the last slice (a partial last warp) read the last slice again with zero activations.
    const unsigned tc = t < slices ? t : slices - 1;
    const unsigned col0 = tc * 32u;
    const unsigned log2bs = static_cast<unsigned>(q.blocksize_log2);
    const std::uint32_t lane4 = lane * 4u;
    constexpr bool swiglu = Swiglu;
    const team_work share = work_of(p, q.m[0].rows, q.m[1].rows, q.m[2].rows, g);
    // The nested code book of the team's member (SwiGLU: the slot's member, gate 0 or up 1).
    const std::uint32_t team_book = k_spare_nested + share.m * 256u;

    // The team's rows (SwiGLU: the gate rows, up read beside them).
    stream_4bit cur = stream_of<Nested>(q, share.m, share.r0, tc * 16u, row_bytes);
    const std::uint64_t up_packed = up_distance(q.m[0].packed, q.m[1].packed);
    ring_4bit<U, Nested> ring;
    // Slot u's row: one load and one scale, then (after the up slot in SwiGLU mode) one pointer step. Up rows take
    // member 1's scales straight from the parameters.
    auto load = [&](int u) {
        const bool up = is_up_slot(swiglu, u);
        uint4 v = make_uint4(0, 0, 0, 0);
        float a = 0.0f;
        std::uint32_t c = 0;
        if (cur.row < share.r1) {
            v = detail::load_nc16(up ? at_distance(cur.packed, up_packed) : cur.packed);
            const auto block =
                static_cast<std::uint32_t>((static_cast<std::uint64_t>(cur.row) * cols + col0) >> log2bs);
            if constexpr (Nested) {
                c = (up ? k_spare_nested + 256u : team_book) + __ldg((up ? q.m[1].codes : cur.scales) + block);
                a = __ldg((up ? q.m[1].nested_absmax : cur.nested_absmax) + (block >> p.nested_log2));
            } else {
                a = __ldg((up ? q.m[1].absmax : reinterpret_cast<const float*>(cur.scales)) + block);
            }
        }
        if (!swiglu || up) {
            ++cur.row;
            cur.packed += row_bytes;
        }
        ring.w[u] = v;
        ring.a[u] = a;
        if constexpr (Nested) ring.c[u] = c;
    };

    // Rows of later batches into L2: thread t < U of a team takes slot t's row (weights, then its scales when a row
    // holds whole blocks and they are 16-byte aligned).
    const unsigned scale_row = (cols % (1u << log2bs) == 0) ? (cols >> log2bs) : 0u;
    const unsigned scale_row_bytes = Nested ? scale_row : scale_row * 4u;
    auto prefetch = [&](int b) {
        if (t >= U) return;
        const slot_place s = place_of<U>(swiglu, static_cast<unsigned>(b), t, share);
        if (!s.valid) return;
        prefetch_l2(pick3(s.m, q.m[0].packed, q.m[1].packed, q.m[2].packed) + static_cast<std::uint64_t>(s.row) * row_bytes,
                    row_bytes);
        if (scale_row_bytes % 16 == 0 && scale_row_bytes > 0) {
            const unsigned char* sp =
                Nested ? pick3(s.m, q.m[0].codes, q.m[1].codes, q.m[2].codes)
                       : reinterpret_cast<const unsigned char*>(pick3(s.m, q.m[0].absmax, q.m[1].absmax, q.m[2].absmax));
            prefetch_l2(sp + static_cast<std::uint64_t>(s.row) * scale_row_bytes, scale_row_bytes);
        }
    };

    // The first rows go out before anything else: weights never change, so they may be read before the wait.
#pragma unroll
    for (int u = 0; u < U; ++u) load(u);
    for (int pb = 1; pb <= p.prefetch && pb < p.batches; ++pb) prefetch(pb);

    // Nested code books (member m's word j at spare word 256 m + j; the ring's code word names its member): word tid
    // of every distinct map is requested here, with the first rows, and stored after the byte table is built, so its
    // round trip hides behind the table. A loop of load-then-store per word after the table, as before, paid one
    // serial round trip per member (three for q/k/v) while no weight load was in flight. Members sharing one map
    // (workspace::nested_map: every linear quantized at load time) read it once and store it per member.
    [[maybe_unused]] float book[k_team_max_members] = {};
    const unsigned members = static_cast<unsigned>(q.count);
    const unsigned maps = q.shared_map ? 1u : members;
    if constexpr (Nested) {
#pragma unroll
        for (unsigned s = 0; s < k_team_max_members; ++s)
            if (s < maps && tid < 256u) book[s] = __ldg(pick3(s, q.m[0].nested_code, q.m[1].nested_code, q.m[2].nested_code) + tid);
    }

    // The byte table: staging word of entry e at e * 256 + 128, then 32 lane copies in the entry's first 128 bytes.
    auto* words = reinterpret_cast<std::uint32_t*>(smem);
    for (unsigned byte = tid; byte < 256; byte += blockDim.x) {
        const __half2 h = __halves2half2(__float2half_rn(q.code[byte >> 4]), __float2half_rn(q.code[byte & 15]));
        memcpy(&words[byte * 64 + 32], &h, sizeof(h));
    }
    __syncthreads();
    for (unsigned i = tid; i < 256 * 8; i += blockDim.x) {
        const unsigned e = i >> 3;
        const std::uint32_t u = words[e * 64 + 32];
        reinterpret_cast<uint4*>(smem)[e * 16 + (i & 7)] = make_uint4(u, u, u, u);
    }
    __syncthreads();  // staging words are read; the spare halves are free from here on
    if constexpr (Nested) {
        if (tid < 256u) {
#pragma unroll
            for (unsigned m = 0; m < k_team_max_members; ++m)
                if (m < members) spare_float(smem, k_spare_nested + 256u * m + tid) = q.shared_map ? book[0] : book[m];
        }
        // CTAs narrower than 256 threads (small K in the 128-thread shapes) load the rest word by word.
        if (blockDim.x < 256u) {
            for (unsigned i = tid; i < 256u * members; i += blockDim.x) {
                const unsigned j = i & 255u, m = i >> 8, s = q.shared_map ? 0u : m;
                if (j >= blockDim.x)
                    spare_float(smem, k_spare_nested + i) =
                        __ldg(pick3(s, q.m[0].nested_code, q.m[1].nested_code, q.m[2].nested_code) + j);
            }
        }
    }

    pdl_wait();  // x is written by the previous kernel
    __half2 xs[16];
    {
        // Plain loads through a pointer without __restrict__: an __ldg of restrict data is an invariant load to the
        // compiler, and nvcc moved it above griddepcontrol.wait (SASS: the x LDGs before ACQBULK), i.e. x was read
        // before the previous kernel's writes were guaranteed visible. The asm's memory clobber orders these.
        const uint4* src = reinterpret_cast<const uint4*>(x + col0);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            uint4 v = src[j];
            if (t >= slices) v = make_uint4(0, 0, 0, 0);
            xs[4 * j + 0] = bits_half2(v.x);
            xs[4 * j + 1] = bits_half2(v.y);
            xs[4 * j + 2] = bits_half2(v.z);
            xs[4 * j + 3] = bits_half2(v.w);
        }
    }
    pdl_trigger();
    if constexpr (Nested) __syncthreads();  // the nested code books are complete
    const unsigned writer_mask = 32u / U - 1u;
    const unsigned my_slot = static_cast<unsigned>(transpose_slot<U>(static_cast<int>(lane)));

    for (int b = 0; b < p.batches; ++b) {
        const std::uint32_t part = k_spare_partial + static_cast<std::uint32_t>((b & 1) * U) * warps;
        const bool more = b + 1 < p.batches;
        if (p.prefetch > 0 && b + 1 + p.prefetch < p.batches) prefetch(b + 1 + p.prefetch);
        float sums[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            float scale;
            if constexpr (Nested) {
                const float offset = pick3(ring.c[u] >> 8, q.m[0].nested_offset, q.m[1].nested_offset,
                                           q.m[2].nested_offset);
                scale = __fadd_rn(__fmul_rn(spare_float(smem, ring.c[u]), ring.a[u]), offset);
            } else {
                scale = ring.a[u];
            }
            // Rounded here (no FMA into the warp sum): a row's sum must not depend on the slot it lands in.
            sums[u] = __fmul_rn(chunk_dot(smem, lane4, ring.w[u], xs), scale);
            if (more) load(u);
        }
        const float s = transpose_sum<U>(sums, static_cast<int>(lane));
        if ((lane & writer_mask) == 0) spare_float(smem, part + my_slot * warps + warp) = s;
        __syncthreads();
        if (t < 32) {  // the team's first warp, whole (teams are whole warps): SwiGLU pairs meet by a shuffle
            const slot_place sp = place_of<U>(swiglu, static_cast<unsigned>(b), t, share);
            __half h = __float2half_rn(0.0f);
            if (t < U) {
                float sum = 0.0f;
                for (unsigned i = 0; i < team_warps; ++i) sum += spare_float(smem, part + t * warps + team * team_warps + i);
                h = __float2half_rn(sum);
            }
            store_slot<U>(q.m[0].y, q.m[1].y, q.m[2].y, swiglu, sp, t, h);
        }
        // The partial buffer alternates between batches: the next batch writes the other half, and the one after it
        // comes behind the next barrier, which every reader of this batch has passed.
    }
}

// ---- int8 --------------------------------------------------------------------------------------------------------

template <int U>
struct ring_int8 {
    uint4 a[U], b[U];
};

// An outlier column of a thread: j (0..31) indexes the 32 weights the thread holds for a row (j < 16: chunk c0,
// else chunk c1), x is the column's fp16 activation (0 in an unused slot, so its product vanishes).
struct outlier_pick {
    int j = 0;
    float x = 0.0f;
};

__host__ __device__ __forceinline__ std::uint32_t select_word(uint4 v, int j) {
    const std::uint32_t lo = (j & 4) ? v.y : v.x;
    const std::uint32_t hi = (j & 4) ? v.w : v.z;
    return (j & 8) ? hi : lo;
}

__device__ __forceinline__ outlier_pick make_pick(int j, const __half* x, std::int64_t c0, std::int64_t c1) {
    outlier_pick o;
    if (j < 0) return o;
    o.j = j;
    o.x = __half2float(x[j < 16 ? c0 + j : c1 + (j - 16)]);
    return o;
}

// The int8 weight of column j in a row held as chunks a (columns c0..) and b (columns c1..), as a float.
__host__ __device__ __forceinline__ float picked_weight(const uint4& a, const uint4& b, int j) {
    const std::uint32_t wa = select_word(a, j & 15), wb = select_word(b, j & 15);
    const std::uint32_t word = j < 16 ? wa : wb;
    return static_cast<float>(static_cast<int>(static_cast<std::int8_t>((word >> (8 * (j & 3))) & 0xffu)));
}

// An int8 group (see team_4bit_group): the members share K and the threshold, so the activation quantization and
// the outlier columns are computed once per team for all of them.
struct team_int8_member {
    const std::int8_t* cb = nullptr;
    const float* scb = nullptr;
    __half* y = nullptr;
    unsigned rows = 0;
    unsigned begin = ~0u;
};
struct team_int8_group {
    team_int8_member m[k_team_max_members];
    unsigned k = 0;
    float threshold = 0.0f;
};

// Swiglu: as the 4-bit kernel.
template <int U, bool Swiglu, int Regs>
__global__ void QB_TEAM_BOUNDS(Regs)
    gemv_int8_team_kernel(team_int8_group gw, const __half* x, team_args p) {
    __shared__ float part[2][U][k_team_max_warps];
    __shared__ float amax_s[k_team_max_warps];
    const unsigned tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5;
    const unsigned team_threads = static_cast<unsigned>(p.team_threads);
    const unsigned team = tid / team_threads, t = tid - team * team_threads;
    const unsigned team_warps = team_threads >> 5;
    const unsigned teams_per_cta = blockDim.x / team_threads;
    const unsigned g = blockIdx.x * teams_per_cta + team;
    const unsigned k = gw.k;
    const float threshold = gw.threshold;
    constexpr bool swiglu = Swiglu;
    const unsigned half_chunks = k / 32;
    const bool active = t < half_chunks;
    const unsigned tc = active ? t : half_chunks - 1;
    const unsigned c0 = tc * 16u, c1 = (tc + half_chunks) * 16u;
    const team_work share = work_of(p, gw.m[0].rows, gw.m[1].rows, gw.m[2].rows, g);

    // The team's rows as in the 4-bit kernel: this thread's chunk c0 of the next row (c1 lies k / 2 bytes further),
    // the row, one pointer step per row; SwiGLU: the gate rows, each up row at a fixed distance.
    const std::int8_t* next = pick3(share.m, gw.m[0].cb, gw.m[1].cb, gw.m[2].cb) +
                              static_cast<std::uint64_t>(share.r0) * k + c0;
    unsigned next_row = share.r0;
    const std::uint64_t up_cb = up_distance(gw.m[0].cb, gw.m[1].cb);
    const unsigned c1_offset = c1 - c0;

    ring_int8<U> ring;
    auto load = [&](int u) {
        const bool up = is_up_slot(swiglu, u);
        uint4 va = make_uint4(0, 0, 0, 0), vb = make_uint4(0, 0, 0, 0);
        if (next_row < share.r1) {
            const std::int8_t* src = up ? at_distance(next, up_cb) : next;
            va = detail::load_nc16(src);
            vb = detail::load_nc16(src + c1_offset);
        }
        if (!swiglu || up) {
            ++next_row;
            next += k;
        }
        ring.a[u] = va;
        ring.b[u] = vb;
    };
    auto prefetch = [&](int b) {
        if (t >= U) return;
        const slot_place s = place_of<U>(swiglu, static_cast<unsigned>(b), t, share);
        if (s.valid)
            prefetch_l2(pick3(s.m, gw.m[0].cb, gw.m[1].cb, gw.m[2].cb) + static_cast<std::uint64_t>(s.row) * k, k);
    };
    // Reader t < U of each team finishes slot t's row: its SCB comes one batch ahead.
    auto scb_of = [&](unsigned b) {
        if (t >= U) return 0.0f;
        const slot_place s = place_of<U>(swiglu, b, t, share);
        return s.valid ? __ldg(pick3(s.m, gw.m[0].scb, gw.m[1].scb, gw.m[2].scb) + s.row) : 0.0f;
    };
#pragma unroll
    for (int u = 0; u < U; ++u) load(u);
    for (int pb = 1; pb <= p.prefetch && pb < p.batches; ++pb) prefetch(pb);
    float sc = scb_of(0);

    pdl_wait();
    // The 32 activations of this thread, their outlier bits and the team's row statistic. Plain loads of a pointer
    // without __restrict__, so they stay behind the wait (see the 4-bit kernel).
    uint4 xv[4] = {make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0)};
    if (active) {
        xv[0] = *reinterpret_cast<const uint4*>(x + c0);
        xv[1] = *reinterpret_cast<const uint4*>(x + c0 + 8);
        xv[2] = *reinterpret_cast<const uint4*>(x + c1);
        xv[3] = *reinterpret_cast<const uint4*>(x + c1 + 8);
    }
    pdl_trigger();
    const bool decompose = threshold > 0.0f;
    std::uint32_t obits = 0;
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const std::uint32_t ws[4] = {xv[i].x, xv[i].y, xv[i].z, xv[i].w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const float2 f = __half22float2(bits_half2(ws[j]));
            const float a0 = fabsf(f.x), a1 = fabsf(f.y);
            const bool o0 = decompose && a0 >= threshold, o1 = decompose && a1 >= threshold;
            obits |= (o0 ? 1u : 0u) << (8 * i + 2 * j);
            obits |= (o1 ? 1u : 0u) << (8 * i + 2 * j + 1);
            if (!o0) amax = fmaxf(amax, a0);
            if (!o1) amax = fmaxf(amax, a1);
        }
    }
    amax = warp_max(amax);
    if (lane == 0) amax_s[warp] = amax;
    __syncthreads();
    amax = 0.0f;
    for (unsigned i = 0; i < team_warps; ++i) amax = fmaxf(amax, amax_s[team * team_warps + i]);
    const float scale = amax > 0.0f ? __fdiv_rn(127.0f, amax) : 0.0f;
    std::uint32_t q[8];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const std::uint32_t ws[4] = {xv[i].x, xv[i].y, xv[i].z, xv[i].w};
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const float2 f = __half22float2(bits_half2(ws[j]));
            const int q0 = (obits >> (8 * i + 2 * j)) & 1u ? 0 : __float2int_rn(__fmul_rn(f.x, scale));
            const int q1 = (obits >> (8 * i + 2 * j + 1)) & 1u ? 0 : __float2int_rn(__fmul_rn(f.y, scale));
            const std::uint32_t pair = (static_cast<std::uint32_t>(q0) & 0xffu) | ((static_cast<std::uint32_t>(q1) & 0xffu) << 8);
            if (j % 2 == 0)
                q[2 * i + j / 2] = pair;
            else
                q[2 * i + j / 2] |= pair << 16;
        }
    }
    // Outlier columns: up to two per thread are picked once (the common case: a few columns in thousands); a warp
    // with a thread holding more walks the bits per row.
    const int count = __popc(obits);
    const bool warp_many = __any_sync(0xffffffffu, count > 2);
    const bool warp_one = __any_sync(0xffffffffu, count >= 1);
    const bool warp_two = __any_sync(0xffffffffu, count >= 2);
    const outlier_pick o0 = make_pick(count >= 1 ? __ffs(obits) - 1 : -1, x, c0, c1);
    const outlier_pick o1 = make_pick(count >= 2 ? __ffs(obits & (obits - 1)) - 1 : -1, x, c0, c1);
    // A thread's int32 dot product is below 2^24 in magnitude (32 * 127 * 127), so it converts to fp32 exactly;
    // it is scaled by row_stat / 127^2 and joined with the outlier sum (scaled by 1 / 127) before one reduction.
    // SCB multiplies the row's total.
    const float int_scale = amax * k_int8_dequant;
    const float out_scale = 1.0f / 127.0f;
    const unsigned writer_mask = 32u / U - 1u;
    const unsigned my_slot = static_cast<unsigned>(transpose_slot<U>(static_cast<int>(lane)));

    for (int b = 0; b < p.batches; ++b) {
        const int buf = b & 1;
        const bool more = b + 1 < p.batches;
        if (p.prefetch > 0 && b + 1 + p.prefetch < p.batches) prefetch(b + 1 + p.prefetch);
        float sums[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            int ia = __dp4a(static_cast<int>(ring.a[u].x), static_cast<int>(q[0]), 0);
            ia = __dp4a(static_cast<int>(ring.a[u].y), static_cast<int>(q[1]), ia);
            ia = __dp4a(static_cast<int>(ring.a[u].z), static_cast<int>(q[2]), ia);
            ia = __dp4a(static_cast<int>(ring.a[u].w), static_cast<int>(q[3]), ia);
            ia = __dp4a(static_cast<int>(ring.b[u].x), static_cast<int>(q[4]), ia);
            ia = __dp4a(static_cast<int>(ring.b[u].y), static_cast<int>(q[5]), ia);
            ia = __dp4a(static_cast<int>(ring.b[u].z), static_cast<int>(q[6]), ia);
            ia = __dp4a(static_cast<int>(ring.b[u].w), static_cast<int>(q[7]), ia);
            float fa = 0.0f;
            if (warp_many) {
                for (std::uint32_t bits = obits; bits; bits &= bits - 1) {
                    const int j = __ffs(bits) - 1;
                    fa = fmaf(make_pick(j, x, c0, c1).x, picked_weight(ring.a[u], ring.b[u], j), fa);
                }
            } else {
                // The columns go through an empty asm per row: without it the compiler hoists each pick's word and
                // byte selection out of the loop (four registers per pick, held for the whole kernel), which made
                // the <= 64-register kernels spill the activations; recomputing it is a few integer instructions.
                int j0 = o0.j, j1 = o1.j;
                asm volatile("" : "+r"(j0), "+r"(j1));
                if (warp_one) fa = fmaf(o0.x, picked_weight(ring.a[u], ring.b[u], j0), fa);
                if (warp_two) fa = fmaf(o1.x, picked_weight(ring.a[u], ring.b[u], j1), fa);
            }
            if (more) load(u);
            sums[u] = fmaf(static_cast<float>(ia), int_scale, fa * out_scale);
        }
        const float v = transpose_sum<U>(sums, static_cast<int>(lane));
        if ((lane & writer_mask) == 0) part[buf][my_slot][warp] = v;
        __syncthreads();
        if (t < 32) {  // the team's first warp, whole: SwiGLU pairs meet by a shuffle
            const slot_place sp = place_of<U>(swiglu, static_cast<unsigned>(b), t, share);
            __half h = __float2half_rn(0.0f);
            if (t < U) {
                float s = 0.0f;
                for (unsigned i = 0; i < team_warps; ++i) s += part[buf][t][team * team_warps + i];
                h = __float2half_rn(s * sc);
            }
            store_slot<U>(gw.m[0].y, gw.m[1].y, gw.m[2].y, swiglu, sp, t, h);
            if (more) sc = scb_of(static_cast<unsigned>(b + 1));
        }
    }
}

// ---- launch geometry -------------------------------------------------------------------------------------------

struct team_config {
    int rows_in_flight;  // U (template)
    int cta_target;      // threads per CTA wanted (teams are packed up to it)
    int ctas_per_sm;     // grid = SMs * this (capped by occupancy)
    int regs;            // register budget of the kernel (k_budgets: 128, 80, 64 or 56)
    int prefetch;        // L2 prefetch distance in batches
    const char* name;
};

// 0 is the default: the fastest of the first six over the 7B linear stack on the H200 (PERF_NOTES.md, v3 run 2;
// capping registers for co-residency and the L2 prefetch both measured slower) and of all eight on an H100 (seventh
// session: the 32-warp shapes 6 and 7 are 2-6% slower at 4 bits, 11-18% at int8).
constexpr team_config k_configs[] = {
    {8, 256, 2, 128, 0, "team-u8-c256x2"},
    {8, 256, 2, 80, 0, "team-u8-c256x2-r80"},
    {8, 256, 3, 80, 0, "team-u8-c256x3-r80"},
    {8, 256, 2, 80, 2, "team-u8-c256x2-r80-p2"},
    {8, 256, 3, 80, 2, "team-u8-c256x3-r80-p2"},
    {8, 128, 4, 80, 2, "team-u8-c128x4-r80-p2"},
    {4, 512, 2, 64, 0, "team-u4-c512x2-r64"},
    {2, 384, 3, 56, 0, "team-u2-c384x3-r56"},
};
constexpr int k_config_count = sizeof(k_configs) / sizeof(k_configs[0]);
static_assert(k_config_count == k_gemv_team_config_count, "bnb_kernels.cuh numbers the 4-bit variants after the team configs");

// int8 configs: 32 bytes per row and thread, so half the rows in flight for the same registers.
constexpr team_config k_int8_configs[] = {
    {8, 256, 2, 128, 0, "team-u8-c256x2"},
    {8, 256, 2, 128, 2, "team-u8-c256x2-p2"},
    {4, 256, 3, 80, 2, "team-u4-c256x3-r80-p2"},
    {4, 256, 3, 80, 0, "team-u4-c256x3-r80"},
    {8, 256, 1, 128, 2, "team-u8-c256x1-p2"},
    {4, 128, 4, 80, 2, "team-u4-c128x4-r80-p2"},
    {2, 512, 2, 64, 0, "team-u2-c512x2-r64"},
    {2, 384, 3, 56, 0, "team-u2-c384x3-r56"},
};
// One index space for both (gemv_team_configs() counts the shapes of either kernel).
static_assert(sizeof(k_int8_configs) / sizeof(k_int8_configs[0]) == k_config_count,
              "the 4-bit and int8 tables share gemv_team_configs()");

int sm_count() {
    static const int sms = [] {
        int device = 0, n = 0;
        QB_CUDA_CHECK(cudaGetDevice(&device));
        QB_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
        return std::max(1, n);
    }();
    return sms;
}

// Resident CTAs per SM of `kernel` at `threads` threads (cached: the query is not free and launches are many).
template <class Kernel>
int occupancy(Kernel kernel, int threads, std::size_t smem) {
    static std::mutex mutex;
    static std::map<std::pair<const void*, int>, int> cache;
    const std::lock_guard<std::mutex> lock(mutex);
    const auto key = std::make_pair(reinterpret_cast<const void*>(kernel), threads);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
    if (smem > 48 * 1024)
        QB_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    int per_sm = 0;
    QB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
    per_sm = std::max(1, per_sm);
    cache.emplace(key, per_sm);
    return per_sm;
}

struct team_geometry {
    int team_threads = 0, teams_per_cta = 0, cta_threads = 0;
};

// slices: the 32-column slices of a row (K / 32).
team_geometry shape_of(std::int64_t slices, int cta_target, int max_threads) {
    team_geometry gm;
    gm.team_threads = static_cast<int>((slices + 31) / 32 * 32);
    gm.teams_per_cta = std::max(1, cta_target / gm.team_threads);
    while (gm.teams_per_cta > 1 && gm.teams_per_cta * gm.team_threads > max_threads) --gm.teams_per_cta;
    gm.cta_threads = gm.teams_per_cta * gm.team_threads;
    return gm;
}

// Grid, team shares and batches. With PDL a kernel's CTAs are placed while its predecessor's last CTAs still run (a
// one-CTA RMSNorm before q/k/v and gate/up): where two CTAs of this kernel fill an SM's registers (the
// double-quantized kernel: 125 registers, 2 x 256 threads = the whole register file), a grid of every slot on every
// SM left one CTA to start only when that CTA exited. One slot is left free instead.
// The teams are shared out to the members in proportion to their rows (largest remainders; at least one each, so the
// grid holds at least one team per member); every team runs the same number of batches (the barriers are CTA-wide),
// enough for the largest share, so the kernel lasts as long as its busiest team.
// member_rows: the rows of each member (SwiGLU: one entry, the row pairs).
void finish(const std::int64_t* member_rows, int members, const team_config& c, int resident_per_sm,
            const team_geometry& gm, int& grid, team_args& a) {
    std::int64_t total = 0;
    for (int m = 0; m < members; ++m) total += member_rows[m];
    const std::int64_t ctas_needed = (total + gm.teams_per_cta - 1) / gm.teams_per_cta;
    const int per_sm = std::min(c.ctas_per_sm, resident_per_sm);
    const std::int64_t ctas = static_cast<std::int64_t>(sm_count()) * per_sm - (per_sm >= 2 ? 1 : 0);
    const std::int64_t min_ctas = (members + gm.teams_per_cta - 1) / gm.teams_per_cta;
    grid = static_cast<int>(std::max<std::int64_t>(min_ctas, std::min(ctas, ctas_needed)));
    const std::int64_t teams = static_cast<std::int64_t>(grid) * gm.teams_per_cta;
    std::int64_t share[k_team_max_members] = {};
    std::int64_t given = 0;
    for (int m = 0; m < members; ++m) {
        share[m] = std::max<std::int64_t>(1, teams * member_rows[m] / total);
        given += share[m];
    }
    // Rows per team of member m with one team more (fewer): hand out (take back) where it helps (hurts) most.
    auto load_of = [&](int m, std::int64_t n) { return n > 0 ? (member_rows[m] + n - 1) / n : total + 1; };
    while (given < teams) {
        int best = 0;
        for (int m = 1; m < members; ++m)
            if (load_of(m, share[m]) > load_of(best, share[best])) best = m;
        ++share[best];
        ++given;
    }
    while (given > teams) {
        int best = -1;
        for (int m = 0; m < members; ++m)
            if (share[m] > 1 && (best < 0 || load_of(m, share[m] - 1) < load_of(best, share[best] - 1))) best = m;
        --share[best];
        --given;
    }
    std::int64_t rows_per_team = 0;
    a.team_begin[0] = 0;
    for (int m = 0; m < 3; ++m) {
        a.team_begin[m + 1] = a.team_begin[m] + static_cast<unsigned>(m < members ? share[m] : 0);
        if (m < members) rows_per_team = std::max(rows_per_team, load_of(m, share[m]));
    }
    a.team_threads = gm.team_threads;
    a.prefetch = c.prefetch;
    a.batches = static_cast<int>((rows_per_team + c.rows_in_flight - 1) / c.rows_in_flight);
}

/// The member rows finish() shares the teams by (SwiGLU: the pairs, as one member).
template <class Group>
int member_rows_of(const Group& q, bool swiglu, std::int64_t (&rows)[k_team_max_members]) {
    int members = 0;
    for (int m = 0; m < (swiglu ? 1 : k_team_max_members); ++m)
        if (q.m[m].rows > 0) rows[members++] = q.m[m].rows;
    return members;
}

using kernel_4bit_t = void (*)(team_4bit_group, const __half*, team_args);

template <int U, int Regs>
void launch_4bit_config(const team_4bit_group& q, bool nested, int nested_log2, bool swiglu,
                        const __half* x, const launch_options& o, team_config c, const team_geometry& gm) {
    const kernel_4bit_t kernel =
        nested ? (swiglu ? gemv_4bit_team_kernel<U, true, true, Regs> : gemv_4bit_team_kernel<U, true, false, Regs>)
               : (swiglu ? gemv_4bit_team_kernel<U, false, true, Regs> : gemv_4bit_team_kernel<U, false, false, Regs>);
    team_args a;
    a.nested_log2 = nested_log2;
    if (swiglu) c.rows_in_flight = U / 2;
    int grid = 0;
    std::int64_t rows[k_team_max_members] = {};
    const int members = member_rows_of(q, swiglu, rows);
    finish(rows, members, c, occupancy(kernel, gm.cta_threads, k_team_lut_bytes), gm, grid, a);
    launch_kernel(kernel, dim3(static_cast<unsigned>(grid)), dim3(static_cast<unsigned>(gm.cta_threads)),
                  k_team_lut_bytes, o, q, x, a);
}

// The kernel instantiations, by rows in flight and register budget. Every config's pair, and the pair of its wide
// budget, must be here (checked at compile time below), so a config never silently runs another shape.
template <class Launch>
struct team_instance {
    int rows_in_flight;
    int regs;
    Launch launch;
};
template <class Instance, std::size_t N>
constexpr const Instance* instance_of(const Instance (&instances)[N], int rows_in_flight, int regs) {
    for (const Instance& i : instances)
        if (i.rows_in_flight == rows_in_flight && i.regs == regs) return &i;
    return nullptr;
}
template <class Instance, std::size_t N, std::size_t M>
constexpr bool every_config_instantiated(const Instance (&instances)[N], const team_config (&configs)[M]) {
    for (const team_config& c : configs) {
        if (budget_of(c.regs).regs != c.regs) return false;
        if (!instance_of(instances, c.rows_in_flight, c.regs) ||
            !instance_of(instances, c.rows_in_flight, budget_of(c.regs).wide))
            return false;
    }
    return true;
}
/// The budget a config runs with at this geometry: its own, or the wide one where a team does not fit its CTAs.
int regs_for(const team_config& c, const team_geometry& gm) {
    const team_budget b = budget_of(c.regs);
    return gm.cta_threads > b.max_threads ? b.wide : c.regs;
}

using launch_4bit_t = void (*)(const team_4bit_group&, bool, int, bool, const __half*, const launch_options&,
                               team_config, const team_geometry&);
constexpr team_instance<launch_4bit_t> k_4bit_instances[] = {
    {8, 128, launch_4bit_config<8, 128>},
    {8, 80, launch_4bit_config<8, 80>},
    {4, 64, launch_4bit_config<4, 64>},
    {2, 56, launch_4bit_config<2, 56>},
    {2, 64, launch_4bit_config<2, 64>},  // the wide kernel of the 56-register config (K > 12288)
};
static_assert(every_config_instantiated(k_4bit_instances, k_configs), "a 4-bit config has no kernel");

void run_4bit(const team_4bit_group& q, bool nested, int nested_log2, std::int64_t work_rows, bool swiglu,
              const __half* x, const launch_options& o, int config) {
    if (config < 0 || config >= k_config_count)
        throw std::invalid_argument("launch_gemv_4bit_team: config " + std::to_string(config) + " does not exist");
    if (work_rows <= 0) return;
    team_config c = k_configs[config];
    const team_geometry gm = shape_of(q.cols / 32, c.cta_target, budget_of(c.regs).max_threads);
    c.regs = regs_for(c, gm);
    instance_of(k_4bit_instances, c.rows_in_flight, c.regs)->launch(q, nested, nested_log2, swiglu, x, o, c, gm);
}

// The group of `count` 4-bit weights (checked by gemv_4bit_team_groupable), outputs ys (may be null in SwiGLU mode).
team_4bit_group group_4bit(const device_4bit_view* ws, int count, __half* const* ys) {
    team_4bit_group q;
    q.cols = static_cast<unsigned>(ws[0].cols);
    q.blocksize_log2 = ws[0].blocksize_log2;
    q.count = count;
    q.shared_map = 1;
    for (int i = 1; i < count; ++i)
        if (ws[i].nested_code != ws[0].nested_code) q.shared_map = 0;
    std::memcpy(q.code, ws[0].code, sizeof(q.code));
    unsigned begin = 0;
    for (int i = 0; i < count; ++i) {
        team_4bit_member& m = q.m[i];
        m.packed = ws[i].packed;
        m.absmax = ws[i].absmax;
        m.codes = ws[i].absmax_codes;
        m.nested_absmax = ws[i].nested_absmax;
        m.nested_code = ws[i].nested_code;
        m.nested_offset = ws[i].nested_offset;
        m.y = ys[i];
        m.rows = static_cast<unsigned>(ws[i].rows);
        m.begin = begin;
        begin += m.rows;
    }
    return q;
}

using kernel_int8_t = void (*)(team_int8_group, const __half*, team_args);

template <int U, int Regs>
void launch_int8_config(const team_int8_group& q, bool swiglu, const __half* x,
                        const launch_options& o, team_config c, const team_geometry& gm) {
    const kernel_int8_t kernel = swiglu ? gemv_int8_team_kernel<U, true, Regs> : gemv_int8_team_kernel<U, false, Regs>;
    team_args a;
    if (swiglu) c.rows_in_flight = U / 2;
    int grid = 0;
    std::int64_t rows[k_team_max_members] = {};
    const int members = member_rows_of(q, swiglu, rows);
    finish(rows, members, c, occupancy(kernel, gm.cta_threads, 0), gm, grid, a);
    launch_kernel(kernel, dim3(static_cast<unsigned>(grid)), dim3(static_cast<unsigned>(gm.cta_threads)), 0, o, q, x,
                  a);
}

// U = 8 has no 80-register kernel (it spilled there); no config asks for one.
using launch_int8_t = void (*)(const team_int8_group&, bool, const __half*, const launch_options&, team_config,
                               const team_geometry&);
constexpr team_instance<launch_int8_t> k_int8_instances[] = {
    {8, 128, launch_int8_config<8, 128>},
    {4, 128, launch_int8_config<4, 128>},
    {4, 80, launch_int8_config<4, 80>},
    {2, 64, launch_int8_config<2, 64>},
    {2, 56, launch_int8_config<2, 56>},
};
static_assert(every_config_instantiated(k_int8_instances, k_int8_configs), "an int8 config has no kernel");

void run_int8(const team_int8_group& q, std::int64_t work_rows, bool swiglu, const __half* x,
              const launch_options& o, int config) {
    if (config < 0 || config >= k_config_count)
        throw std::invalid_argument("launch_gemv_int8_fused: config " + std::to_string(config) + " does not exist");
    if (work_rows <= 0) return;
    team_config c = k_int8_configs[config];
    const team_geometry gm = shape_of(q.k / 32, c.cta_target, budget_of(c.regs).max_threads);
    c.regs = regs_for(c, gm);
    instance_of(k_int8_instances, c.rows_in_flight, c.regs)->launch(q, swiglu, x, o, c, gm);
}

team_int8_group group_int8(const int8_team_weight* ws, int count, std::int64_t k, float threshold,
                           __half* const* ys) {
    team_int8_group q;
    q.k = static_cast<unsigned>(k);
    q.threshold = threshold;
    unsigned begin = 0;
    for (int i = 0; i < count; ++i) {
        team_int8_member& m = q.m[i];
        m.cb = ws[i].cb;
        m.scb = ws[i].scb;
        m.y = ys[i];
        m.rows = static_cast<unsigned>(ws[i].n);
        m.begin = begin;
        begin += m.rows;
    }
    return q;
}

// Sizes the 32-bit index arithmetic of the team kernels covers (with room: rows + one batch of every team).
bool fits_32bit(std::int64_t rows, std::int64_t cols, std::int64_t bytes_per_row) {
    return rows < (std::int64_t{1} << 30) && rows * bytes_per_row < (std::int64_t{1} << 62) &&
           rows * cols / 32 < (std::int64_t{1} << 31);
}

}  // namespace

bool gemv_4bit_team_supported(const device_4bit_view& w) {
    return w.cols > 0 && w.cols % 32 == 0 && w.cols / 32 <= k_team_max_threads && fits_32bit(w.rows, w.cols, w.cols / 2) &&
           (!w.nested() || (w.nested_blocksize > 0 && (w.nested_blocksize & (w.nested_blocksize - 1)) == 0));
}

bool gemv_4bit_team_groupable(const device_4bit_view* ws, int count) {
    if (ws == nullptr || count < 1 || count > k_team_max_members) return false;
    const device_4bit_view& a = ws[0];
    std::int64_t total = 0;
    for (int i = 0; i < count; ++i) {
        const device_4bit_view& w = ws[i];
        if (!gemv_4bit_team_supported(w) || w.rows <= 0 || w.cols != a.cols || w.blocksize_log2 != a.blocksize_log2 ||
            w.nested() != a.nested() || std::memcmp(w.code, a.code, sizeof(a.code)) != 0)
            return false;
        if (w.nested() && w.nested_blocksize != a.nested_blocksize) return false;
        total += w.rows;
    }
    return fits_32bit(total, a.cols, a.cols / 2);
}

int gemv_team_configs() { return k_config_count; }

const char* gemv_team_config_name(int config) {
    return config >= 0 && config < k_config_count ? k_configs[config].name : "?";
}

const char* gemv_int8_fused_config_name(int config) {
    return config >= 0 && config < k_config_count ? k_int8_configs[config].name : "?";
}

void launch_gemv_4bit_team(const device_4bit_view& w, const __half* x, __half* y, const launch_options& o,
                           int config) {
    if (!gemv_4bit_team_supported(w))
        throw std::invalid_argument("launch_gemv_4bit_team: needs K % 32 == 0 and K <= 16384 (K " +
                                    std::to_string(w.cols) + ")");
    if (w.rows <= 0) return;
    __half* const ys[1] = {y};
    run_4bit(group_4bit(&w, 1, ys), w.nested(), w.nested() ? log2_exact(w.nested_blocksize) : 8, w.rows, false, x, o,
             config);
}

void launch_gemv_4bit_team_group(const device_4bit_view* ws, int count, const __half* x, __half* const* ys,
                                 const launch_options& o, int config) {
    if (!gemv_4bit_team_groupable(ws, count))
        throw std::invalid_argument("launch_gemv_4bit_team_group: the weights do not form a group");
    std::int64_t total = 0;
    for (int i = 0; i < count; ++i) total += ws[i].rows;
    const bool nested = ws[0].nested();
    run_4bit(group_4bit(ws, count, ys), nested, nested ? log2_exact(ws[0].nested_blocksize) : 8, total, false, x, o,
             config);
}

void launch_gemv_4bit_team_swiglu(const device_4bit_view& gate, const device_4bit_view& up, const __half* x,
                                  __half* act, const launch_options& o, int config) {
    const device_4bit_view ws[2] = {gate, up};
    if (!gemv_4bit_team_groupable(ws, 2) || gate.rows != up.rows)
        throw std::invalid_argument("launch_gemv_4bit_team_swiglu: gate and up do not pair");
    __half* const ys[2] = {act, nullptr};
    const bool nested = gate.nested();
    run_4bit(group_4bit(ws, 2, ys), nested, nested ? log2_exact(gate.nested_blocksize) : 8, gate.rows, true, x, o,
             config);
}

bool gemv_int8_fused_supported(std::int64_t k) {
    return k > 0 && k % 32 == 0 && k / 32 <= k_team_max_threads;
}

bool gemv_int8_fused_groupable(const int8_team_weight* ws, int count, std::int64_t k) {
    if (ws == nullptr || count < 1 || count > k_team_max_members || !gemv_int8_fused_supported(k)) return false;
    std::int64_t total = 0;
    for (int i = 0; i < count; ++i) {
        if (ws[i].n <= 0 || ws[i].cb == nullptr || ws[i].scb == nullptr) return false;
        total += ws[i].n;
    }
    return fits_32bit(total, k, k);
}

void launch_gemv_int8_fused(const std::int8_t* cb, const float* scb, std::int64_t n, std::int64_t k, const __half* x,
                            float threshold, __half* y, const launch_options& o, int config) {
    if (!gemv_int8_fused_supported(k) || !fits_32bit(n, k, k))
        throw std::invalid_argument("launch_gemv_int8_fused: needs k % 32 == 0 and k <= 16384 (k " +
                                    std::to_string(k) + ")");
    if (n <= 0) return;
    const int8_team_weight w{cb, scb, n};
    __half* const ys[1] = {y};
    run_int8(group_int8(&w, 1, k, threshold, ys), n, false, x, o, config);
}

void launch_gemv_int8_fused_group(const int8_team_weight* ws, int count, std::int64_t k, const __half* x,
                                  float threshold, __half* const* ys, const launch_options& o, int config) {
    if (!gemv_int8_fused_groupable(ws, count, k))
        throw std::invalid_argument("launch_gemv_int8_fused_group: the weights do not form a group (k " +
                                    std::to_string(k) + ")");
    std::int64_t total = 0;
    for (int i = 0; i < count; ++i) total += ws[i].n;
    run_int8(group_int8(ws, count, k, threshold, ys), total, false, x, o, config);
}

void launch_gemv_int8_fused_swiglu(const int8_team_weight& gate, const int8_team_weight& up, std::int64_t k,
                                   const __half* x, float threshold, __half* act, const launch_options& o,
                                   int config) {
    const int8_team_weight ws[2] = {gate, up};
    if (!gemv_int8_fused_groupable(ws, 2, k) || gate.n != up.n)
        throw std::invalid_argument("launch_gemv_int8_fused_swiglu: gate and up do not pair");
    __half* const ys[2] = {act, nullptr};
    run_int8(group_int8(ws, 2, k, threshold, ys), gate.n, true, x, o, config);
}

}  // namespace qbench::bnb
