// Model and instance catalogs: the shipped data is what the references say, and bad catalog files are reported
// with file:line:column and key.
#include "qbench/common/errors.hpp"
#include "qbench/config/catalog.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>

#include <unistd.h>

using Catch::Matchers::Contains;

namespace {

const qbench::catalog& shipped() {
    static const qbench::catalog c = qbench::load_catalog(std::filesystem::path(QBENCH_SOURCE_DIR) / "configs");
    return c;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const qbench::input_error& e) {
        return e.what();
    }
    return "(no input_error)";
}

constexpr std::uint64_t k_mib = 1ull << 20;
constexpr std::uint64_t k_gib = 1ull << 30;

const char* const good_model = R"(m:
  hidden_size: 256
  intermediate_size: 688
  num_layers: 2
  num_heads: 8
  num_kv_heads: 4
  vocab_size: 512
)";

const char* const good_instance = R"(i:
  gpu_name: NVIDIA A10G
  gpu_count: 1
  compute_capability: "8.6"
  vram_usable_mib: 23028
  host_ram_gib: 32
  gpu_bandwidth_gbs: 600
  source: test
)";

// A scratch configs directory under the system temp dir, removed afterwards.
struct scratch_dir {
    std::filesystem::path path;
    explicit scratch_dir(const std::string& name) : path(std::filesystem::temp_directory_path() / name) {
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path / "models");
        std::filesystem::create_directories(path / "instances");
    }
    ~scratch_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    void write(const std::string& relative, const std::string& text) const { std::ofstream(path / relative) << text; }
};

}  // namespace

TEST_CASE("catalog: shipped model shapes match the references", "[cpu][config][catalog][data]") {
    const auto& c = shipped();
    for (const char* name : {"tiny", "vicuna-7b-v0", "vicuna-13b-v0", "llama-2-7b-chat", "llama-2-13b", "llama-3-8b"})
        CHECK(c.find_model(name) != nullptr);

    const qbench::model_config& tiny = *c.find_model("tiny");
    CHECK(tiny.hidden_size == 256);
    CHECK(tiny.intermediate_size == 688);
    CHECK(tiny.num_layers == 2);
    CHECK(tiny.num_heads == 8);
    CHECK(tiny.num_kv_heads == 4);
    CHECK(tiny.vocab_size == 512);
    CHECK(tiny.max_position == 512);
    CHECK(tiny.rms_norm_eps == 1e-5);
    CHECK(tiny.minigpt4_image_tokens == 8);

    // Parameter counts of models-and-instances.md section 1.3 check every shape field at once.
    const qbench::model_config& v7 = *c.find_model("vicuna-7b-v0");
    CHECK(v7.vocab_size == 32001);
    CHECK(v7.total_params() == 6738423808);
    CHECK(v7.minigpt4_image_tokens == 32);
    CHECK(v7.rms_norm_eps == 1e-6);
    CHECK(c.find_model("vicuna-13b-v0")->total_params() == 13015874560);
    CHECK(c.find_model("vicuna-13b-v0")->kv_bytes_per_token() == 800 * 1024);
    const qbench::model_config& l2 = *c.find_model("llama-2-7b-chat");
    CHECK(l2.total_params() == 6738415616);
    CHECK(l2.minigpt4_image_tokens == 64);
    CHECK(l2.max_position == 4096);
    const qbench::model_config& l3 = *c.find_model("llama-3-8b");
    CHECK(l3.num_kv_heads == 8);
    CHECK(l3.total_params() == 8030261248);
    CHECK(l3.kv_bytes_per_token() == 128 * 1024);
    CHECK(l3.rope_theta == 500000.0);
    CHECK(l3.eos_token_id == 128009);
    CHECK(c.find_model("llama-2-70b")->total_params() == 68976648192);
}

