// The 4-bit NF4/FP4 team kernel (plain or double-quantized absmax; groups of q/k/v and the SwiGLU pair of gate and
// up) and its host launchers. What it shares with the int8 team kernel (work split, groups, slot placement) is in
// bnb_team_common.cuh, the launch shapes and grid planning in bnb_team_geometry.cuh.
//
// 4-bit decode: as v2 (bnb_gemv_4bit.cu), a byte -> half2 (code[hi], code[lo]) table in shared memory with one copy
// per lane (256 entries, 256-byte stride, the lane copies in the first 128 bytes: one PRMT makes the address), half2
// products over 8 weights, fp32 beyond. The spare upper halves of the entries hold the nested code book (double
// quantization) and the partial sums, so the kernel needs exactly 64 KiB of shared memory (the sm_75 limit).
#include "backends/bnb/bnb_team_common.cuh"
#include "backends/bnb/bnb_team_geometry.cuh"

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace qbench::bnb {

using namespace detail;  // the team helpers and launch geometry (bnb_team_common.cuh, bnb_team_geometry.cuh)

namespace {

constexpr std::size_t k_team_lut_bytes = 256 * 256;  // 64 KiB

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

template <int U, bool Nested>
struct ring_4bit {
    uint4 w[U];
    float a[U];           // plain absmax, or the nested absmax2 of the block
    std::uint32_t c[U];   // nested: the spare word holding the block's nested code value (its member's code book)
};

// A group: up to k_team_max_members weights of one K (q, k, v) whose output rows form one work range, member i
// owning work rows [begin_i, begin_i + rows_i) (absent members begin at ~0u), so one launch streams all of them and
// a single linear is the group of one. Every row's arithmetic is independent of where in the range it lands (the
// same thread owns the same columns, the warp sum is the same butterfly tree in every slot, the team sum the same
// sequential order), so a member's outputs are bit-identical to its own launch. SwiGLU mode: the even slots of a
// batch hold gate rows and each odd slot the same row of up (place_of), so each pair meets in one team's epilogue.
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

// E (team_epilogue): store; swiglu: members 0 (gate) and 1 (up) paired row by row, fp16(silu(g) * u) written to
// member 0's y; residual: member 0's y is the residual stream (residual_norm). A template parameter, not a flag: the
// double-precision SiLU of the epilogue needs ~20 registers while the whole ring and the activations are live, which
// pushed the <= 64-register kernels into spilling (ptxas: 116 bytes at U = 4, against 4 without it), and groups and
// single linears need none of it.
template <int U, bool Nested, team_epilogue E, int Regs>
__global__ void QB_TEAM_BOUNDS(Regs)
    gemv_4bit_team_kernel(team_4bit_group q, const __half* x, team_args p, residual_norm r) {
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
    constexpr bool swiglu = E == team_epilogue::swiglu;
    constexpr bool residual = E == team_epilogue::residual;
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
    for (int pb = 1; pb <= max(p.prefetch, p.prefetch_early) && pb < p.batches; ++pb) prefetch(pb);

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
        [[maybe_unused]] __half prior;
        if constexpr (residual)
            if (t < 32) prior = residual_prior<U>(q.m[0].y, place_of<U>(false, static_cast<unsigned>(b), t, share), t);
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
            if constexpr (residual)
                add_slot<U>(q.m[0].y, sp, t, prior, h);
            else
                store_slot<U>(q.m[0].y, q.m[1].y, q.m[2].y, swiglu, sp, t, h);
        }
        // The partial buffer alternates between batches: the next batch writes the other half, and the one after it
        // comes behind the next barrier, which every reader of this batch has passed.
    }
    // The next RMSNorm by the last CTA; its scratch is the byte table's first entries, which no thread reads any more
    // once every thread of the CTA has arrived (the function's first barrier).
    if constexpr (residual)
        if (r.out != nullptr)
            last_block_rms_norm<k_team_norm_per>(q.m[0].y, static_cast<int>(q.m[0].rows), 1, r.out, r.weight, r.eps,
                                                 r.arrivals, reinterpret_cast<double*>(smem));
}

using kernel_4bit_t = void (*)(team_4bit_group, const __half*, team_args, residual_norm);

template <int U, bool Nested, int Regs>
kernel_4bit_t kernel_4bit_of(team_epilogue e) {
    switch (e) {
    case team_epilogue::swiglu: return gemv_4bit_team_kernel<U, Nested, team_epilogue::swiglu, Regs>;
    case team_epilogue::residual: return gemv_4bit_team_kernel<U, Nested, team_epilogue::residual, Regs>;
    default: return gemv_4bit_team_kernel<U, Nested, team_epilogue::store, Regs>;
    }
}

template <int U, int Regs>
void launch_4bit_config(const team_4bit_group& q, bool nested, int nested_log2, team_epilogue e,
                        const residual_norm& r, const __half* x, const launch_options& o, team_config c,
                        const team_geometry& gm) {
    const kernel_4bit_t kernel = nested ? kernel_4bit_of<U, true, Regs>(e) : kernel_4bit_of<U, false, Regs>(e);
    const bool swiglu = e == team_epilogue::swiglu;
    team_args a;
    a.nested_log2 = nested_log2;
    if (swiglu) c.rows_in_flight = U / 2;
    int grid = 0;
    std::int64_t rows[k_team_max_members] = {};
    const int members = member_rows_of(q, swiglu, rows);
    finish(rows, members, c, occupancy(kernel, gm.cta_threads, k_team_lut_bytes), gm, grid, a);
    launch_kernel(kernel, dim3(static_cast<unsigned>(grid)), dim3(static_cast<unsigned>(gm.cta_threads)),
                  k_team_lut_bytes, o, q, x, a, r);
}

