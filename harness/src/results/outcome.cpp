#include "qbench/results/outcome.hpp"

namespace qbench {

std::string_view to_string(outcome o) noexcept {
    switch (o) {
        case outcome::ok: return "ok";
        case outcome::oom_vram: return "oom_vram";
        case outcome::oom_host: return "oom_host";
        case outcome::unsupported: return "unsupported";
        case outcome::error: return "error";
        case outcome::timeout: return "timeout";
    }
    return "error";  // unreachable for valid enumerators; keeps -Wreturn-type quiet
}

std::optional<outcome> parse_outcome(std::string_view text) noexcept {
    for (outcome o : k_all_outcomes)
        if (to_string(o) == text) return o;
    return std::nullopt;
}

}  // namespace qbench
