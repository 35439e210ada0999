#pragma once
/// GPTQ kernel v3: the weights as the A operand of mma.m16n8k16 (layout: gptq_a_layout.hpp), for 1..8 activation
/// rows (the n = 8 columns of B) in one launch, 2, 4 and 8 bits, every k-block in one group.
///
/// Why a v3, and what it taught (PERF_NOTES.md, sixth session): v2 (gptq_gemm_mma.cuh) spends ~107 instructions per
/// 1024 4-bit weights per warp; v3 ~35-40 (4 LOP3 + 1 SHF per 8 weights, 4 mmas of 256 weights, activations from
/// shared memory, a per-k-block zero/scale correction in fp32). That alone bought nothing on the H100: both kernels
/// were bound by the memory side of a 16-warp-per-SM kernel, which a streaming-only probe (bench_gptq's
/// BM_stream_pattern) showed tops out at 0.67-0.73 of the stream however many bytes each warp keeps in flight, and
/// reaches 0.87 with 32 warps per SM. So v3 runs 16-warp CTAs at <= 64 registers, two per SM, with fewer chunks in
/// flight per warp; the low instruction count is what lets it fit 64 registers.
///
/// Work split (one wave, no split-K across CTAs, deterministic): a CTA (16 warps, 2 per SM at <= 64 registers) owns a
/// contiguous range of mtiles and all of K; warp w owns k-slice w (k-blocks [KB*w/16, KB*(w+1)/16)) of each of the
/// CTA's mtiles and streams its chunks (one contiguous run in the layout), `stages` chunks in flight, the first issued
/// before pdl_wait (weights never change).
/// Per k-block a warp corrects and scales its sums into running fp32 outputs; at the end of an mtile it parks them
/// in shared memory, and the CTA adds the 16 warps' partials in a fixed order and writes fp16.
/// Paired (a_args::paired): two such CTAs run as the halves of one 1024-thread CTA and stage x once for both; each
/// half is exactly the CTA it replaces (its mtiles, k-slices and partial sums), so the outputs are the same bits.
///
/// Several linears of one input in one launch (cuda/fused_linear.hpp), because each launch pays a fixed ramp-up and
/// tail (~2 us on the H100) that a 4096 x 4096 4-bit linear (~3 us of streaming) cannot hide:
/// - group (q/k/v): the CTAs are shared out to the members (a_member::ctas, in proportion to their mtiles); a CTA
///   works on one member only, exactly as a launch of that member alone would, so a single forward is the group of one
///   and every output is bit-identical whichever way it was launched.
/// - swiglu (gate/up): a CTA owns the same mtile range of gate (member 0) and up (member 1), streamed one after the
///   other, and its epilogue writes fp16(silu(fp16 g) * fp16 u) into member 0's y, as forward() of both followed by
///   launch_swiglu would (the same sums in the same order, then silu_times).
#include "backends/gptq/gptq_a_layout.hpp"
#include "cuda/launch.cuh"
#include "cuda/rms_norm.cuh"

#include <cuda_fp16.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace qbench::gptq {

inline constexpr int k_a_threads = 512;
inline constexpr int k_a_warps = k_a_threads / 32;
inline constexpr int k_a_max_rows = 8;
inline constexpr int k_a_max_tiles = 6;  ///< mtiles per CTA: the partial sums stay within 48 KB at 8 rows

inline constexpr int k_a_max_members = 3;
/// The widest row the folded RMSNorm takes: 32 warps' partial sums per row, as cuda/rms_norm.cuh's fast path.
inline constexpr int k_a_max_norm_k = 8 * 1024;

/// One linear of a launch.
struct a_member {
    const std::uint32_t* qweight = nullptr;  ///< chunks in a_chunk_index order
    const std::uint32_t* meta = nullptr;     ///< records in a_record_index order
    __half* y = nullptr;                     ///< [rows][n] (swiglu: member 0's receives the product, member 1's unused)
    int n = 0;
    int mtiles = 0;
    int ctas = 0;  ///< group: the CTAs working on this member (after those of the members before it); swiglu: member 0's is the grid
};

enum class a_mode : int { group = 0, swiglu = 1 };

