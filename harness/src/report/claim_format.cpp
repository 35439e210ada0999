// The claims scoreboard as markdown and JSON.
#include "qbench/report/claim_report.hpp"

#include "text_table.hpp"

namespace qbench {
namespace rd = report_detail;

namespace {

std::string optional_figure(const std::optional<double>& v, std::string_view unit) {
    return v ? rd::format_figure(*v, unit) : "-";
}

nlohmann::ordered_json optional_json(const std::optional<double>& v) {
    return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
}

}  // namespace

std::string format_report_markdown(const report_result& report) {
    std::size_t count[4] = {0, 0, 0, 0};
    for (const claim_result& c : report.claims) ++count[static_cast<int>(c.status)];
    std::string out = "## The seed's claims\n\n";
    out += std::to_string(report.claims.size()) + " claims: " + std::to_string(count[0]) + " reproduced, " +
           std::to_string(count[1]) + " partly, " + std::to_string(count[2]) + " not reproduced, " +
           std::to_string(count[3]) + " not evaluated.\n\n";

    std::vector<std::vector<std::string>> rows;
    for (const claim_result& c : report.claims)
        rows.push_back({c.text + " (" + c.id + ")", c.measured.empty() ? "-" : c.measured,
                        std::string(to_string(c.status)), c.why});
    out += rd::markdown_table({"claim", "measured", "verdict", "why"}, rows);

    out += "\n### Checks\n";
    for (const claim_result& c : report.claims) {
        out += "\n**" + c.id + "**: " + std::string(to_string(c.status)) + ". Source: " + c.source + "\n";
        if (c.checks.empty()) out += "- " + c.why + "\n";
        for (const claim_check& k : c.checks)
            out += std::string("- ") + (k.holds ? "holds" : "FAILS") + ": " + k.subject + ": " + k.figures + "\n";
    }

    out += "\n### Speed and quality by cell\n\nQuality is measured against the FP16 model on the same prompt.\n\n";
    rows.clear();
    for (const cell_overview& cell : report.cells)
        rows.push_back({cell.label, cell.outcome, optional_figure(cell.tokens_per_s, "tokens/s"),
                        optional_figure(cell.top1_agreement, "1"), optional_figure(cell.mean_kl, "nats"),
                        optional_figure(cell.vram_peak_bytes, "bytes")});
    out += rd::markdown_table({"cell", "outcome", "decode", "top-1 agreement", "mean KL", "VRAM peak"}, rows);
    return out;
}

nlohmann::ordered_json report_to_json(const report_result& report) {
    nlohmann::ordered_json out = nlohmann::ordered_json::object();
    nlohmann::ordered_json& claims = out["claims"] = nlohmann::ordered_json::array();
    for (const claim_result& c : report.claims) {
        nlohmann::ordered_json j = {{"id", c.id},
                                    {"text", c.text},
                                    {"source", c.source},
                                    {"kind", std::string(to_string(c.kind))},
                                    {"status", std::string(to_string(c.status))},
                                    {"measured", c.measured},
                                    {"why", c.why}};
        j["checks"] = nlohmann::ordered_json::array();
        for (const claim_check& k : c.checks)
            j["checks"].push_back({{"subject", k.subject}, {"figures", k.figures}, {"holds", k.holds}});
        claims.push_back(std::move(j));
    }
    nlohmann::ordered_json& cells = out["cells"] = nlohmann::ordered_json::array();
    for (const cell_overview& cell : report.cells)
        cells.push_back({{"label", cell.label},
                         {"outcome", cell.outcome},
                         {"decode_tokens_per_s", optional_json(cell.tokens_per_s)},
                         {"top1_agreement", optional_json(cell.top1_agreement)},
                         {"mean_kl", optional_json(cell.mean_kl)},
                         {"vram_peak_bytes", optional_json(cell.vram_peak_bytes)}});
    return out;
}

}  // namespace qbench
