// GPTQ artifacts: a file written by the AutoGPTQ spec (by hand, here) loads; a tiny model quantized on the CPU
// becomes an AutoGPTQ checkpoint whose linears load as cpu_linears computing x·W_deq^T; the cache; the backend's
// support rules; a host budget turns into out_of_memory(host).
#include "backends/gptq/gptq_artifact.hpp"
#include "backends/gptq/gptq_backend.hpp"
#include "backends/gptq/gptq_cpu_dot.hpp"
#include "backends/gptq/gptq_format.hpp"
#include "backends/gptq/gptq_linear.hpp"
#include "backends/gptq/gptq_quantize.hpp"

#include "qbench/common/counter_rng.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/common/half.hpp"
#include "qbench/common/host_memory.hpp"
#include "qbench/io/safetensors_writer.hpp"
#include "qbench/io/synthetic_checkpoint.hpp"
#include "qbench/io/tensor_source.hpp"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

using namespace qbench;
using namespace qbench::gptq;
namespace fs = std::filesystem;

namespace {
std::size_t sz(std::int64_t v) { return static_cast<std::size_t>(v); }

fs::path temp_dir(const std::string& name) {
    const fs::path p = fs::temp_directory_path() / ("qbench-gptq-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(p);
    fs::create_directories(p);
    return p;
}

template <class T>
host_tensor tensor_of(dtype type, std::vector<std::int64_t> shape, const std::vector<T>& v) {
    host_tensor t;
    t.type = type;
    t.shape = std::move(shape);
    t.data.resize(v.size() * sizeof(T));
    std::memcpy(t.data.data(), v.data(), t.data.size());
    return t;
}

model_config tiny_model() {
    model_config m;
    m.name = "tiny-gptq-test";
    m.hf_name = "qbench/tiny-gptq-test";
    m.hidden_size = 64;
    m.intermediate_size = 176;  // not a multiple of 32: exercises the padded runs
    m.num_layers = 2;
    m.num_heads = 4;
    m.num_kv_heads = 2;
    m.vocab_size = 128;
    m.max_position = 64;
    m.rms_norm_eps = 1e-5;
    return m;
}

/// y = x · W^T as the GPTQ cpu_linear defines it (float, gptq_cpu_dot.hpp's fixed partial sums), rounded to fp16;
/// checked within one fp16 step of the double-precision product, so the definition itself is tested too.
std::vector<float> reference_forward(const std::vector<float>& w, std::int64_t N, std::int64_t K,
                                     const std::vector<float>& x, std::int64_t rows) {
    std::vector<float> y(sz(rows * N));
    for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t n = 0; n < N; ++n) {
            double s = 0;
            for (std::int64_t k = 0; k < K; ++k) s += static_cast<double>(x[sz(r * K + k)]) * w[sz(n * K + k)];
            const float f = round_to_half(dot_f32(&x[sz(r * K)], &w[sz(n * K)], K));
            REQUIRE(std::abs(f - s) <= std::abs(s) * 1e-3 + 1e-6);
            y[sz(r * N + n)] = f;
        }
    return y;
}
}  // namespace

