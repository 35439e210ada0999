#include "qbench/common/stats.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace qbench {

namespace {
double percentile_sorted(const std::vector<double>& v, double p) {
    if (v.empty()) return 0;
    const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(v.size() - 1);
    const auto lo = static_cast<std::size_t>(std::floor(rank));
    const auto hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}
}  // namespace

double percentile(std::span<const double> samples, double p) {
    std::vector<double> v(samples.begin(), samples.end());
    std::sort(v.begin(), v.end());
    return percentile_sorted(v, p);
}

summary summarize(std::span<const double> samples) {
    summary s;
    s.count = samples.size();
    if (samples.empty()) return s;
    std::vector<double> v(samples.begin(), samples.end());
    std::sort(v.begin(), v.end());
    s.min = v.front();
    s.max = v.back();
    s.median = percentile_sorted(v, 50);
    s.p10 = percentile_sorted(v, 10);
    s.p90 = percentile_sorted(v, 90);
    s.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
    if (v.size() > 1) {
        double ss = 0;
        for (double x : v) ss += (x - s.mean) * (x - s.mean);
        s.stddev = std::sqrt(ss / static_cast<double>(v.size() - 1));
    }
    return s;
}

}  // namespace qbench
