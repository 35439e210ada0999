#include "json_check.hpp"

#include "qbench/results/timestamp.hpp"

#include <algorithm>
#include <cmath>

namespace qbench::detail {

void json_check::fail(const std::string& pointer, const std::string& message) const {
    throw input_error(m_file, pointer, message);
}

std::string json_check::child(const std::string& pointer, std::string_view key) {
    std::string out = pointer;
    out += '/';
    for (char c : key) {
        if (c == '~')
            out += "~0";
        else if (c == '/')
            out += "~1";
        else
            out += c;
    }
    return out;
}

std::string json_check::child(const std::string& pointer, std::size_t index) {
    return pointer + '/' + std::to_string(index);
}

void json_check::expect_object(const ojson& j, const std::string& pointer) const {
    if (!j.is_object()) fail(pointer, std::string("expected an object, found ") + j.type_name());
}

void json_check::expect_array(const ojson& j, const std::string& pointer) const {
    if (!j.is_array()) fail(pointer, std::string("expected an array, found ") + j.type_name());
}

void json_check::allowed_keys(const ojson& object, const std::string& pointer,
                              std::initializer_list<std::string_view> allowed) const {
    if (!m_strict) return;
    for (const auto& item : object.items()) {
        if (std::find(allowed.begin(), allowed.end(), item.key()) == allowed.end())
            fail(child(pointer, item.key()), "unknown key '" + item.key() + "'");
    }
}

const ojson& json_check::member(const ojson& object, std::string_view key, const std::string& pointer) const {
    const auto it = object.find(std::string(key));
    if (it == object.end()) fail(pointer, "missing required key '" + std::string(key) + "'");
    return *it;
}

const std::string& json_check::string_value(const ojson& j, const std::string& pointer) const {
    if (!j.is_string()) fail(pointer, std::string("expected a string, found ") + j.type_name());
    return j.get_ref<const std::string&>();
}

bool json_check::boolean_value(const ojson& j, const std::string& pointer) const {
    if (!j.is_boolean()) fail(pointer, std::string("expected true or false, found ") + j.type_name());
    return j.get<bool>();
}

double json_check::number_value(const ojson& j, const std::string& pointer) const {
    if (!j.is_number()) fail(pointer, std::string("expected a number, found ") + j.type_name());
    const double v = j.get<double>();
    // Parsed JSON cannot hold NaN or infinity, but a record being appended can (nlohmann would write null).
    if (!std::isfinite(v)) fail(pointer, "expected a finite number");
    return v;
}

double json_check::non_negative_number(const ojson& j, const std::string& pointer) const {
    const double v = number_value(j, pointer);
    if (v < 0) fail(pointer, "expected a number >= 0, found " + j.dump());
    return v;
}

std::uint64_t json_check::non_negative_integer(const ojson& j, const std::string& pointer) const {
    // Parsed non-negative integers are unsigned, but records built in memory may hold signed ones.
    if (j.is_number_unsigned()) return j.get<std::uint64_t>();
    if (j.is_number_integer()) {
        if (j.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(j.get<std::int64_t>());
        fail(pointer, "expected an integer >= 0, found " + j.dump());
    }
    fail(pointer, std::string("expected an integer >= 0, found ") + (j.is_number() ? "a fraction" : j.type_name()));
}

const std::string& json_check::timestamp_value(const ojson& j, const std::string& pointer) const {
    const std::string& s = string_value(j, pointer);
    if (!is_rfc3339(s)) fail(pointer, "expected an RFC 3339 date-time such as 2025-01-31T12:00:00.000Z, found '" + s + "'");
    return s;
}

}  // namespace qbench::detail
