// The LLM.int8() team kernel (the activation quantization and the outlier columns folded into the GEMV; groups of
// q/k/v and the SwiGLU pair of gate and up) and its host launchers. What it shares with the 4-bit team kernel (work
// split, groups, slot placement) is in bnb_team_common.cuh, the launch shapes and grid planning in
// bnb_team_geometry.cuh.
//
// int8: each thread quantizes its 32 activations itself after a team-wide absmax (the row statistic of
// LLM.int8(): over |x| < threshold), keeps them as 8 packed int8 words and uses dp4a; outlier columns (|x| >=
// threshold) are zero in the int8 operand and summed in fp32 against the int8 weight, scaled by SCB / 127 at the end
// (the fp16-dequantized weight column of bitsandbytes' decomposition). No activation buffers, no second kernel.
#include "backends/bnb/bnb_team_common.cuh"
#include "backends/bnb/bnb_team_geometry.cuh"
#include "cuda/reduce.cuh"

#include <cstdint>
#include <stdexcept>
#include <string>

namespace qbench::bnb {

using namespace detail;  // the team helpers and launch geometry (bnb_team_common.cuh, bnb_team_geometry.cuh)

namespace {

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

// An int8 group (see team_4bit_group, bnb_gemv_team_4bit.cu): the members share K and the threshold, so the
// activation quantization and the outlier columns are computed once per team for all of them.
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
    for (int pb = 1; pb <= max(p.prefetch, p.prefetch_early) && pb < p.batches; ++pb) prefetch(pb);
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

}  // namespace

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