/// How a CTA copies the activations into shared memory (QBENCH_GPTQ_XCOPY, decided at load): through registers one,
/// two or four vectors per thread per round (plain, pairs, quads: the default), or by cp.async with every vector in
/// flight at once (async; sm_80+, a plain copy before). Measured on the H100 (PERF_NOTES.md, seventh session), 7B step
/// linears at beam 1 / 2 / 4, one call: plain 1.730 / 1.862 / 2.156 ms, pairs 1.713 / 1.787 / 2.022, async 1.762 /
/// 2.104 / 2.502; another call, fused launches: pairs 1.610 / 1.692 / 1.911, quads 1.594 / 1.676 / 1.891.
enum class a_x_copy : int { plain = 0, pairs = 1, async = 2, quads = 3 };

struct a_args {
    a_member m[k_a_max_members];
    int members = 1;
    const __half* x = nullptr;  ///< [rows][ldx], 16-byte aligned rows, kblocks*128 readable, zero past K
    std::int64_t ldx = 0;
    int rows = 1;
    int kblocks = 0;  ///< the same for every member (one K)
    a_x_copy x_copy = a_x_copy::quads;
    /// RMSNorm folded into the staging (cuda/fused_linear.hpp's normed forwards): x is the residual stream and the
    /// activations are rms_norm(x) * norm_weight, bit-identical to launch_rms_norm's fast path. Needs the rows
    /// unpermuted, K = kblocks * 128 <= 8 * 1024 and 16-byte aligned rows (the caller checks).
    const __half* norm_weight = nullptr;
    double norm_eps = 0;
    /// With norm_weight, the scaled form (QBENCH_GPTQ_NORM_FOLD=scaled; not bit-identical): the kernel stages
    /// fp16(x * norm_weight) as it copies x, with each row's sum of squares in the contract's order, and multiplies
    /// the row's outputs by its inverse RMS before they are rounded, since rms_norm(x) * w . W^T = inv * ((x * w) . W^T).
    /// So no normalize pass and no barrier beyond the plain copy's before the first product; the outputs differ from
    /// the exact form's by fp16 rounding (x * w rounded once instead of x * inv, then * w).
    bool norm_scaled = false;
    /// group mode: y is the residual stream, y = fp16(y + fp16(x . W^T)) (forward_residual; launch_rms_norm's add).
    bool residual_add = false;
    /// With residual_add, one member and a single (unpaired) launch (forward_residual_normed): the launch's last CTA to
    /// finish also writes norm_out[r] = rms_norm(y[r]) * out_norm_weight for its rows, by rms_norm.cuh's contract
    /// (bit-identical to launch_rms_norm of the updated stream), so no RMSNorm kernel follows o_proj / down_proj.
    /// The last CTA is found by `arrivals` (a device counter at zero, re-armed by that CTA); rows of N outputs with
    /// a_norms_rows_of(N), 16-byte aligned (the caller checks).
    __half* norm_out = nullptr;
    const __half* out_norm_weight = nullptr;
    double out_norm_eps = 0;
    unsigned* arrivals = nullptr;
    /// Measurement only (QBENCH_GPTQ_NORM_PROBE, a_norm_probe_from_env; wrong outputs): the Norm kernels leave out the
    /// sums of squares (bit 1) and / or the row sums and inverse RMS (bit 2), so timing them apart says what each costs.
    int norm_probe = 0;
    /// Paired CTAs (QBENCH_GPTQ_PAIR, a_pairing): the launch's CTAs (a_grid) run two to a 1024-thread CTA, one per
    /// 16-warp half, staging one copy of x for both. Why: every CTA reads all rows x K of x from L2 before its main
    /// loop, and at beam 4 that burst (on `down`, 88 KB per CTA, 23 MB per launch: as many bytes as the weights) is
    /// what a launch pays beyond beam 1; pairs halve it. The same sums in the same order: bit-identical outputs.
    /// Ignored with the folded norm.
    bool paired = false;
    /// Measurement only (QBENCH_GPTQ_PAIR_SPREAD=1, a_pair_spread_from_env): a paired CTA hosts logical CTAs b and
    /// b + grid instead of 2b and 2b + 1, the two that single CTAs would most likely put on one SM (the same outputs).
    bool pair_spread = false;
    /// Measurement switch (QBENCH_GPTQ_L2PRE, a_l2_prefetch_from_env): before the PDL wait each warp also asks L2 for
    /// up to this many bytes of its run beyond the chunks it loads at once (and for all of its run's records), by
    /// cp.async.bulk.prefetch.L2: no registers, and DRAM requests in flight while the previous kernel's last CTAs
    /// still run (a CTA becomes resident as soon as one of the previous kernel's CTAs on its SM retires). 0: none.
    /// Measured on the H200: +35% per 7B step at 4 KB and at whole runs alike (PERF_NOTES.md, eleventh session).
    int l2_prefetch_bytes = 0;
    int red_floats = 0;  ///< set by launch_a_gemm: one half's partial outputs (floats)
    /// Measurement only (bench_gptq's launch trace, a_trace_open): k_a_trace_fields stamps per CTA of this launch,
    /// written by thread 0 (set by launch_a_gemm while a trace is open; null otherwise, and then nothing is stamped).
    unsigned long long* trace = nullptr;
};

