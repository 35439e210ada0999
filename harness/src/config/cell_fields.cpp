#include "cell_fields.hpp"

#include "scalar_text.hpp"

#include <cmath>
#include <limits>

namespace qbench::config_detail {
namespace {

// What `prompt_tokens: auto` stands for: MiniGPT-4's chat prompt around "Describe this image" (system text, the
// "###Human: <Img>...</Img> Describe this image###Assistant: " template of Vicuna v0, BOS) is about 55 text tokens
// besides the image embeddings (models-and-instances.md section 2). It is an estimate without a tokenizer, not a
// count: qbench drives the model with synthetic token ids of this length. The Llama-2 template ("[INST] ... [/INST]")
// is about as long, so one number serves both variants.
static_assert(k_auto_prompt_tokens == 55);

constexpr std::int64_t k_big = std::int64_t{1} << 20;

std::int64_t as_int(const field_value& v) { return std::get<std::int64_t>(v); }
double as_num(const field_value& v) { return std::get<double>(v); }
bool as_bool(const field_value& v) { return std::get<bool>(v); }
const std::string& as_text(const field_value& v) { return std::get<std::string>(v); }

bool is_power_of_two(std::int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

std::string in_range(std::int64_t v, std::int64_t lo, std::int64_t hi) {
    if (v >= lo && v <= hi) return {};
    return "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(v);
}

std::string no_check(const field_value&) { return {}; }

std::string check_nonempty(const field_value& v) { return as_text(v).empty() ? "must not be empty" : ""; }

std::string check_bits(const field_value& v) {
    switch (as_int(v)) {
    case 2: case 3: case 4: case 8: case 16: return {};
    default: return "must be one of 2, 3, 4, 8, 16, got " + std::to_string(as_int(v));
    }
}

std::string check_group_size(const field_value& v) {
    const std::int64_t g = as_int(v);
    if (g == -1 || (is_power_of_two(g) && g >= 32 && g <= k_big)) return {};
    return "must be -1 (one group per row) or a power of two >= 32, got " + std::to_string(g);
}

std::string check_blocksize(const field_value& v) {
    const std::int64_t b = as_int(v);
    if (is_power_of_two(b) && b >= 32 && b <= 4096) return {};
    return "must be a power of two in [32, 4096], got " + std::to_string(b);
}

std::string check_fraction(const field_value& v) {  // (0, 1]
    const double x = as_num(v);
    if (x > 0.0 && x <= 1.0) return {};
    return "must be in (0, 1], got " + field_to_string(v);
}

std::string check_temperature(const field_value& v) {
    const double x = as_num(v);
    if (x > 0.0 && x <= 100.0) return {};
    return "must be in (0, 100], got " + field_to_string(v);
}

std::string check_int8_threshold(const field_value& v) {
    const double x = as_num(v);
    if (x >= 0.0 && x <= 1e6) return {};
    return "must be >= 0 (0 disables the outlier decomposition), got " + field_to_string(v);
}

std::string check_image_tokens(const field_value& v) {
    const std::int64_t n = as_int(v);
    if (n == -1 || (n >= 0 && n <= k_big)) return {};
    return "must be >= 0 or auto, got " + std::to_string(n);
}

// Ranges as plain functions (the table stores function pointers).
std::string check_beam(const field_value& v) { return in_range(as_int(v), 1, 64); }
std::string check_seed(const field_value& v) { return in_range(as_int(v), 0, std::numeric_limits<std::int64_t>::max()); }
std::string check_samples(const field_value& v) { return in_range(as_int(v), 1, 100000); }
std::string check_positive_big(const field_value& v) { return in_range(as_int(v), 1, k_big); }
std::string check_nonnegative_big(const field_value& v) { return in_range(as_int(v), 0, k_big); }
std::string check_recons(const field_value& v) { return in_range(as_int(v), 0, 65536); }
std::string check_warmup(const field_value& v) { return in_range(as_int(v), 0, 10000); }
std::string check_repetitions(const field_value& v) { return in_range(as_int(v), 1, 100000); }

using fk = field_kind;
using fs = field_scope;

// clang-format off
const cell_field table[] = {
    {"model", fk::text, fs::every_cell, "", false, 0, check_nonempty,
     [](cell_spec& c, const field_value& v) { c.model = as_text(v); },
     [](const cell_spec& c) -> field_value { return c.model; }},
    {"framework", fk::text, fs::every_cell, "fp16|gptq|bnb", false, 0, no_check,
     [](cell_spec& c, const field_value& v) { c.framework = as_text(v); },
     [](const cell_spec& c) -> field_value { return c.framework; }},
    {"bits", fk::integer, fs::every_cell, "", false, 0, check_bits,
     [](cell_spec& c, const field_value& v) { c.bits = as_int(v); },
     [](const cell_spec& c) -> field_value { return c.bits; }},
    {"beam", fk::integer, fs::every_cell, "", false, 0, check_beam,
     [](cell_spec& c, const field_value& v) { c.beam = as_int(v); },
     [](const cell_spec& c) -> field_value { return c.beam; }},
    {"instance", fk::text, fs::every_cell, "", false, 0, check_nonempty,
     [](cell_spec& c, const field_value& v) { c.instance = as_text(v); },
     [](const cell_spec& c) -> field_value { return c.instance; }},
    {"seed", fk::integer, fs::every_cell, "", false, 0, check_seed,
     [](cell_spec& c, const field_value& v) { c.seed = static_cast<std::uint64_t>(as_int(v)); },
     [](const cell_spec& c) -> field_value {
         return static_cast<std::int64_t>(c.seed & static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()));
     }},

    {"gptq.group_size", fk::integer, fs::gptq, "", false, 0, check_group_size,
     [](cell_spec& c, const field_value& v) { c.gptq.group_size = as_int(v); },
     [](const cell_spec& c) -> field_value { return c.gptq.group_size; }},
    {"gptq.desc_act", fk::boolean, fs::gptq, "", false, 0, no_check,
     [](cell_spec& c, const field_value& v) { c.gptq.desc_act = as_bool(v); },
     [](const cell_spec& c) -> field_value { return c.gptq.desc_act; }},
    {"gptq.static_groups", fk::boolean, fs::gptq, "", false, 0, no_check,
     [](cell_spec& c, const field_value& v) { c.gptq.static_groups = as_bool(v); },
     [](const cell_spec& c) -> field_value { return c.gptq.static_groups; }},
    {"gptq.sym", fk::boolean, fs::gptq, "", false, 0, no_check,
     [](cell_spec& c, const field_value& v) { c.gptq.sym = as_bool(v); },
     [](const cell_spec& c) -> field_value { return c.gptq.sym; }},
    {"gptq.damp_percent", fk::number, fs::gptq, "", false, 0, check_fraction,
     [](cell_spec& c, const field_value& v) { c.gptq.damp_percent = as_num(v); },
     [](const cell_spec& c) -> field_value { return c.gptq.damp_percent; }},
    {"gptq.calibration_samples", fk::integer, fs::gptq, "", false, 0, check_samples,
     [](cell_spec& c, const field_value& v) { c.gptq.calibration_samples = as_int(v); },
     [](const cell_spec& c) -> field_value { return c.gptq.calibration_samples; }},
    {"gptq.calibration_seq_len", fk::integer, fs::gptq, "", false, 0, check_positive_big,
     [](cell_spec& c, const field_value& v) { c.gptq.calibration_seq_len = as_int(v); },
     [](const cell_spec& c) -> field_value { return c.gptq.calibration_seq_len; }},
    {"gptq.memory_plan", fk::text, fs::gptq, "autogptq|streaming", false, 0, no_check,
     [](cell_spec& c, const field_value& v) { c.gptq.memory_plan = as_text(v); },
     [](const cell_spec& c) -> field_value { return c.gptq.memory_plan; }},
    {"gptq.recons_threshold", fk::integer, fs::gptq, "", false, 0, check_recons,
     [](cell_spec& c, const field_value& v) { c.gptq.recons_threshold = as_int(v); },
     [](const cell_spec& c) -> field_value { return c.gptq.recons_threshold; }},

    {"bnb.quant_type", fk::text, fs::bnb_4bit, "nf4|fp4", false, 0, no_check,
     [](cell_spec& c, const field_value& v) { c.bnb.quant_type = as_text(v); },
     [](const cell_spec& c) -> field_value { return c.bnb.quant_type; }},
    {"bnb.double_quant", fk::boolean, fs::bnb_4bit, "", false, 0, no_check,
     [](cell_spec& c, const field_value& v) { c.bnb.double_quant = as_bool(v); },
     [](const cell_spec& c) -> field_value { return c.bnb.double_quant; }},
    {"bnb.blocksize", fk::integer, fs::bnb_4bit, "", false, 0, check_blocksize,
     [](cell_spec& c, const field_value& v) { c.bnb.blocksize = as_int(v); },
     [](const cell_spec& c) -> field_value { return c.bnb.blocksize; }},
    {"bnb.compute_dtype", fk::text, fs::bnb_4bit, "float16|float32|bfloat16", false, 0, no_check,
     [](cell_spec& c, const field_value& v) { c.bnb.compute_dtype = as_text(v); },
     [](const cell_spec& c) -> field_value { return c.bnb.compute_dtype; }},
    {"bnb.int8_threshold", fk::number, fs::bnb_8bit, "", false, 0, check_int8_threshold,
     [](cell_spec& c, const field_value& v) { c.bnb.int8_threshold = as_num(v); },
     [](const cell_spec& c) -> field_value { return c.bnb.int8_threshold; }},
    {"bnb.small_batch_path", fk::text, fs::bnb, "dequantize|fused", false, 0, no_check,
     [](cell_spec& c, const field_value& v) { c.bnb.small_batch_path = as_text(v); },
     [](const cell_spec& c) -> field_value { return c.bnb.small_batch_path; }},

    {"generation.prompt", fk::text, fs::every_cell, "", false, 0, no_check,
     [](cell_spec& c, const field_value& v) { c.generation.prompt = as_text(v); },
     [](const cell_spec& c) -> field_value { return c.generation.prompt; }},
    {"generation.prompt_tokens", fk::integer, fs::every_cell, "", true, k_auto_prompt_tokens, check_positive_big,
     [](cell_spec& c, const field_value& v) { c.generation.prompt_tokens = as_int(v); },
     [](const cell_spec& c) -> field_value { return c.generation.prompt_tokens; }},
    {"generation.image_tokens", fk::integer, fs::every_cell, "", true, -1, check_image_tokens,
     [](cell_spec& c, const field_value& v) { c.generation.image_tokens = as_int(v); },
     [](const cell_spec& c) -> field_value { return c.generation.image_tokens; }},
    {"generation.max_new_tokens", fk::integer, fs::every_cell, "", false, 0, check_positive_big,
     [](cell_spec& c, const field_value& v) { c.generation.max_new_tokens = as_int(v); },
     [](const cell_spec& c) -> field_value { return c.generation.max_new_tokens; }},
    {"generation.mode", fk::text, fs::every_cell, "greedy|sample", false, 0, no_check,
     [](cell_spec& c, const field_value& v) { c.generation.mode = as_text(v); },
     [](const cell_spec& c) -> field_value { return c.generation.mode; }},
    {"generation.temperature", fk::number, fs::every_cell, "", false, 0, check_temperature,
     [](cell_spec& c, const field_value& v) { c.generation.temperature = as_num(v); },
     [](const cell_spec& c) -> field_value { return c.generation.temperature; }},
    {"generation.top_k", fk::integer, fs::every_cell, "", false, 0, check_nonnegative_big,
     [](cell_spec& c, const field_value& v) { c.generation.top_k = as_int(v); },
     [](const cell_spec& c) -> field_value { return c.generation.top_k; }},
    {"generation.top_p", fk::number, fs::every_cell, "", false, 0, check_fraction,
     [](cell_spec& c, const field_value& v) { c.generation.top_p = as_num(v); },
     [](const cell_spec& c) -> field_value { return c.generation.top_p; }},
    {"generation.warmup", fk::integer, fs::every_cell, "", false, 0, check_warmup,
     [](cell_spec& c, const field_value& v) { c.generation.warmup = as_int(v); },
     [](const cell_spec& c) -> field_value { return c.generation.warmup; }},
    {"generation.repetitions", fk::integer, fs::every_cell, "", false, 0, check_repetitions,
     [](cell_spec& c, const field_value& v) { c.generation.repetitions = as_int(v); },
     [](const cell_spec& c) -> field_value { return c.generation.repetitions; }},
};
// clang-format on

std::string_view kind_noun(field_kind kind) {
    switch (kind) {
    case field_kind::integer: return "an integer";
    case field_kind::number: return "a number";
    case field_kind::boolean: return "true or false";
    case field_kind::text: return "text";
    }
    return "a value";
}

bool choice_allowed(std::string_view choices, std::string_view value) {
    while (!choices.empty()) {
        const std::size_t bar = choices.find('|');
        if (choices.substr(0, bar) == value) return true;
        if (bar == std::string_view::npos) break;
        choices.remove_prefix(bar + 1);
    }
    return false;
}

}  // namespace

std::span<const cell_field> cell_fields() { return table; }

const cell_field* find_field(std::string_view key) {
    for (const cell_field& f : table)
        if (f.key == key) return &f;
    return nullptr;
}

std::vector<std::string> field_keys() {
    std::vector<std::string> keys;
    for (const cell_field& f : table) keys.emplace_back(f.key);
    return keys;
}

std::string_view field_group(const cell_field& field) {
    const std::size_t dot = field.key.find('.');
    return dot == std::string_view::npos ? std::string_view{} : field.key.substr(0, dot);
}

std::string_view field_name(const cell_field& field) {
    const std::size_t dot = field.key.find('.');
    return dot == std::string_view::npos ? field.key : field.key.substr(dot + 1);
}

bool field_in_json(const cell_field& field, std::string_view framework) {
    switch (field.scope) {
    case field_scope::every_cell: return true;
    case field_scope::gptq: return framework == "gptq";
    case field_scope::bnb:
    case field_scope::bnb_4bit:
    case field_scope::bnb_8bit: return framework == "bnb";
    }
    return false;
}

bool field_applies(const cell_field& field, const std::optional<std::string>& framework,
                   const std::optional<std::int64_t>& bits) {
    const auto framework_is = [&](std::string_view f) { return !framework || *framework == f; };
    const auto bits_are = [&](std::int64_t b) { return !bits || *bits == b; };
    switch (field.scope) {
    case field_scope::every_cell: return true;
    case field_scope::gptq: return framework_is("gptq");
    case field_scope::bnb: return framework_is("bnb");
    case field_scope::bnb_4bit: return framework_is("bnb") && bits_are(4);
    case field_scope::bnb_8bit: return framework_is("bnb") && bits_are(8);
    }
    return false;
}

std::optional<field_value> parse_field_text(const cell_field& field, std::string_view text, bool plain,
                                            std::string& why) {
    if (field.has_auto && text == "auto") return field_value{field.auto_value};
    if (field.kind == field_kind::text) {
        // The file is checked to be UTF-8, but yaml-cpp 0.7 writes some escapes of double-quoted scalars ("\_",
        // "\N", "\L", "\P") as single bytes, so the unescaped text can still be invalid UTF-8 (found by fuzz_matrix).
        if (first_invalid_utf8(text)) {
            why = "text that is not UTF-8 after YAML unescaping (write the character itself, not a \\_ or \\N escape)";
            return std::nullopt;
        }
        return field_value{std::string(text)};
    }
    std::optional<field_value> value;
    // Quoted "4" is text in YAML; a number written in quotes is almost always a templating accident.
    if (plain) {
        switch (field.kind) {
        case field_kind::integer:
            if (const auto i = parse_integer_text(text)) value = *i;
            break;
        case field_kind::number:
            if (const auto d = parse_number_text(text)) value = *d;
            break;
        case field_kind::boolean:
            if (const auto b = parse_boolean_text(text)) value = *b;
            break;
        case field_kind::text: break;
        }
    }
    if (!value) why = "expected " + std::string(kind_noun(field.kind)) + (field.has_auto ? " or auto" : "");
    return value;
}

std::optional<field_value> parse_field_json(const cell_field& field, const nlohmann::json& value, std::string& why) {
    if (field.has_auto && value.is_string() && value.get_ref<const std::string&>() == "auto")
        return field_value{field.auto_value};
    switch (field.kind) {
    case field_kind::integer:
        if (value.is_number_integer()) {
            if (value.is_number_unsigned() &&
                value.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                break;
            return field_value{value.get<std::int64_t>()};
        }
        break;
    case field_kind::number:
        if (value.is_number()) {
            const double d = value.get<double>();
            if (std::isfinite(d)) return field_value{d};
        }
        break;
    case field_kind::boolean:
        if (value.is_boolean()) return field_value{value.get<bool>()};
        break;
    case field_kind::text:
        if (value.is_string()) return field_value{value.get<std::string>()};
        break;
    }
    why = "expected " + std::string(kind_noun(field.kind)) + (field.has_auto ? " or \"auto\"" : "") + ", got " +
          std::string(value.type_name());
    return std::nullopt;
}

std::string check_field_value(const cell_field& field, const field_value& value) {
    if (!field.choices.empty() && !choice_allowed(field.choices, as_text(value)))
        return "must be one of " + choices_list(field) + ", got '" + as_text(value) + "'";
    return field.check(value);
}

nlohmann::json field_to_json(const cell_field& field, const field_value& value) {
    // A deferred auto (image tokens before the model is known) is written as "auto", as the user wrote it.
    if (field.has_auto && field.auto_value < 0 && std::holds_alternative<std::int64_t>(value) &&
        as_int(value) == field.auto_value)
        return "auto";
    return std::visit([](const auto& v) { return nlohmann::json(v); }, value);
}

std::string field_to_string(const field_value& value) {
    if (const auto* s = std::get_if<std::string>(&value)) return *s;
    if (const auto* b = std::get_if<bool>(&value)) return *b ? "true" : "false";
    if (const auto* i = std::get_if<std::int64_t>(&value)) return std::to_string(*i);
    // Shortest round-trip form ("0.01", not "0.010000").
    return nlohmann::json(std::get<double>(value)).dump();
}

std::string choices_list(const cell_field& field) {
    std::string out;
    std::string_view rest = field.choices;
    while (!rest.empty()) {
        const std::size_t bar = rest.find('|');
        if (!out.empty()) out += ", ";
        out += rest.substr(0, bar);
        if (bar == std::string_view::npos) break;
        rest.remove_prefix(bar + 1);
    }
    return out;
}

}  // namespace qbench::config_detail
