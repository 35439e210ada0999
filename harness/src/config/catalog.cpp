#include "qbench/config/catalog.hpp"

#include "qbench/common/errors.hpp"
#include "qbench/engine/vision_tower.hpp"
#include "suggest.hpp"
#include "yaml_support.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <functional>
#include <set>

namespace qbench {
namespace cd = config_detail;

namespace {

constexpr std::uint64_t k_mib = std::uint64_t{1} << 20;
constexpr std::uint64_t k_gib = std::uint64_t{1} << 30;

// A reader of one key of a catalog entry.
template <typename T>
struct entry_key {
    std::string_view key;
    bool required;
    std::function<void(const std::string& file, const cd::yaml_entry&, T&)> read;
};

bool valid_name(std::string_view name) {
    if (name.empty() || name.size() > 128) return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
}

// The single `name: {fields}` entry of a catalog file, its fields read by `keys`. `expected_name` (the file stem)
// is checked when given.
template <typename T>
T parse_entry(std::string_view text, const std::string& file, std::string_view kind,
              const std::vector<entry_key<T>>& keys, const std::string* expected_name, cd::yaml_entry& entry_out) {
    const YAML::Node doc = cd::parse_yaml_document(text, file);
    const std::vector<cd::yaml_entry> top = cd::map_entries(file, doc, YAML::Mark(), "");
    if (top.size() != 1)
        throw input_error(file, "", "a " + std::string(kind) + " file holds exactly one entry ('NAME: {...}'), found " +
                                        std::to_string(top.size()));
    const cd::yaml_entry& entry = top.front();
    if (!valid_name(entry.key))
        cd::throw_at(file, entry.key_node.Mark(), entry.key,
                     "a " + std::string(kind) + " name uses letters, digits, '-', '_' and '.' only");
    if (expected_name && entry.key != *expected_name)
        cd::throw_at(file, entry.key_node.Mark(), entry.key,
                     std::string(kind) + " '" + entry.key + "' must live in a file named '" + entry.key + ".yaml'");
    T value{};
    value.name = entry.key;
    std::set<std::string_view> seen;
    std::vector<std::string> known;
    for (const entry_key<T>& k : keys) known.emplace_back(k.key);
    for (const cd::yaml_entry& field : cd::map_entries(file, entry.value, entry.key_node.Mark(), entry.key)) {
        const auto it = std::find_if(keys.begin(), keys.end(), [&](const entry_key<T>& k) { return k.key == field.key; });
        if (it == keys.end()) cd::throw_unknown_key(file, field, std::string(kind) + " '" + entry.key + "'", known);
        it->read(file, field, value);
        seen.insert(it->key);
    }
    for (const entry_key<T>& k : keys)
        if (k.required && !seen.count(k.key))
            cd::throw_at(file, entry.key_node.Mark(), entry.key + "." + std::string(k.key),
                         "missing key '" + std::string(k.key) + "' in " + std::string(kind) + " '" + entry.key + "'");
    entry_out = entry;
    return value;
}

const std::vector<entry_key<model_config>>& model_keys() {
    using e = cd::yaml_entry;
    using m = model_config;
    static const std::vector<entry_key<model_config>> keys = {
        {"hf_name", false, [](const std::string& f, const e& x, m& v) { v.hf_name = cd::read_text(f, x); }},
        {"hidden_size", true, [](const std::string& f, const e& x, m& v) { v.hidden_size = cd::read_integer(f, x, 1, 1 << 16); }},
        {"intermediate_size", true,
         [](const std::string& f, const e& x, m& v) { v.intermediate_size = cd::read_integer(f, x, 1, 1 << 18); }},
        {"num_layers", true, [](const std::string& f, const e& x, m& v) { v.num_layers = cd::read_integer(f, x, 1, 1024); }},
        {"num_heads", true, [](const std::string& f, const e& x, m& v) { v.num_heads = cd::read_integer(f, x, 1, 1024); }},
        {"num_kv_heads", false, [](const std::string& f, const e& x, m& v) { v.num_kv_heads = cd::read_integer(f, x, 1, 1024); }},
        {"vocab_size", true, [](const std::string& f, const e& x, m& v) { v.vocab_size = cd::read_integer(f, x, 2, 1 << 21); }},
        {"max_position", false,
         [](const std::string& f, const e& x, m& v) { v.max_position = cd::read_integer(f, x, 1, 1 << 24); }},
        {"rms_norm_eps", false, [](const std::string& f, const e& x, m& v) { v.rms_norm_eps = cd::read_number(f, x, 1e-12, 1.0); }},
        {"rope_theta", false, [](const std::string& f, const e& x, m& v) { v.rope_theta = cd::read_number(f, x, 1.0, 1e9); }},
        {"bos_token_id", false, [](const std::string& f, const e& x, m& v) {
             v.bos_token_id = static_cast<std::int32_t>(cd::read_integer(f, x, 0, 1 << 21)); }},
        {"eos_token_id", false, [](const std::string& f, const e& x, m& v) {
             v.eos_token_id = static_cast<std::int32_t>(cd::read_integer(f, x, 0, 1 << 21)); }},
        {"minigpt4_image_tokens", false,
         [](const std::string& f, const e& x, m& v) { v.minigpt4_image_tokens = cd::read_integer(f, x, 0, 4096); }},
        {"vision_tower", false, [](const std::string& f, const e& x, m& v) {
             v.vision_tower = cd::read_text(f, x);
             if (!find_vision_tower(v.vision_tower)) {
                 std::string known;
                 for (const auto& n : vision_tower_names()) known += (known.empty() ? "" : ", ") + n;
                 cd::throw_at(f, x.value_mark(), x.path, "unknown vision tower '" + v.vision_tower + "' (known: " + known + ")");
             }
         }},
    };
    return keys;
}

const std::vector<entry_key<instance_profile>>& instance_keys() {
    using e = cd::yaml_entry;
    using p = instance_profile;
    static const std::vector<entry_key<instance_profile>> keys = {
        {"gpu_name", true, [](const std::string& f, const e& x, p& v) { v.gpu_name = cd::read_text(f, x); }},
        {"gpu_count", true, [](const std::string& f, const e& x, p& v) { v.gpu_count = cd::read_integer(f, x, 1, 64); }},
        {"compute_capability", true, [](const std::string& f, const e& x, p& v) {
             // "7.5": read as text so 8.9 does not become 8.900000001 and 9.0 keeps its minor digit.
             const std::string text = cd::read_text(f, x);
             const bool ok = text.size() == 3 && std::isdigit(static_cast<unsigned char>(text[0])) && text[1] == '.' &&
                             std::isdigit(static_cast<unsigned char>(text[2]));
             if (!ok) cd::throw_at(f, x.value_mark(), x.path, "expected MAJOR.MINOR such as \"8.6\", got " + cd::describe_node(x.value));
             v.compute_capability = (text[0] - '0') * 10 + (text[2] - '0');
         }},
        {"vram_usable_mib", true, [](const std::string& f, const e& x, p& v) {
             v.vram_usable_bytes = static_cast<std::uint64_t>(cd::read_integer(f, x, 1, std::int64_t{1} << 22)) * k_mib; }},
        {"host_ram_gib", true, [](const std::string& f, const e& x, p& v) {
             v.host_ram_bytes = static_cast<std::uint64_t>(cd::read_integer(f, x, 1, std::int64_t{1} << 16)) * k_gib; }},
        {"gpu_bandwidth_gbs", true,
         [](const std::string& f, const e& x, p& v) { v.gpu_bandwidth_gbs = cd::read_number(f, x, 1.0, 1e6); }},
        {"fp16_tflops", false, [](const std::string& f, const e& x, p& v) { v.fp16_tflops = cd::read_number(f, x, 0.0, 1e6); }},
        {"disk_baseline_mbs", false,
         [](const std::string& f, const e& x, p& v) { v.disk_baseline_mbs = cd::read_number(f, x, 0.0, 1e7); }},
        {"disk_burst_mbs", false,
         [](const std::string& f, const e& x, p& v) { v.disk_burst_mbs = cd::read_number(f, x, 0.0, 1e7); }},
        {"vcpus", false, [](const std::string& f, const e& x, p& v) { v.vcpus = cd::read_integer(f, x, 1, 4096); }},
        {"price_usd_per_hour", false,
         [](const std::string& f, const e& x, p& v) { v.price_usd_per_hour = cd::read_number(f, x, 0.0, 1e5); }},
        {"price_date", false, [](const std::string& f, const e& x, p& v) { v.price_date = cd::read_text(f, x); }},
        {"source", true, [](const std::string& f, const e& x, p& v) { v.source = cd::read_text(f, x); }},
    };
    return keys;
}

model_config parse_model(std::string_view text, const std::string& file, const std::string* expected_name) {
    cd::yaml_entry entry;
    model_config m = parse_entry(text, file, "model", model_keys(), expected_name, entry);
    const YAML::Node shape = entry.value;
    const auto fail = [&](std::string_view key, const std::string& message) {
        const YAML::Node node = shape[std::string(key)];
        cd::throw_at(file, cd::mark_or(node, entry.key_node.Mark()), entry.key + "." + std::string(key), message);
    };
    // Grouped-query attention shares each K/V head among num_heads / num_kv_heads query heads; absent means MHA.
    if (m.num_kv_heads == 0) m.num_kv_heads = m.num_heads;
    if (m.hidden_size % m.num_heads != 0)
        fail("num_heads", "hidden_size " + std::to_string(m.hidden_size) + " is not a multiple of num_heads " +
                              std::to_string(m.num_heads));
    if (m.head_dim() % 2 != 0)
        fail("num_heads", "head_dim " + std::to_string(m.head_dim()) + " must be even (rotary embeddings rotate pairs)");
    if (m.num_kv_heads > m.num_heads || m.num_heads % m.num_kv_heads != 0)
        fail("num_kv_heads", "num_heads " + std::to_string(m.num_heads) + " must be a multiple of num_kv_heads " +
                                 std::to_string(m.num_kv_heads));
    if (m.bos_token_id >= m.vocab_size) fail("bos_token_id", "must be below vocab_size " + std::to_string(m.vocab_size));
    if (m.eos_token_id >= m.vocab_size) fail("eos_token_id", "must be below vocab_size " + std::to_string(m.vocab_size));
    return m;
}

instance_profile parse_instance(std::string_view text, const std::string& file, const std::string* expected_name) {
    cd::yaml_entry entry;
    instance_profile p = parse_entry(text, file, "instance", instance_keys(), expected_name, entry);
    if (p.name == k_local_instance_name)
        cd::throw_at(file, entry.key_node.Mark(), p.name, "'local' is built in (no budgets) and cannot be redefined");
    const YAML::Node fields = entry.value;
    // Instances that do not burst state one EBS figure: the burst rate is the baseline.
    if (!fields["disk_burst_mbs"]) p.disk_burst_mbs = p.disk_baseline_mbs;
    if (p.disk_burst_mbs < p.disk_baseline_mbs)
        cd::throw_at(file, cd::mark_or(fields["disk_burst_mbs"], entry.key_node.Mark()), p.name + ".disk_burst_mbs",
                     "burst throughput below the baseline");
    return p;
}

// The *.yaml files of a catalog directory in name order (directory order differs between file systems).
std::vector<std::filesystem::path> yaml_files(const std::filesystem::path& dir) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) throw input_error(dir.string(), "", "catalog directory not found");
    std::vector<std::filesystem::path> files;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
        if (it->path().extension() == ".yaml") files.push_back(it->path());
    if (ec) throw input_error(dir.string(), "", "cannot list directory: " + ec.message());
    std::sort(files.begin(), files.end());
    return files;
}