TEST_CASE("an AutoGPTQ file written by the spec loads and computes x W^T", "[gptq][artifact]") {
    const fs::path dir = temp_dir("spec");
    const std::int64_t K = 64, N = 32, gs = 32, G = 2;
    const auto key = stream_key(5, hash_string("spec-file"));
    for (std::int64_t bits : {2, 3, 4, 8}) {
        const std::uint32_t maxq = (1u << bits) - 1;
        // The layer by value: intweight[k][n], zeros[g][n], scales[g][n].
        std::vector<std::uint32_t> iw(sz(K * N)), z(sz(G * N));
        std::vector<std::uint16_t> scales(sz(G * N));
        std::uint64_t c = 0;
        for (auto& v : iw) v = static_cast<std::uint32_t>(random_bits(key, c++) & maxq);
        for (auto& v : z) v = static_cast<std::uint32_t>(random_bits(key, c++) & maxq);
        for (auto& v : scales) v = float_to_half(0.01f + 0.02f * uniform01(key, c++));
        // AutoGPTQ's pack, transcribed loop by loop (qlinear_cuda_old.py): qweight along K, qzeros along N.
        std::vector<std::uint32_t> qweight(sz(K / 32 * bits * N), 0), qzeros(sz(G * (N / 32 * bits)), 0);
        for (std::int64_t n = 0; n < N; ++n) {
            std::int64_t i = 0, row = 0;
            while (row < K / 32 * bits) {
                if (bits == 2 || bits == 4 || bits == 8) {
                    for (std::int64_t j = i; j < i + 32 / bits; ++j)
                        qweight[sz(row * N + n)] |= iw[sz(j * N + n)] << (bits * (j - i));
                    i += 32 / bits;
                    row += 1;
                } else {
                    auto at = [&](std::int64_t r) -> std::uint32_t& { return qweight[sz(r * N + n)]; };
                    for (std::int64_t j = i; j < i + 10; ++j) at(row) |= iw[sz(j * N + n)] << (3 * (j - i));
                    i += 10;
                    at(row) |= iw[sz(i * N + n)] << 30;
                    row += 1;
                    at(row) |= (iw[sz(i * N + n)] >> 2) & 1u;
                    i += 1;
                    for (std::int64_t j = i; j < i + 10; ++j) at(row) |= iw[sz(j * N + n)] << (3 * (j - i) + 1);
                    i += 10;
                    at(row) |= iw[sz(i * N + n)] << 31;
                    row += 1;
                    at(row) |= (iw[sz(i * N + n)] >> 1) & 3u;
                    i += 1;
                    for (std::int64_t j = i; j < i + 10; ++j) at(row) |= iw[sz(j * N + n)] << (3 * (j - i) + 2);
                    i += 10;
                    row += 1;
                }
            }
        }
        for (std::int64_t g = 0; g < G; ++g)
            for (std::int64_t n0 = 0; n0 < N; n0 += 32)  // one run of 32 columns = `bits` words (stream rule)
                for (std::int64_t v = 0; v < 32; ++v) {
                    const std::uint64_t stored = (z[sz(g * N + n0 + v)] - 1u) & maxq;  // zeros -= 1
                    const std::int64_t bit = bits * v;
                    const std::int64_t col = g * (N / 32 * bits) + n0 / 32 * bits + bit / 32;
                    const std::uint64_t shifted = stored << (bit % 32);
                    qzeros[sz(col)] |= static_cast<std::uint32_t>(shifted);
                    if (bit % 32 + bits > 32) qzeros[sz(col + 1)] |= static_cast<std::uint32_t>(shifted >> 32);
                }
        std::vector<std::int32_t> g_idx(sz(K));
        for (std::int64_t k = 0; k < K; ++k) g_idx[sz(k)] = static_cast<std::int32_t>(k / gs);

        const std::string prefix = "model.layers.0.self_attn.q_proj";
        std::map<std::string, host_tensor> tensors;
        tensors[prefix + ".qweight"] = tensor_of(dtype::i32, {K / 32 * bits, N}, qweight);
        tensors[prefix + ".qzeros"] = tensor_of(dtype::i32, {G, N / 32 * bits}, qzeros);
        tensors[prefix + ".scales"] = tensor_of(dtype::f16, {G, N}, scales);
        tensors[prefix + ".g_idx"] = tensor_of(dtype::i32, {K}, g_idx);
        const fs::path file = dir / ("spec-" + std::to_string(bits) + ".safetensors");
        write_safetensors(file, tensors, {{"format", "pt"}});

        const auto src = open_checkpoint(file);
        const packed_linear p = read_packed_linear(*src, prefix, K, N);
        CHECK(p.bits == bits);
        CHECK(p.group_size == gs);
        const quantized_linear q = unpack(p);
        std::vector<float> w(sz(N * K));
        for (std::int64_t n = 0; n < N; ++n)
            for (std::int64_t k = 0; k < K; ++k) {
                const std::int64_t g = k / gs;
                w[sz(n * K + k)] = half_to_float(scales[sz(g * N + n)]) *
                                   (static_cast<float>(iw[sz(k * N + n)]) - static_cast<float>(z[sz(g * N + n)]));
                CHECK(q.codes[sz(n * K + k)] == iw[sz(k * N + n)]);
            }
        CHECK(q.dequantize() == w);

        cell_spec cell;
        cell.framework = "gptq";
        cell.bits = bits;
        const linear_request req{*src, prefix, linear_kind::q_proj, K, N, cell};
        const auto lin = make_gptq_backend()->load_cpu_linear(req);
        CHECK(lin->format_name() == "gptq-int" + std::to_string(bits) + "-g32");
        std::vector<float> x(sz(3 * K));
        for (std::size_t i = 0; i < x.size(); ++i) x[i] = round_to_half(normal01(key, 100000 + i));
        std::vector<float> y(sz(3 * N));
        lin->forward(x.data(), 3, y.data());
        CHECK(y == reference_forward(w, N, K, x, 3));

        cell.bits = bits == 4 ? 8 : 4;  // a cell asking for other bits than the file holds
        const linear_request wrong{*src, prefix, linear_kind::q_proj, K, N, cell};
        CHECK_THROWS_AS(make_gptq_backend()->load_cpu_linear(wrong), input_error);
    }
    fs::remove_all(dir);
}

