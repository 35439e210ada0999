#pragma once
// Private to qbench_results: the small toolkit the reader uses to check a parsed document against the schema and
// report the first problem as input_error(file, JSON pointer, message). It mirrors
// results/schema/qbench-results.schema.json; the two are kept in step by test_results and test_results_schema.
#include "qbench/common/errors.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace qbench::detail {

using ojson = nlohmann::ordered_json;

class json_check {
public:
    /// strict: unknown keys are errors (the file's schema minor version is not newer than ours).
    json_check(std::string file, bool strict) : m_file(std::move(file)), m_strict(strict) {}

    const std::string& file() const noexcept { return m_file; }
    bool strict() const noexcept { return m_strict; }

    [[noreturn]] void fail(const std::string& pointer, const std::string& message) const;

    /// JSON pointer of a member / an element (RFC 6901 escaping of '~' and '/').
    static std::string child(const std::string& pointer, std::string_view key);
    static std::string child(const std::string& pointer, std::size_t index);

    void expect_object(const ojson& j, const std::string& pointer) const;
    void expect_array(const ojson& j, const std::string& pointer) const;
    /// In strict mode, a key not in `allowed` is an error.
    void allowed_keys(const ojson& object, const std::string& pointer,
                      std::initializer_list<std::string_view> allowed) const;
    /// The member `key` of `object` (which is an object); missing is an error.
    const ojson& member(const ojson& object, std::string_view key, const std::string& pointer) const;

    const std::string& string_value(const ojson& j, const std::string& pointer) const;
    bool boolean_value(const ojson& j, const std::string& pointer) const;
    /// A finite number (any JSON number).
    double number_value(const ojson& j, const std::string& pointer) const;
    double non_negative_number(const ojson& j, const std::string& pointer) const;
    /// An integer >= 0 (a JSON number without fraction or exponent).
    std::uint64_t non_negative_integer(const ojson& j, const std::string& pointer) const;
    /// An RFC 3339 date-time string.
    const std::string& timestamp_value(const ojson& j, const std::string& pointer) const;

private:
    std::string m_file;
    bool m_strict;
};

}  // namespace qbench::detail
