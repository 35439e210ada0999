// Synthetic weights: names and shapes, the exact formulas, statistics, thread-count independence, and the cached
// checkpoint written by ensure_synthetic_checkpoint.
#include "io_test_util.hpp"

#include "qbench/common/half.hpp"
#include "qbench/io/hf_config.hpp"
#include "qbench/io/synthetic_checkpoint.hpp"
#include "qbench/io/synthetic_weights.hpp"
#include "qbench/io/tensor_source.hpp"

#include <cmath>
#include <set>
#include <thread>

using namespace qbench;
using namespace qbench::test;

namespace {

model_config tiny_model(std::int64_t vocab = 101, std::int64_t hidden = 64) {
    model_config m;
    m.name = "tiny-io-test";
    m.hidden_size = hidden;
    m.intermediate_size = 160;
    m.num_layers = 2;
    m.num_heads = 4;
    m.num_kv_heads = 2;
    m.vocab_size = vocab;
    m.max_position = 256;
    m.rms_norm_eps = 1e-5;
    return m;
}

struct moments {
    double mean = 0, std = 0;
};
moments moments_of(const std::vector<float>& v) {
    double s = 0, s2 = 0;
    for (float x : v) {
        s += x;
        s2 += static_cast<double>(x) * x;
    }
    const double n = static_cast<double>(v.size());
    return {s / n, std::sqrt(std::max(0.0, s2 / n - (s / n) * (s / n)))};
}

void check_same_sources(const tensor_source& a, const tensor_source& b) {
    REQUIRE(a.names() == b.names());
    CHECK(a.total_bytes() == b.total_bytes());
    for (const auto& n : a.names()) {
        INFO("tensor " << n);
        const auto x = a.read(n), y = b.read(n);
        CHECK(x.type == y.type);
        CHECK(x.shape == y.shape);
        CHECK(x.data == y.data);
    }
}

std::size_t count_entries(const std::filesystem::path& dir) {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
    return n;
}

}  // namespace

TEST_CASE("synthetic weights: roles of Hugging Face Llama names", "[cpu][io]") {
    using synthetic::role_of;
    using synthetic::tensor_role;
    CHECK(role_of("model.layers.0.self_attn.q_proj.weight") == tensor_role::linear);
    CHECK(role_of("model.layers.31.mlp.down_proj.weight") == tensor_role::linear);
    CHECK(role_of("lm_head.weight") == tensor_role::linear);
    CHECK(role_of("model.embed_tokens.weight") == tensor_role::embedding);
    CHECK(role_of("model.layers.3.input_layernorm.weight") == tensor_role::norm);
    CHECK(role_of("model.layers.3.post_attention_layernorm.weight") == tensor_role::norm);
    CHECK(role_of("model.norm.weight") == tensor_role::norm);
    CHECK(role_of("model.layers.0.self_attn.rotary_emb.inv_freq") == tensor_role::other);
    CHECK(role_of("model.layers.0.self_attn.q_proj.bias") == tensor_role::other);
}

TEST_CASE("synthetic weights: names, shapes and metadata", "[cpu][io]") {
    const model_config m = tiny_model(32001);
    const auto src = make_synthetic_source(m, 7);
    const auto names = src->names();
    CHECK(names.size() == 1 + 9 * 2 + 2);
    CHECK(std::is_sorted(names.begin(), names.end()));
    const auto shape = [&](const std::string& n) { return src->require(n).shape; };
    using v = std::vector<std::int64_t>;
    CHECK(shape("model.embed_tokens.weight") == v{32001, 64});
    CHECK(shape("lm_head.weight") == v{32001, 64});
    CHECK(shape("model.norm.weight") == v{64});
    CHECK(shape("model.layers.1.input_layernorm.weight") == v{64});
    CHECK(shape("model.layers.1.post_attention_layernorm.weight") == v{64});
    CHECK(shape("model.layers.0.self_attn.q_proj.weight") == v{64, 64});
    CHECK(shape("model.layers.0.self_attn.k_proj.weight") == v{32, 64});  // kv heads 2 x head_dim 16
    CHECK(shape("model.layers.0.self_attn.v_proj.weight") == v{32, 64});
    CHECK(shape("model.layers.0.self_attn.o_proj.weight") == v{64, 64});
    CHECK(shape("model.layers.1.mlp.gate_proj.weight") == v{160, 64});
    CHECK(shape("model.layers.1.mlp.up_proj.weight") == v{160, 64});
    CHECK(shape("model.layers.1.mlp.down_proj.weight") == v{64, 160});
    CHECK_FALSE(src->contains("model.layers.2.input_layernorm.weight"));
    for (const auto& n : names) CHECK(src->require(n).type == dtype::f16);
    CHECK(src->total_bytes() == static_cast<std::uint64_t>(m.total_params()) * 2);
    CHECK(src->metadata() == std::map<std::string, std::string>{
                                 {"format", "pt"}, {"qbench_synthetic", "1"}, {"model", "tiny-io-test"}, {"seed", "7"}});

    model_config bad = m;
    bad.num_heads = 5;
    CHECK_THROWS_AS(make_synthetic_source(bad, 7), error);
    bad = m;
    bad.num_kv_heads = 3;
    CHECK_THROWS_AS(make_synthetic_source(bad, 7), error);
}