using launch_4bit_t = void (*)(const team_4bit_group&, bool, int, team_epilogue, const residual_norm&, const __half*,
                               const launch_options&, team_config, const team_geometry&);
constexpr team_instance<launch_4bit_t> k_4bit_instances[] = {
    {8, 128, launch_4bit_config<8, 128>},
    {8, 80, launch_4bit_config<8, 80>},
    {4, 64, launch_4bit_config<4, 64>},
    {2, 56, launch_4bit_config<2, 56>},
    {2, 64, launch_4bit_config<2, 64>},  // the wide kernel of the 56-register config (K > 12288)
};
static_assert(every_config_instantiated(k_4bit_instances, k_configs), "a 4-bit config has no kernel");

team_geometry geometry_of(std::int64_t cols, const team_config& c) {
    return shape_of(cols / 32, c.cta_target, budget_of(c.regs).max_threads);
}

void check_config(int config, const char* who) {
    if (config < 0 || config >= k_config_count)
        throw std::invalid_argument(std::string(who) + ": config " + std::to_string(config) + " does not exist");
}

void run_4bit(const team_4bit_group& q, bool nested, int nested_log2, std::int64_t work_rows, team_epilogue e,
              const residual_norm& r, const __half* x, const launch_options& o, int config) {
    check_config(config, "launch_gemv_4bit_team");
    if (work_rows <= 0) return;
    team_config c = k_configs[config];
    const team_geometry gm = geometry_of(q.cols, c);
    c.regs = regs_for(c, gm);
    instance_of(k_4bit_instances, c.rows_in_flight, c.regs)->launch(q, nested, nested_log2, e, r, x, o, c, gm);
}

int nested_log2_of(const device_4bit_view& w) { return w.nested() ? log2_exact(w.nested_blocksize) : 8; }

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

void launch_gemv_4bit_team(const device_4bit_view& w, const __half* x, __half* y, const launch_options& o,
                           int config) {
    if (!gemv_4bit_team_supported(w))
        throw std::invalid_argument("launch_gemv_4bit_team: needs K % 32 == 0 and K <= 16384 (K " +
                                    std::to_string(w.cols) + ")");
    if (w.rows <= 0) return;
    __half* const ys[1] = {y};
    run_4bit(group_4bit(&w, 1, ys), w.nested(), nested_log2_of(w), w.rows, team_epilogue::store, {}, x, o, config);
}

void launch_gemv_4bit_team_group(const device_4bit_view* ws, int count, const __half* x, __half* const* ys,
                                 const launch_options& o, int config) {
    if (!gemv_4bit_team_groupable(ws, count))
        throw std::invalid_argument("launch_gemv_4bit_team_group: the weights do not form a group");
    std::int64_t total = 0;
    for (int i = 0; i < count; ++i) total += ws[i].rows;
    run_4bit(group_4bit(ws, count, ys), ws[0].nested(), nested_log2_of(ws[0]), total, team_epilogue::store, {}, x, o,
             config);
}

void launch_gemv_4bit_team_swiglu(const device_4bit_view& gate, const device_4bit_view& up, const __half* x,
                                  __half* act, const launch_options& o, int config) {
    const device_4bit_view ws[2] = {gate, up};
    if (!gemv_4bit_team_groupable(ws, 2) || gate.rows != up.rows)
        throw std::invalid_argument("launch_gemv_4bit_team_swiglu: gate and up do not pair");
    __half* const ys[2] = {act, nullptr};
    run_4bit(group_4bit(ws, 2, ys), gate.nested(), nested_log2_of(gate), gate.rows, team_epilogue::swiglu, {}, x, o,
             config);
}

bool gemv_4bit_team_norms_rows(const device_4bit_view& w, int config) {
    check_config(config, "gemv_4bit_team_norms_rows");
    const std::int64_t n = w.rows;
    return gemv_4bit_team_supported(w) && n > 0 && n % 8 == 0 && n / 8 <= k_rms_norm_max_chunks &&
           rms_norm_warps_fit(n, geometry_of(w.cols, k_configs[config]).cta_threads / 32, k_team_norm_per);
}

void launch_gemv_4bit_team_residual(const device_4bit_view& w, const __half* x, __half* residual,
                                    const residual_norm& norm, const launch_options& o, int config) {
    if (!gemv_4bit_team_supported(w))
        throw std::invalid_argument("launch_gemv_4bit_team_residual: needs K % 32 == 0 and K <= 16384 (K " +
                                    std::to_string(w.cols) + ")");
    if (norm.out != nullptr &&
        (!gemv_4bit_team_norms_rows(w, config) || norm.weight == nullptr || norm.arrivals == nullptr))
        throw std::invalid_argument("launch_gemv_4bit_team_residual: the next RMSNorm needs N % 8 == 0, N <= " +
                                    std::to_string(8 * k_rms_norm_max_chunks) + ", its weight and a counter (N " +
                                    std::to_string(w.rows) + ")");
    if (w.rows <= 0) return;
    __half* const ys[1] = {residual};
    run_4bit(group_4bit(&w, 1, ys), w.nested(), nested_log2_of(w), w.rows, team_epilogue::residual, norm, x, o, config);
}

}  // namespace qbench::bnb
