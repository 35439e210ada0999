// Host side of the team kernels' launch geometry (declared, with the reasons, in bnb_team_geometry.cuh): the SM
// count, the CTA shape of a row length, the grid and the teams' shares of a group, the register budget at a geometry,
// the 32-bit size check, and the names of the launch shapes (gemv_team_configs(), bnb_kernels.cuh).
#include "backends/bnb/bnb_team_geometry.cuh"

#include <algorithm>

namespace qbench::bnb {

namespace detail {

int sm_count() {
    static const int sms = [] {
        int device = 0, n = 0;
        QB_CUDA_CHECK(cudaGetDevice(&device));
        QB_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
        return std::max(1, n);
    }();
    return sms;
}

team_geometry shape_of(std::int64_t slices, int cta_target, int max_threads) {
    team_geometry gm;
    gm.team_threads = static_cast<int>((slices + 31) / 32 * 32);
    gm.teams_per_cta = std::max(1, cta_target / gm.team_threads);
    while (gm.teams_per_cta > 1 && gm.teams_per_cta * gm.team_threads > max_threads) --gm.teams_per_cta;
    gm.cta_threads = gm.teams_per_cta * gm.team_threads;
    return gm;
}

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
    // QBENCH_BNB_L2PRE=0..4096 batches (measurement only; unset: 0), read once.
    static const int early = std::max(0, int_switch_from_env("QBENCH_BNB_L2PRE", 0, 4096));
    a.prefetch_early = early;
    a.batches = static_cast<int>((rows_per_team + c.rows_in_flight - 1) / c.rows_in_flight);
}

int regs_for(const team_config& c, const team_geometry& gm) {
    const team_budget b = budget_of(c.regs);
    return gm.cta_threads > b.max_threads ? b.wide : c.regs;
}

bool fits_32bit(std::int64_t rows, std::int64_t cols, std::int64_t bytes_per_row) {
    return rows < (std::int64_t{1} << 30) && rows * bytes_per_row < (std::int64_t{1} << 62) &&
           rows * cols / 32 < (std::int64_t{1} << 31);
}

}  // namespace detail

using namespace detail;

int gemv_team_configs() { return k_config_count; }

const char* gemv_team_config_name(int config) {
    return config >= 0 && config < k_config_count ? k_configs[config].name : "?";
}

const char* gemv_int8_fused_config_name(int config) {
    return config >= 0 && config < k_config_count ? k_int8_configs[config].name : "?";
}

}  // namespace qbench::bnb