TEST_CASE("synthetic weights: values are the documented formulas, bit for bit", "[cpu][io]") {
    const model_config m = tiny_model();
    const auto src = make_synthetic_source(m, 1234);
    using namespace synthetic;
    const auto okey = outlier_key(m.name, 1234);
    for (const auto& name : src->names()) {
        INFO("tensor " << name);
        const auto t = src->read(name);
        const auto bits = t.as<std::uint16_t>();
        const auto key = tensor_key(m.name, name, 1234);
        for (std::size_t i = 0; i < bits.size(); ++i) {
            float want = 0;
            switch (role_of(name)) {
            case tensor_role::linear: want = linear_value(key, i, inv_sqrt(t.shape[1])); break;
            case tensor_role::embedding: want = embedding_value(key, i); break;
            case tensor_role::norm: want = norm_value(key, okey, i); break;
            case tensor_role::other: FAIL("unexpected role"); break;
            }
            if (bits[i] != float_to_half(want)) {
                CHECK(bits[i] == float_to_half(want));
                break;
            }
        }
    }
}

TEST_CASE("synthetic weights: deterministic, and independent of the thread count", "[cpu][io]") {
    const model_config m = tiny_model(32001);  // embed is 2M elements: many threads' worth of ranges
    const std::string name = "model.embed_tokens.weight";
    const auto one = make_synthetic_source(m, 42, 1)->read(name);
    CHECK(make_synthetic_source(m, 42, 1)->read(name).data == one.data);
    for (unsigned threads : {2u, 3u, 7u, 0u}) {
        INFO("threads " << threads);
        CHECK(make_synthetic_source(m, 42, threads)->read(name).data == one.data);
    }
    CHECK(make_synthetic_source(m, 43, 3)->read(name).data != one.data);  // the seed matters
    model_config renamed = m;
    renamed.name = "other-model";
    CHECK(make_synthetic_source(renamed, 42, 3)->read(name).data != one.data);  // so does the model name
    // Tensors of one model differ from each other.
    const auto src = make_synthetic_source(m, 42);
    CHECK(src->read("model.layers.0.mlp.gate_proj.weight").data != src->read("model.layers.0.mlp.up_proj.weight").data);
}

TEST_CASE("synthetic weights: statistics close to the formulas", "[cpu][io]") {
    const model_config m = tiny_model(32001);
    const auto src = make_synthetic_source(m, 5);

    const auto embed = moments_of(to_float_vector(src->read("model.embed_tokens.weight")));
    CHECK(std::abs(embed.mean) < 0.01);
    CHECK(embed.std == Approx(synthetic::k_embed_std).epsilon(0.01));

    const auto lm = moments_of(to_float_vector(src->read("lm_head.weight")));
    CHECK(lm.std == Approx(1.0 / 8.0).epsilon(0.01));  // 1/sqrt(H = 64)

    const auto down = moments_of(to_float_vector(src->read("model.layers.0.mlp.down_proj.weight")));
    CHECK(down.std == Approx(1.0 / std::sqrt(160.0)).epsilon(0.05));  // 10240 elements
    CHECK(std::abs(down.mean) < 0.01);

    // Norm weights: about 1 +- 0.05 outside the outlier channels.
    std::vector<float> plain;
    for (const char* n : {"model.norm.weight", "model.layers.0.input_layernorm.weight",
                          "model.layers.1.post_attention_layernorm.weight"}) {
        for (float x : to_float_vector(src->read(n)))
            if (x < 2) plain.push_back(x);
    }
    const auto norm = moments_of(plain);
    CHECK(norm.mean == Approx(1.0).epsilon(0.02));
    CHECK(norm.std == Approx(synthetic::k_norm_jitter).epsilon(0.25));
}

TEST_CASE("synthetic weights: outlier channels in the norm weights, the same in every layer", "[cpu][io]") {
    const model_config m = tiny_model(101, 4096);  // a real hidden size: about 16 outlier channels expected
    const auto src = make_synthetic_source(m, 9);
    const auto okey = synthetic::outlier_key(m.name, 9);
    std::set<std::int64_t> expected;
    for (std::int64_t c = 0; c < m.hidden_size; ++c)
        if (synthetic::is_outlier_channel(okey, c)) expected.insert(c);
    CHECK(expected.size() >= 4);
    CHECK(expected.size() <= 40);
    for (const char* n : {"model.norm.weight", "model.layers.0.input_layernorm.weight",
                          "model.layers.1.post_attention_layernorm.weight"}) {
        INFO("tensor " << n);
        const auto v = to_float_vector(src->read(n));
        std::set<std::int64_t> found;
        for (std::size_t c = 0; c < v.size(); ++c) {
            if (v[c] > 4) {
                found.insert(static_cast<std::int64_t>(c));
                CHECK(v[c] >= synthetic::k_outlier_gain);
                CHECK(v[c] <= synthetic::k_outlier_gain * 1.25f);
            } else {
                CHECK(std::abs(v[c] - 1.0f) < 0.25f);  // Irwin-Hall tails end at 3.5 sigma
            }
        }
        CHECK(found == expected);
    }
}