TEST_CASE("catalog: shipped instances carry the usable VRAM nvidia-smi reports", "[cpu][config][catalog][data]") {
    const auto& c = shipped();
    const qbench::instance_profile& t4 = *c.find_instance("g4dn.2xlarge");
    CHECK(t4.gpu_name == "Tesla T4");
    CHECK(t4.vram_usable_bytes == 15360 * k_mib);
    CHECK(t4.host_ram_bytes == 32 * k_gib);
    CHECK(t4.compute_capability == 75);
    CHECK(t4.gpu_bandwidth_gbs == 320);
    CHECK(t4.disk_baseline_mbs == 143.75);
    CHECK(t4.disk_burst_mbs == 437.5);
    const qbench::instance_profile& g52 = *c.find_instance("g5.2xlarge");
    CHECK(g52.vram_usable_bytes == 23028 * k_mib);
    CHECK(g52.host_ram_bytes == 32 * k_gib);
    CHECK(g52.compute_capability == 86);
    CHECK(g52.disk_baseline_mbs == 106.25);
    const qbench::instance_profile& g54 = *c.find_instance("g5.4xlarge");
    CHECK(g54.vram_usable_bytes == 23028 * k_mib);
    CHECK(g54.host_ram_bytes == 64 * k_gib);
    CHECK(g54.disk_burst_mbs == g54.disk_baseline_mbs);  // no burst: one figure
    CHECK(c.find_instance("g6.xlarge")->vram_usable_bytes == 23034 * k_mib);
    for (const auto& [name, p] : c.instances) {
        INFO(name);
        if (name == "local") continue;
        CHECK(p.has_budgets());
        CHECK(p.gpu_count >= 1);
        CHECK(p.gpu_bandwidth_gbs > 0);
        CHECK_FALSE(p.source.empty());
        CHECK_FALSE(p.price_date.empty());
    }
    CHECK(c.instances.size() >= 10);
    const qbench::instance_profile* local = c.find_instance("local");
    REQUIRE(local != nullptr);
    CHECK_FALSE(local->has_budgets());
    CHECK(c.find_instance("g5.2xl") == nullptr);
}