/// Whether a_args::norm_out can cover rows of n outputs: launch_rms_norm's fast path, whose reduction order it keeps.
inline bool a_norms_rows_of(std::int64_t n) { return n > 0 && n % 8 == 0 && n / 8 <= k_rms_norm_max_chunks; }

/// The launch trace's stamps per CTA (a_args::trace), in order: the GPU's nanosecond timer (%globaltimer, common to
/// all SMs, so launches and CTAs compare) when thread 0 starts, when its PDL wait returns (the previous kernels are
/// done), when x is staged (after the CTA barrier), when every warp's main loop is done (after the output barrier)
/// and when thread 0's outputs are stored; then the SM the CTA ran on.
enum a_trace_field : int { a_trace_entry, a_trace_waited, a_trace_staged, a_trace_loop_done, a_trace_end, a_trace_sm };
inline constexpr int k_a_trace_fields = 6;

/// What the trace knows of each launch it stamped, in launch order: its CTAs and what it computes.
struct a_trace_launch {
    int grid = 0;
    a_mode mode = a_mode::group;
    int members = 1;
    int kblocks = 0;
    int mtiles = 0;  ///< all members' together (swiglu: the gate's)
    std::size_t first = 0;  ///< its first CTA's index in the stamps
};
/// Measurement only: while open, each v3 launch gets the next grid's worth of stamps (k_a_trace_fields per CTA) of
/// `stamps` (device memory, room for `capacity_ctas` CTAs); a launch past the room is not stamped. Host state of this
/// process; a graph captured while open keeps the addresses, so each replay stamps again. Not thread-safe: one bench.
void a_trace_open(unsigned long long* stamps, std::size_t capacity_ctas);
/// Closes the trace and returns the launches it stamped.
std::vector<a_trace_launch> a_trace_close();
/// launch_a_gemm's side: records `launch` (its `first` set here) and returns its stamps, or null when no trace is open
/// or no room is left.
unsigned long long* a_trace_claim(a_trace_launch launch);

/// When the v3 launches of a layer pair their CTAs (a_args::paired): never (QBENCH_GPTQ_PAIR=0), at batches of 2 rows
/// and more (`beams`), always (`1`), or by width (unset or `auto`): at 2 and 3 bits always, at 4 bits from 4 rows,
/// at 8 bits from 2. Measured on the H100 (PERF_NOTES.md, ninth session), 7B decode step with fused launches, beams 1 /
/// 2 / 4, single vs paired: 2-bit 1.339 / 1.453 / 1.680 ms vs 1.347 / 1.389 / 1.487; 3-bit 1.740 / 1.891 / 2.132 vs
/// 1.721 / 1.757 / 1.864; 4-bit 1.678 / 1.763 / 2.000 vs 1.807 / 1.840 / 1.962 (why 4 bits lose at beam 1 is not
/// known yet); and on the H200 (twelfth session, with the norm kernels) 8-bit 2.004 / 2.113 / 2.341 vs 2.011 / 2.057 /
/// 2.175. Read when a layer loads.
enum class a_pairing : int { never = 0, beams = 1, always = 2, by_width = 3 };
a_pairing a_pairing_from_env();
/// Whether a launch of `rows` rows at `bits` pairs under the policy (the caller also wants more CTAs than SMs).
bool a_pairs(a_pairing policy, int bits, int rows);

/// QBENCH_GPTQ_PAIR_SPREAD=1 (a_args::pair_spread; unset: 0), read once. Measurement only.
bool a_pair_spread_from_env();

/// QBENCH_GPTQ_L2PRE=0..1024 KB per warp (a_args::l2_prefetch_bytes, in bytes; unset or invalid: 0), read when a
/// layer loads.
int a_l2_prefetch_from_env();

