#include "qbench/results/timestamp.hpp"

#include <cstdio>
#include <ctime>

namespace qbench {

std::string format_rfc3339_utc(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    const auto ms_since_epoch = duration_cast<milliseconds>(t.time_since_epoch()).count();
    // Floor division, so instants before 1970 still get a millisecond field in [0, 999].
    long long seconds = ms_since_epoch / 1000;
    long long millis = ms_since_epoch % 1000;
    if (millis < 0) {
        millis += 1000;
        seconds -= 1;
    }
    const std::time_t tt = static_cast<std::time_t>(seconds);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[64];  // room for any int year, so the output is never cut
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
    return buf;
}

std::string now_rfc3339_utc() { return format_rfc3339_utc(std::chrono::system_clock::now()); }

namespace {
/// Reads `n` digits at text[pos...] into `value`; false if any is not a digit.
bool digits(std::string_view text, std::size_t pos, std::size_t n, int& value) {
    if (pos + n > text.size()) return false;
    value = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const char c = text[pos + i];
        if (c < '0' || c > '9') return false;
        value = value * 10 + (c - '0');
    }
    return true;
}
}  // namespace

bool is_rfc3339(std::string_view s) noexcept {
    // Only the upper-case 'T' and 'Z' forms: the schema's pattern says the same, and qbench writes no other.
    int year, month, day, hour, minute, second;
    if (!digits(s, 0, 4, year) || s.size() < 20 || s[4] != '-' || !digits(s, 5, 2, month) || s[7] != '-' ||
        !digits(s, 8, 2, day) || s[10] != 'T' || !digits(s, 11, 2, hour) || s[13] != ':' ||
        !digits(s, 14, 2, minute) || s[16] != ':' || !digits(s, 17, 2, second))
        return false;
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return false;
    std::size_t pos = 19;
    if (s[pos] == '.') {
        const std::size_t start = ++pos;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
        if (pos == start) return false;
    }
    if (pos < s.size() && s[pos] == 'Z') return pos + 1 == s.size();
    if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
        int off_h, off_m;
        return pos + 6 == s.size() && digits(s, pos + 1, 2, off_h) && s[pos + 3] == ':' &&
               digits(s, pos + 4, 2, off_m) && off_h <= 23 && off_m <= 59;
    }
    return false;
}

}  // namespace qbench
