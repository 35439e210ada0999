#include "suggest.hpp"

#include <algorithm>
#include <cctype>
#include <cstddef>

namespace qbench::config_detail {
namespace {

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

// Levenshtein distance, case-insensitive. Inputs are names of a few dozen characters; longer ones (fuzzed junk) are
// cut so the quadratic cost stays bounded.
std::size_t edit_distance(std::string_view a, std::string_view b) {
    constexpr std::size_t max_len = 128;
    a = a.substr(0, max_len);
    b = b.substr(0, max_len);
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t above = row[j];
            const std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + cost});
            diagonal = above;
        }
    }
    return row[b.size()];
}

bool starts_with_nocase(std::string_view text, std::string_view prefix) {
    if (prefix.size() > text.size()) return false;
    for (std::size_t i = 0; i < prefix.size(); ++i)
        if (lower(text[i]) != lower(prefix[i])) return false;
    return true;
}

// The words of a name: "vram_usable_mib" -> {vram, usable, mib}.
std::vector<std::string_view> words(std::string_view name) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= name.size(); ++i) {
        if (i == name.size() || name[i] == '_' || name[i] == '-' || name[i] == '.') {
            if (i > start) out.push_back(name.substr(start, i - start));
            start = i + 1;
        }
    }
    return out;
}

// "vram_mib" for "vram_usable_mib": every word of `given` is a word of `name` (a word left out is a likely slip).
bool words_contained(std::string_view given, std::string_view name) {
    const std::vector<std::string_view> have = words(name);
    const std::vector<std::string_view> want = words(given);
    if (want.size() < 2) return false;
    return std::all_of(want.begin(), want.end(), [&](std::string_view w) {
        return std::any_of(have.begin(), have.end(), [&](std::string_view h) {
            return h.size() == w.size() && starts_with_nocase(h, w);
        });
    });
}

}  // namespace

std::string nearest_name(std::string_view given, const std::vector<std::string>& known) {
    if (given.empty()) return {};
    std::string best;
    std::size_t best_distance = 0;
    for (const std::string& name : known) {
        std::size_t d = edit_distance(given, name);
        // "vicuna-7b" for "vicuna-7b-v0": a prefix of at least 3 characters is as good as a one-letter typo.
        if (given.size() >= 3 && starts_with_nocase(name, given)) d = std::min<std::size_t>(d, 1);
        if (words_contained(given, name)) d = std::min<std::size_t>(d, 1);
        if (best.empty() || d < best_distance) {
            best = name;
            best_distance = d;
        }
    }
    // A third of the length (at least 2 edits) separates typos from different words.
    const std::size_t allowed = std::max<std::size_t>(2, std::min(given.size(), best.size()) / 3);
    return best_distance <= allowed ? best : std::string{};
}

std::string suggestion_suffix(std::string_view given, const std::vector<std::string>& known) {
    if (known.empty()) return {};
    const std::string near = nearest_name(given, known);
    if (!near.empty()) return "; did you mean '" + near + "'?";
    std::string list = "; known: ";
    constexpr std::size_t max_listed = 24;
    for (std::size_t i = 0; i < known.size() && i < max_listed; ++i) {
        if (i) list += ", ";
        list += known[i];
    }
    if (known.size() > max_listed) list += ", ... (" + std::to_string(known.size()) + " in all)";
    return list;
}

}  // namespace qbench::config_detail
