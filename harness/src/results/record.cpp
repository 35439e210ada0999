#include "qbench/results/record.hpp"

#include "checks.hpp"

namespace qbench {

namespace {
constexpr char k_cell[] = "cell";
constexpr char k_config_hash[] = "config_hash";
constexpr char k_outcome[] = "outcome";
constexpr char k_reason[] = "reason";
constexpr char k_started_at[] = "started_at";
constexpr char k_finished_at[] = "finished_at";
constexpr char k_wall_s[] = "wall_s";
constexpr char k_device[] = "device";
constexpr char k_metrics[] = "metrics";
}  // namespace

nlohmann::ordered_json record_to_json(const cell_record& record) {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    j[k_cell] = cell_to_json(record.cell);
    j[k_config_hash] = record.config_hash;
    j[k_outcome] = std::string(to_string(record.outcome));
    j[k_reason] = record.reason;
    j[k_started_at] = record.started_at;
    j[k_finished_at] = record.finished_at;
    j[k_wall_s] = record.wall_s;
    j[k_device] = record.device;
    j[k_metrics] = record.metrics;
    return j;
}

cell_record record_from_json(const nlohmann::ordered_json& j, const std::string& file, const std::string& pointer) {
    return detail::check_record(j, detail::json_check(file, true), pointer);
}

namespace detail {

namespace {

cell_spec check_cell(const ojson& j, const json_check& check, const std::string& ptr) {
    check.expect_object(j, ptr);
    // The cell's own format belongs to qbench_config: cell_from_json names the bad key as "key 'gptq.group_size'",
    // which becomes the pointer ".../cell/gptq/group_size"; any other place is kept in the message. Whatever else
    // it might throw on hostile input still becomes an input_error.
    try {
        return cell_from_json(nlohmann::json(j), check.file());
    } catch (const input_error& e) {
        const std::string& place = e.place();
        if (place.size() > 6 && place.rfind("key '", 0) == 0 && place.back() == '\'') {
            std::string pointer = ptr;
            for (char c : place.substr(5, place.size() - 6)) pointer += c == '.' ? '/' : c;
            check.fail(pointer, e.message());
        }
        check.fail(ptr, place.empty() ? e.message() : place + ": " + e.message());
    } catch (const std::exception& e) {
        check.fail(ptr, e.what());
    }
}

bool is_lower_hex(const std::string& s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

}  // namespace

cell_record check_record(const ojson& j, const json_check& check, const std::string& pointer) {
    check.expect_object(j, pointer);
    check.allowed_keys(j, pointer,
                       {k_cell, k_config_hash, k_outcome, k_reason, k_started_at, k_finished_at, k_wall_s, k_device,
                        k_metrics});
    const auto at = [&](const char* key) { return json_check::child(pointer, key); };
    cell_record r;

    r.config_hash = check.string_value(check.member(j, k_config_hash, pointer), at(k_config_hash));
    if (!is_lower_hex(r.config_hash)) check.fail(at(k_config_hash), "expected a lower-case hex hash (cell_hash)");

    const std::string& outcome_text = check.string_value(check.member(j, k_outcome, pointer), at(k_outcome));
    const auto parsed = parse_outcome(outcome_text);
    if (!parsed)
        check.fail(at(k_outcome), "unknown outcome '" + outcome_text +
                                      "' (expected ok, oom_vram, oom_host, unsupported, error or timeout)");
    r.outcome = *parsed;

    r.reason = check.string_value(check.member(j, k_reason, pointer), at(k_reason));
    if (r.outcome != outcome::ok && r.reason.empty())
        check.fail(at(k_reason), "a cell with outcome '" + outcome_text + "' must say why");

    r.started_at = check.timestamp_value(check.member(j, k_started_at, pointer), at(k_started_at));
    r.finished_at = check.timestamp_value(check.member(j, k_finished_at, pointer), at(k_finished_at));
    r.wall_s = check.non_negative_number(check.member(j, k_wall_s, pointer), at(k_wall_s));

    r.device = check.string_value(check.member(j, k_device, pointer), at(k_device));
    if (r.device != "cuda" && r.device != "cpu")
        check.fail(at(k_device), "expected \"cuda\" or \"cpu\", found \"" + r.device + "\"");

    const ojson& metrics = check.member(j, k_metrics, pointer);
    check_metrics(metrics, check, at(k_metrics), r.outcome);
    r.metrics = metrics;

    // The cell last: its checks are someone else's, and the fields above give clearer messages first.
    r.cell = check_cell(check.member(j, k_cell, pointer), check, at(k_cell));
    return r;
}

}  // namespace detail
}  // namespace qbench
