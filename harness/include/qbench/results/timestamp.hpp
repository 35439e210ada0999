#pragma once
/// RFC 3339 timestamps in UTC, the form every time in a results file takes: "2025-03-14T09:26:53.589Z".
#include <chrono>
#include <string>
#include <string_view>

namespace qbench {

/// `t` as RFC 3339 UTC with milliseconds: "YYYY-MM-DDTHH:MM:SS.mmmZ".
std::string format_rfc3339_utc(std::chrono::system_clock::time_point t);
/// format_rfc3339_utc(now).
std::string now_rfc3339_utc();
/// Whether `text` is an RFC 3339 date-time: "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)", fields in range.
bool is_rfc3339(std::string_view text) noexcept;

}  // namespace qbench