TEST_CASE("catalog: catalog files are read strictly", "[cpu][config][catalog][errors]") {
    CHECK(qbench::parse_model_yaml(good_model, "m.yaml").num_kv_heads == 4);
    CHECK(qbench::parse_model_yaml("m:\n  hidden_size: 64\n  intermediate_size: 128\n  num_layers: 1\n"
                                   "  num_heads: 4\n  vocab_size: 16\n", "m.yaml")
              .num_kv_heads == 4);  // absent: MHA
    CHECK(qbench::parse_instance_yaml(good_instance, "i.yaml").compute_capability == 86);

    const auto model_error = [](const std::string& text) {
        return error_of([&] { qbench::parse_model_yaml(text, "m.yaml"); });
    };
    CHECK_THAT(model_error(std::string(good_model) + "  hiden_size: 4\n"),
               Contains("m.yaml:8:3 (key 'm.hiden_size'): unknown key 'hiden_size' in model 'm'") &&
                   Contains("did you mean 'hidden_size'?"));
    CHECK_THAT(model_error("m:\n  hidden_size: 256\n"),
               Contains("m.yaml:1:1 (key 'm.intermediate_size'): missing key 'intermediate_size'"));
    CHECK_THAT(model_error("m:\n  hidden_size: 2.5e2\n"),
               Contains("m.yaml:2:16 (key 'm.hidden_size'): expected an integer, got '2.5e2'"));
    CHECK_THAT(model_error(std::string(good_model) + "  rms_norm_eps: 0\n"),
               Contains("(key 'm.rms_norm_eps'): value 0 out of range"));
    CHECK_THAT(model_error("m:\n  hidden_size: 250\n  intermediate_size: 688\n  num_layers: 2\n  num_heads: 8\n"
                           "  vocab_size: 512\n"),
               Contains("m.yaml:5:14 (key 'm.num_heads'): hidden_size 250 is not a multiple of num_heads 8"));
    CHECK_THAT(model_error(std::string(good_model).replace(std::string(good_model).find("kv_heads: 4"), 11, "kv_heads: 3")),
               Contains("(key 'm.num_kv_heads'): num_heads 8 must be a multiple of num_kv_heads 3"));
    CHECK_THAT(model_error(std::string(good_model) + "  eos_token_id: 512\n"),
               Contains("(key 'm.eos_token_id'): must be below vocab_size 512"));
    CHECK_THAT(model_error(std::string(good_model) + "n:\n  hidden_size: 1\n"),
               Contains("m.yaml: a model file holds exactly one entry") && Contains("found 2"));
    CHECK_THAT(model_error("bad name:\n  hidden_size: 1\n"), Contains("(key 'bad name'): a model name uses letters"));
    CHECK_THAT(model_error("m: [1\n"), Contains("m.yaml:") && Contains("YAML syntax error"));

    const auto instance_error = [](const std::string& text) {
        return error_of([&] { qbench::parse_instance_yaml(text, "i.yaml"); });
    };
    CHECK_THAT(instance_error(std::string(good_instance) + "  vram_mib: 1\n"),
               Contains("i.yaml:9:3 (key 'i.vram_mib')") && Contains("did you mean 'vram_usable_mib'?"));
    std::string bad_cc = good_instance;
    bad_cc.replace(bad_cc.find("\"8.6\""), 5, "86");
    CHECK_THAT(instance_error(bad_cc),
               Contains("i.yaml:4:23 (key 'i.compute_capability'): expected MAJOR.MINOR such as \"8.6\", got '86'"));
    std::string local = good_instance;
    local.replace(0, 1, "local");
    CHECK_THAT(instance_error(local), Contains("i.yaml:1:1 (key 'local'): 'local' is built in"));
    CHECK_THAT(instance_error(std::string(good_instance) + "  disk_baseline_mbs: 500\n  disk_burst_mbs: 100\n"),
               Contains("i.yaml:10:19 (key 'i.disk_burst_mbs'): burst throughput below the baseline"));
    CHECK_THAT(instance_error("i:\n  gpu_name: x\n"), Contains("missing key 'gpu_count'"));
}

TEST_CASE("catalog: load_catalog reads a directory and checks file names", "[cpu][config][catalog]") {
    const scratch_dir dir("qbench-test-catalog-" + std::to_string(::getpid()));
    dir.write("models/m.yaml", good_model);
    dir.write("models/notes.txt", "not a catalog file");
    dir.write("instances/i.yaml", good_instance);
    const qbench::catalog c = qbench::load_catalog(dir.path);
    CHECK(c.model_names() == std::vector<std::string>{"m"});
    CHECK(c.instance_names() == std::vector<std::string>{"i", "local"});

    dir.write("models/other.yaml", std::string(good_model).replace(0, 1, "o"));
    CHECK_THAT(error_of([&] { qbench::load_catalog(dir.path); }),
               Contains("other.yaml:1:1 (key 'o'): model 'o' must live in a file named 'o.yaml'"));
    std::filesystem::remove(dir.path / "models" / "other.yaml");

    std::filesystem::remove_all(dir.path / "instances");
    CHECK_THAT(error_of([&] { qbench::load_catalog(dir.path); }), Contains("instances: catalog directory not found"));
}

TEST_CASE("catalog: default_configs_dir honours QBENCH_CONFIG_DIR", "[cpu][config][catalog]") {
    const char* before = std::getenv("QBENCH_CONFIG_DIR");
    const std::string saved = before ? before : "";
    ::setenv("QBENCH_CONFIG_DIR", "/some/where", 1);
    CHECK(qbench::default_configs_dir() == std::filesystem::path("/some/where"));
    ::unsetenv("QBENCH_CONFIG_DIR");
    CHECK(qbench::default_configs_dir() == std::filesystem::path(QBENCH_SOURCE_DIR) / "configs");
    if (before) ::setenv("QBENCH_CONFIG_DIR", saved.c_str(), 1);
}
