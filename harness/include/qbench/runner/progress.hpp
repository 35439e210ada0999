#pragma once
/// Progress of a run: on a terminal one live line (cell i/N, its parameters, phase, elapsed, ETA); otherwise (CI,
/// a pipe) a plain line when a cell starts and when it ends.
#include "qbench/config/cell.hpp"
#include "qbench/results/record.hpp"

#include <chrono>
#include <cstddef>
#include <string>

namespace qbench {

class progress_display {
public:
    explicit progress_display(std::size_t total);
    void start(std::size_t index, const cell_spec& cell);
    void tick(double elapsed_s, const std::string& phase);
    void finish(std::size_t index, const cell_spec& cell, const cell_record& record);
    void skipped(std::size_t index, const cell_spec& cell);
    void interrupted(std::size_t index, const cell_spec& cell);
    void done();

private:
    std::string prefix(std::size_t index) const;
    std::string eta() const;

    std::size_t m_total;
    std::size_t m_finished = 0;
    double m_finished_seconds = 0;
    bool m_tty;
    std::string m_label;
    std::string m_phase;
    std::size_t m_index = 0;
    std::chrono::steady_clock::time_point m_cell_start;
};

}  // namespace qbench
