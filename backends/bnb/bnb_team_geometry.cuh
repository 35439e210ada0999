#pragma once
// Launch geometry of the team kernels (bnb_gemv_team_4bit.cu, bnb_gemv_team_int8.cu): the register budgets that bound
// the kernel instantiations, the launch-shape tables both kernels are indexed by (gemv_team_configs()), and the host
// planning of a launch (CTA shape, grid, team shares, batches; defined in bnb_team_geometry.cu). Internal header, in
// qbench::bnb::detail like bnb_team_common.cuh: the tables are inline, so both kernel files see one definition.
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
#include "backends/bnb/bnb_team_common.cuh"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>

namespace qbench::bnb::detail {

// Register budgets. A kernel instantiation names its budget (registers per thread) as a template parameter; the
// launch bounds that hold ptxas to it are the widest CTA the kernel is built for and how many CTAs of that width must
// fit in an SM's register file together. A team wider than max_threads (a long row) runs the `wide` budget's kernel.
struct team_budget {
    int regs;         // registers per thread
    int max_threads;  // the widest CTA this kernel is launched with
    int min_ctas;     // CTAs of max_threads that must be resident per SM at once
    int wide;         // the budget of the kernel that runs teams wider than max_threads
};
inline constexpr int k_sm_registers = 64 * 1024;  // sm_75 .. sm_90
inline constexpr team_budget k_budgets[] = {
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

#define QB_TEAM_BOUNDS(Regs) __launch_bounds__(::qbench::bnb::detail::budget_of(Regs).max_threads, \
                                              ::qbench::bnb::detail::budget_of(Regs).min_ctas)

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
inline constexpr team_config k_configs[] = {
    {8, 256, 2, 128, 0, "team-u8-c256x2"},
    {8, 256, 2, 80, 0, "team-u8-c256x2-r80"},
    {8, 256, 3, 80, 0, "team-u8-c256x3-r80"},
    {8, 256, 2, 80, 2, "team-u8-c256x2-r80-p2"},
    {8, 256, 3, 80, 2, "team-u8-c256x3-r80-p2"},
    {8, 128, 4, 80, 2, "team-u8-c128x4-r80-p2"},
    {4, 512, 2, 64, 0, "team-u4-c512x2-r64"},
    {2, 384, 3, 56, 0, "team-u2-c384x3-r56"},
};
inline constexpr int k_config_count = sizeof(k_configs) / sizeof(k_configs[0]);
static_assert(k_config_count == k_gemv_team_config_count, "bnb_kernels.cuh numbers the 4-bit variants after the team configs");

// int8 configs: 32 bytes per row and thread, so half the rows in flight for the same registers.
inline constexpr team_config k_int8_configs[] = {
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

int sm_count();

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
    // QBENCH_BNB_CARVEOUT=0..100 (measurement only): the L1 / shared-memory split to prefer (launch.cuh).
    if (const int carveout = preferred_carveout_from_env("QBENCH_BNB_CARVEOUT"); carveout >= 0)
        QB_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, carveout));
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
team_geometry shape_of(std::int64_t slices, int cta_target, int max_threads);

// Grid, team shares and batches. With PDL a kernel's CTAs are placed while its predecessor's last CTAs still run (a
// one-CTA RMSNorm before q/k/v and gate/up): where two CTAs of this kernel fill an SM's registers (the
// double-quantized kernel: 125 registers, 2 x 256 threads = the whole register file), a grid of every slot on every
// SM left one CTA to start only when that CTA exited. One slot is left free instead.
// The teams are shared out to the members in proportion to their rows (largest remainders; at least one each, so the
// grid holds at least one team per member); every team runs the same number of batches (the barriers are CTA-wide),
// enough for the largest share, so the kernel lasts as long as its busiest team.
// member_rows: the rows of each member (SwiGLU: one entry, the row pairs).
void finish(const std::int64_t* member_rows, int members, const team_config& c, int resident_per_sm,
            const team_geometry& gm, int& grid, team_args& a);

/// The member rows finish() shares the teams by (SwiGLU: the pairs, as one member).
template <class Group>
int member_rows_of(const Group& q, bool swiglu, std::int64_t (&rows)[k_team_max_members]) {
    int members = 0;
    for (int m = 0; m < (swiglu ? 1 : k_team_max_members); ++m)
        if (q.m[m].rows > 0) rows[members++] = q.m[m].rows;
    return members;
}

// The kernel instantiations, by rows in flight and register budget. Every config's pair, and the pair of its wide
// budget, must be here (checked at compile time beside each kernel's table), so a config never silently runs
// another shape.
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
int regs_for(const team_config& c, const team_geometry& gm);

// Sizes the 32-bit index arithmetic of the team kernels covers (with room: rows + one batch of every team).
bool fits_32bit(std::int64_t rows, std::int64_t cols, std::int64_t bytes_per_row);

}  // namespace qbench::bnb::detail
