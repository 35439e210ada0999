#pragma once
/// How a matrix cell ended. Every cell that ran (or was refused) yields exactly one record with one outcome; only
/// `error` and `timeout` make `qbench run` exit non-zero, because OOM and unsupported cells are answers, not failures.
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace qbench {

enum class outcome : std::uint8_t {
    ok,           ///< the cell ran to the end; its metrics are complete
    oom_vram,     ///< a device allocation exceeded the emulated instance's VRAM (or the real device ran out)
    oom_host,     ///< a large host buffer exceeded the instance's RAM, or the OS killed the child for memory
    unsupported,  ///< the backend cannot run this cell (e.g. bnb at 3 bits); the reason says why
    error,        ///< anything else went wrong: a CUDA fault, a crash of the child, a bad artifact
    timeout,      ///< the child ran past the runner's time limit and was killed
};

/// Every outcome, in declaration order (for tables, tests and the schema).
inline constexpr std::array<outcome, 6> k_all_outcomes = {outcome::ok,          outcome::oom_vram, outcome::oom_host,
                                                          outcome::unsupported, outcome::error,    outcome::timeout};

/// The JSON spelling: "ok", "oom_vram", "oom_host", "unsupported", "error", "timeout".
std::string_view to_string(outcome o) noexcept;
/// Inverse of to_string; nullopt for any other text (case-sensitive, as the JSON is).
std::optional<outcome> parse_outcome(std::string_view text) noexcept;

}  // namespace qbench