/// QBENCH_GPTQ_XCOPY=plain|pairs|quads|async (unset: quads).
a_x_copy chosen_x_copy();
/// QBENCH_GPTQ_NORM_FOLD=scaled (a_args::norm_scaled; unset or `exact`: the bit-identical fold), read when a layer
/// loads; a layer that takes it also asks the executor to fold (fused_linear::prefers_folded_norm).
bool a_norm_scaled_from_env();
/// QBENCH_GPTQ_NORM_PROBE=0..3 (a_args::norm_probe; unset: 0), read when a layer loads. Measurement only.
int a_norm_probe_from_env();

/// The most mtiles one CTA of a launch owns (sizes its shared memory): group, the largest share of a member; swiglu,
/// the gate and up tiles of the largest pair range.
int a_max_tiles_per_cta(a_mode mode, const a_args& args);
/// CTAs of the launch.
int a_grid(a_mode mode, const a_args& args);

/// Row stride (halves) of the activations in shared memory: K padded to k-blocks, plus 16 bytes so that the batch
/// rows fall into different banks.
QB_GPTQ_HD inline int a_x_stride(int kblocks) { return kblocks * static_cast<int>(k_block_rows) + 8; }
/// Dynamic shared memory of a launch: the activations [rows][a_x_stride] (fp16), their sums per (k-block, row of 8)
/// (fp32), then one fp32 partial per (mtile of the CTA, warp, row, column of the mtile), per logical CTA of a paired
/// CTA (`pairs` 2).
inline std::size_t a_smem_bytes(int max_tiles_per_cta, int rows, int kblocks, int pairs = 1) {
    return static_cast<std::size_t>(rows) * a_x_stride(kblocks) * 2 + static_cast<std::size_t>(kblocks) * 8 * sizeof(float) +
           static_cast<std::size_t>(pairs) * max_tiles_per_cta * k_a_warps * rows * k_a_tile_cols * sizeof(float);
}
/// The most dynamic shared memory a launch may take: two CTAs per SM on sm_90 (227 KB each SM); a paired CTA twice.
inline constexpr std::size_t k_a_max_smem = 113 * 1024;
// (The L1 / shared-memory split is left to the driver; QBENCH_GPTQ_CARVEOUT=0..100 asks for one, for A/B runs: asked
// for, 25% and 50% were slower than the driver's choice on the H100 and 100% no faster; PERF_NOTES.md, tenth session.)

/// Rows one launch can take for a K (the host splits larger batches): as many as fit k_a_max_smem, at most 8.
inline int a_rows_per_launch(int kblocks, int max_tiles_per_cta) {
    int r = k_a_max_rows;
    while (r > 1 && a_smem_bytes(max_tiles_per_cta, r, kblocks) > k_a_max_smem) --r;
    return r;
}

/// How a launch forms its activations (the kernels' template parameter): x as it is; rms_norm(x) * w exactly as the
/// RMSNorm kernel forms it (a_args::norm_weight); or x * w with the inverse RMS applied to the outputs
/// (a_args::norm_scaled).
enum class a_norm_form : int { none = 0, exact = 1, scaled = 2 };
inline a_norm_form a_norm_form_of(const a_args& a) {
    return a.norm_weight == nullptr ? a_norm_form::none : a.norm_scaled ? a_norm_form::scaled : a_norm_form::exact;
}

/// The v3 kernel of a width (2, 3, 4 or 8; nullptr otherwise), weight load policy (past L1 or ld.global.cs,
/// gptq_stream_load.cuh; the caller decides once, at load), mode and folded norm (default load policy only), and its
/// launch (grid: a_grid).
const void* a_kernel_for(int bits, bool bypass_l1, a_mode mode = a_mode::group, a_norm_form norm = a_norm_form::none);
void launch_a_gemm(int bits, bool bypass_l1, a_mode mode, const a_args& args, const launch_options& o);

/// Converts AutoGPTQ's qweight [ceil(k/32)*bits][n] (device) into the v3 layout (device), through row_of.
void launch_repack_a(int bits, const std::int32_t* qweight_autogptq, const std::int32_t* row_of, std::int64_t k,
                     std::int64_t n, int kblocks, std::uint32_t* qweight_device, const launch_options& o);

/// Reconstructs W^T [k][n] fp16 (original row order) from the v3 layout: (q - z) * s rounded once to fp16.
void launch_reconstruct_a(int bits, const std::uint32_t* qweight, const std::uint32_t* meta, const std::int32_t* row_of,
                          std::int64_t k, std::int64_t n, int kblocks, __half* w_t, const launch_options& o);

}  // namespace qbench::gptq
