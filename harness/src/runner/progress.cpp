#include "qbench/runner/progress.hpp"

#include <cstdio>
#include <iostream>
#include <unistd.h>

namespace qbench {

namespace {
std::string format_duration(double s) {
    const auto total = static_cast<long long>(s + 0.5);
    char buf[32];
    if (total >= 3600)
        std::snprintf(buf, sizeof buf, "%lldh%02lldm", total / 3600, (total % 3600) / 60);
    else
        std::snprintf(buf, sizeof buf, "%lldm%02llds", total / 60, total % 60);
    return buf;
}
}  // namespace

progress_display::progress_display(std::size_t total) : m_total(total), m_tty(::isatty(STDERR_FILENO) != 0) {}

std::string progress_display::prefix(std::size_t index) const {
    return "[" + std::to_string(index + 1) + "/" + std::to_string(m_total) + "]";
}

// ETA from the mean wall time of the cells finished so far (cells of one matrix are of similar cost).
std::string progress_display::eta() const {
    if (m_finished == 0) return "ETA ?";
    const double per_cell = m_finished_seconds / static_cast<double>(m_finished);
    const double left = per_cell * static_cast<double>(m_total - m_index);
    return "ETA " + format_duration(left);
}

void progress_display::start(std::size_t index, const cell_spec& cell) {
    m_index = index;
    m_label = cell_label(cell);
    m_phase = "start";
    m_cell_start = std::chrono::steady_clock::now();
    if (!m_tty) std::cerr << prefix(index) << " " << m_label << " ..." << std::endl;
}

void progress_display::tick(double elapsed_s, const std::string& phase) {
    if (!phase.empty() && phase != m_phase) {
        m_phase = phase;
        if (!m_tty) std::cerr << prefix(m_index) << " " << m_label << " | " << m_phase << std::endl;
    }
    if (m_tty)
        std::cerr << "\r\033[K" << prefix(m_index) << " " << m_label << " | " << m_phase << " | "
                  << format_duration(elapsed_s) << " | " << eta() << std::flush;
}

void progress_display::finish(std::size_t index, const cell_spec& cell, const cell_record& record) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - m_cell_start).count();
    ++m_finished;
    m_finished_seconds += s;
    if (m_tty) std::cerr << "\r\033[K";
    std::cerr << prefix(index) << " " << cell_label(cell) << " -> " << to_string(record.outcome);
    if (!record.reason.empty() && record.outcome != outcome::ok) {
        const std::string reason = record.reason.size() > 160 ? record.reason.substr(0, 157) + "..." : record.reason;
        std::cerr << " (" << reason << ")";
    }
    std::cerr << " in " << format_duration(s) << std::endl;
}

void progress_display::skipped(std::size_t index, const cell_spec& cell) {
    std::cerr << prefix(index) << " " << cell_label(cell) << " -> already recorded (resume)" << std::endl;
}

void progress_display::interrupted(std::size_t index, const cell_spec& cell) {
    if (m_tty) std::cerr << "\r\033[K";
    std::cerr << prefix(index) << " " << cell_label(cell) << " -> interrupted, not recorded" << std::endl;
}

void progress_display::done() {
    if (m_tty) std::cerr << "\r\033[K" << std::flush;
}

}  // namespace qbench