TEST_CASE("malformed AutoGPTQ tensors are input errors naming the tensor", "[gptq][artifact]") {
    const fs::path dir = temp_dir("bad");
    const std::string prefix = "model.layers.0.mlp.up_proj";
    std::map<std::string, host_tensor> t;
    t[prefix + ".qweight"] = tensor_of(dtype::i32, {5, 32}, std::vector<std::int32_t>(5 * 32, 0));  // 5 rows: no width
    t[prefix + ".qzeros"] = tensor_of(dtype::i32, {1, 4}, std::vector<std::int32_t>(4, 0));
    t[prefix + ".scales"] = tensor_of(dtype::f16, {1, 32}, std::vector<std::uint16_t>(32, 0x3c00));
    t[prefix + ".g_idx"] = tensor_of(dtype::i32, {32}, std::vector<std::int32_t>(32, 0));
    write_safetensors(dir / "bad.safetensors", t);
    const auto src = open_checkpoint(dir / "bad.safetensors");
    try {
        read_packed_linear(*src, prefix, 32, 32);
        FAIL("no error");
    } catch (const input_error& e) {
        CHECK(std::string(e.what()).find(prefix + ".qweight") != std::string::npos);
    }
    fs::remove_all(dir);
}

TEST_CASE("the backend's support rules", "[gptq][backend]") {
    const auto b = make_gptq_backend();
    cell_spec cell;
    cell.framework = "gptq";
    cell.bits = 16;
    auto s = b->supports(cell);
    CHECK_FALSE(s.ok);
    CHECK(s.reason == "GPTQ has no 16-bit format; use fp16");
    cell.bits = 5;
    CHECK_FALSE(b->supports(cell).ok);
    for (std::int64_t bits : {2, 3, 4, 8}) {
        cell.bits = bits;
        CHECK(b->supports(cell).ok);
    }
    cell.gptq.group_size = 16;
    CHECK_FALSE(b->supports(cell).ok);
    cell.gptq.group_size = -1;
    CHECK(b->supports(cell).ok);
    cell.gptq.group_size = 96;  // >= 32, not a power of two: fine
    CHECK(b->supports(cell).ok);
    cell.gptq.memory_plan = "magic";
    CHECK_FALSE(b->supports(cell).ok);
}

