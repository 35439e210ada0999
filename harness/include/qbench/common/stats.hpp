#pragma once
/// Summary statistics of repeated measurements.
#include <span>
#include <vector>

namespace qbench {

struct summary {
    std::size_t count = 0;
    double median = 0, mean = 0, p10 = 0, p90 = 0, min = 0, max = 0;
    double stddev = 0;  ///< sample standard deviation (Bessel); 0 for fewer than two samples
};

/// Percentile by linear interpolation between closest ranks (numpy's default); p in [0, 100].
double percentile(std::span<const double> samples, double p);
summary summarize(std::span<const double> samples);

}  // namespace qbench