template <typename T>
std::vector<std::string> names_of(const std::map<std::string, T>& map) {
    std::vector<std::string> names;
    for (const auto& [name, value] : map) names.push_back(name);
    return names;
}

}  // namespace

instance_profile local_instance() {
    instance_profile p;
    p.name = std::string(k_local_instance_name);
    p.gpu_name = "the local GPU";
    p.source = "built in: the machine qbench runs on, without emulated budgets";
    return p;
}

const model_config* catalog::find_model(std::string_view name) const {
    const auto it = models.find(std::string(name));
    return it == models.end() ? nullptr : &it->second;
}

const instance_profile* catalog::find_instance(std::string_view name) const {
    const auto it = instances.find(std::string(name));
    return it == instances.end() ? nullptr : &it->second;
}

std::vector<std::string> catalog::model_names() const { return names_of(models); }
std::vector<std::string> catalog::instance_names() const { return names_of(instances); }

model_config parse_model_yaml(std::string_view yaml_text, const std::string& file_name) {
    return parse_model(yaml_text, file_name, nullptr);
}

instance_profile parse_instance_yaml(std::string_view yaml_text, const std::string& file_name) {
    return parse_instance(yaml_text, file_name, nullptr);
}

catalog load_catalog(const std::filesystem::path& configs_dir) {
    catalog c;
    for (const std::filesystem::path& file : yaml_files(configs_dir / "models")) {
        const std::string stem = file.stem().string();
        model_config m = parse_model(cd::read_config_file(file), file.string(), &stem);
        c.models.emplace(m.name, std::move(m));
    }
    for (const std::filesystem::path& file : yaml_files(configs_dir / "instances")) {
        const std::string stem = file.stem().string();
        instance_profile p = parse_instance(cd::read_config_file(file), file.string(), &stem);
        c.instances.emplace(p.name, std::move(p));
    }
    c.instances.emplace(std::string(k_local_instance_name), local_instance());
    return c;
}

std::filesystem::path default_configs_dir() {
    if (const char* dir = std::getenv("QBENCH_CONFIG_DIR"); dir && *dir) return dir;
#ifdef QBENCH_SOURCE_DIR
    return std::filesystem::path(QBENCH_SOURCE_DIR) / "configs";
#else
    return "configs";
#endif
}

}  // namespace qbench