TEST_CASE("synthetic checkpoint: written once, readable, equal to the on-demand source", "[cpu][io]") {
    scratch_dir cache;
    const model_config m = tiny_model(32001);
    const auto synthetic = make_synthetic_source(m, 3);

    SECTION("single file") {
        const auto dir = ensure_synthetic_checkpoint(m, 3, cache.path());
        CHECK(dir == cache / "tiny-io-test-seed3-v1");
        CHECK(std::filesystem::exists(dir / "model.safetensors"));
        CHECK(std::filesystem::exists(dir / "config.json"));
        CHECK(std::filesystem::exists(dir / std::string(k_synthetic_complete_marker)));
        CHECK_FALSE(std::filesystem::exists(dir / "model.safetensors.index.json"));
        const auto stamp = std::filesystem::last_write_time(dir / "model.safetensors");

        const auto disk = open_checkpoint(dir);
        check_same_sources(*disk, *synthetic);
        CHECK(disk->metadata() == synthetic->metadata());

        const auto cfg = read_hf_config(dir / "config.json");
        CHECK(cfg.name == m.name);
        CHECK(cfg.hidden_size == m.hidden_size);
        CHECK(cfg.num_kv_heads == m.num_kv_heads);
        CHECK(cfg.vocab_size == 32001);
        CHECK(cfg.rms_norm_eps == m.rms_norm_eps);

        // Idempotent: the second call reuses the files as they are.
        CHECK(ensure_synthetic_checkpoint(m, 3, cache.path()) == dir);
        CHECK(std::filesystem::last_write_time(dir / "model.safetensors") == stamp);
        // A changed non-shape field refreshes config.json only.
        model_config eps = m;
        eps.rms_norm_eps = 1e-6;
        CHECK(ensure_synthetic_checkpoint(eps, 3, cache.path()) == dir);
        CHECK(read_hf_config(dir).rms_norm_eps == 1e-6);
        CHECK(std::filesystem::last_write_time(dir / "model.safetensors") == stamp);

        // A different shape under the same name and seed is refused, not silently served.
        model_config wider = m;
        wider.intermediate_size = 192;
        const auto e = expect_input_error([&] { (void)ensure_synthetic_checkpoint(wider, 3, cache.path()); });
        CHECK_THAT(e.place(), Catch::Contains("intermediate_size"));
        CHECK_THAT(e.message(), Catch::Contains("delete"));

        // Only the entry and its lock file are left in the cache: no temporary directories.
        CHECK(count_entries(cache.path()) == 2);
    }
    SECTION("sharded") {
        const auto dir = ensure_synthetic_checkpoint(m, 3, cache.path(), 1'000'000);
        CHECK(std::filesystem::exists(dir / "model.safetensors.index.json"));
        // embed_tokens (4.1 MB), both layers and model.norm, lm_head (4.1 MB)
        CHECK(std::filesystem::exists(dir / "model-00001-of-00003.safetensors"));
        CHECK(std::filesystem::exists(dir / "model-00003-of-00003.safetensors"));
        const auto disk = open_checkpoint(dir);
        check_same_sources(*disk, *synthetic);
    }
    SECTION("two racing writers agree") {
        std::filesystem::path a, b;
        std::thread t1([&] { a = ensure_synthetic_checkpoint(m, 11, cache.path(), 3'000'000); });
        std::thread t2([&] { b = ensure_synthetic_checkpoint(m, 11, cache.path(), 3'000'000); });
        t1.join();
        t2.join();
        CHECK(a == b);
        check_same_sources(*open_checkpoint(a), *make_synthetic_source(m, 11));
        CHECK(count_entries(cache.path()) == 2);
    }
    SECTION("remains of a killed build are cleaned up") {
        const auto stale = cache / "tiny-io-test-seed5-v1.tmp-999999-1-0";
        std::filesystem::create_directories(stale);
        write_bytes(stale / "model.safetensors", std::vector<std::byte>(100));
        const auto dir = ensure_synthetic_checkpoint(m, 5, cache.path());
        CHECK_FALSE(std::filesystem::exists(stale));
        CHECK(count_entries(cache.path()) == 2);
        check_same_sources(*open_checkpoint(dir), *make_synthetic_source(m, 5));
    }
    SECTION("a foreign, incomplete directory is not touched") {
        std::filesystem::create_directories(cache / "tiny-io-test-seed4-v1");
        check_error(expect_input_error([&] { (void)ensure_synthetic_checkpoint(m, 4, cache.path()); }),
                    (cache / "tiny-io-test-seed4-v1").string(), "", "not a complete synthetic checkpoint");
    }
}