TEST_CASE("a tiny model quantized on the CPU loads as cpu_linears matching its dequantized weights", "[gptq][quantize]") {
    const fs::path cache = temp_dir("tiny");
    const model_config m = tiny_model();
    const auto fp16_dir = ensure_synthetic_checkpoint(m, 7, cache / "checkpoints");
    for (bool act : {false, true}) {
        gptq_quantize_options o;
        o.bits = act ? 3 : 4;
        o.gptq.group_size = 32;
        o.gptq.desc_act = act;
        o.gptq.sym = !act;
        o.gptq.calibration_samples = 24;
        o.gptq.calibration_seq_len = 32;
        o.quality_sequences = 2;
        o.true_sequential = !act;
        o.seed = 7;
        const fs::path art = ensure_gptq_artifact(m, fp16_dir, o, cache / "artifacts", false);
        REQUIRE(artifact_complete(art));
        CHECK(fs::exists(art / weights_file_name(o.bits, 32)));
        const auto qc = read_quantize_config(art);
        REQUIRE(qc);
        CHECK(qc->bits == o.bits);
        CHECK(qc->desc_act == act);
        CHECK(qc->quant_method == "gptq");

        std::ifstream rin(art / k_quantize_report_file);
        const auto report = nlohmann::json::parse(rin);
        CHECK(report.at("quantize_time_s").get<double>() > 0);
        CHECK(report.at("quantize_host_peak_bytes").get<std::uint64_t>() > 0);
        REQUIRE(report.at("layers").size() == 14);
        CHECK(report.at("mean_gptq_relative_error").get<double>() < report.at("mean_rtn_relative_error").get<double>());

        const auto src = open_checkpoint(art);
        cell_spec cell;
        cell.framework = "gptq";
        cell.bits = o.bits;
        const auto key = stream_key(9, hash_string("tiny-forward"));
        for (std::int64_t l = 0; l < m.num_layers; ++l)
            for (linear_kind k : {linear_kind::q_proj, linear_kind::k_proj, linear_kind::o_proj, linear_kind::up_proj,
                                  linear_kind::down_proj}) {
                const std::int64_t K = linear_in_features(m, k), N = linear_out_features(m, k);
                const std::string prefix = linear_prefix(l, k);
                const auto lin = make_gptq_backend()->load_cpu_linear({*src, prefix, k, K, N, cell});
                const quantized_linear q = unpack(read_packed_linear(*src, prefix, K, N));
                if (act && k == linear_kind::down_proj) {
                    bool monotone = true;
                    for (std::size_t i = 1; i < q.g_idx.size(); ++i) monotone = monotone && q.g_idx[i] >= q.g_idx[i - 1];
                    CHECK_FALSE(monotone);  // act-order without static groups
                }
                std::vector<float> x(sz(2 * K));
                for (std::size_t i = 0; i < x.size(); ++i) x[i] = round_to_half(normal01(key, i + 1000 * l));
                std::vector<float> y(sz(2 * N));
                lin->forward(x.data(), 2, y.data());
                CHECK(y == reference_forward(q.dequantize(), N, K, x, 2));
                // The quantized weights are close to the fp16 originals.
                const auto w = to_float_vector(open_checkpoint(fp16_dir)->read(prefix + ".weight"));
                const auto wq = q.dequantize();
                double num = 0, den = 0;
                for (std::size_t i = 0; i < w.size(); ++i) {
                    num += (w[i] - wq[i]) * (w[i] - wq[i]);
                    den += w[i] * w[i];
                }
                CHECK(std::sqrt(num / den) < (o.bits == 3 ? 0.35 : 0.2));
            }
        // lm_head stays fp16.
        const auto head = make_gptq_backend()->load_cpu_linear(
            {*src, "lm_head", linear_kind::lm_head, m.hidden_size, m.vocab_size, cell});
        CHECK(head->format_name() == "f16");

        // Cached: a second call returns the same directory without quantizing again.
        const auto t0 = fs::last_write_time(art / k_quantize_report_file);
        CHECK(ensure_gptq_artifact(m, fp16_dir, o, cache / "artifacts", false) == art);
        CHECK(fs::last_write_time(art / k_quantize_report_file) == t0);
    }
    fs::remove_all(cache);
}

TEST_CASE("a host budget smaller than the staged model is out_of_memory(host)", "[gptq][quantize]") {
    const fs::path dir = temp_dir("budget");
    const model_config m = tiny_model();
    const auto src = make_synthetic_source(m, 3);
    gptq_quantize_options o;
    o.gptq.calibration_samples = 2;
    o.gptq.calibration_seq_len = 8;
    o.gptq.memory_plan = "autogptq";
    host_memory::set_budget(src->total_bytes() / 2);
    try {
        quantize_model(m, *src, o, dir / "out", false);
        FAIL("no out_of_memory");
    } catch (const out_of_memory& e) {
        CHECK(e.kind() == memory_kind::host);
    }
    host_memory::set_budget(0);
    fs::remove_all(dir);
}

TEST_CASE("timing: the smoke matrix's tiny model on the CPU path", "[.][timing]") {
    const fs::path dir = temp_dir("timing");
    model_config m = tiny_model();
    m.hidden_size = 256;
    m.intermediate_size = 688;
    m.num_heads = 8;
    m.num_kv_heads = 4;
    m.vocab_size = 512;
    const auto src = make_synthetic_source(m, 1234);
    gptq_quantize_options o;
    o.gptq.calibration_samples = 8;
    o.gptq.calibration_seq_len = 64;
    const auto r = quantize_model(m, *src, o, dir / "out", false);
    std::printf("tiny CPU quantize: %.2f s (forward %.2f, algorithm %.2f, quality %.2f, write %.2f); gptq %.4f rtn %.4f\n",
                r.quantize_time_s, r.forward_s, r.algorithm_s, r.quality_s, r.write_s, r.mean_gptq_relative_error,
                r.mean_rtn_relative_error);
    fs::remove_all(dir);
}
