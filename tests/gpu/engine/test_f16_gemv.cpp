// The fp16 backend's GPU linear (GEMV for rows <= 8, cuBLAS above) against its CPU reference (double accumulation,
// fp16 output) on fresh random inputs: every row count 1..16 and 33, shapes not a multiple of the tile, K not a
// multiple of 8, unaligned activations, and real Llama-7B shapes. The fused launches (q/k/v group, gate/up + SwiGLU,
// folded RMSNorm prologue, residual epilogue) against the separate kernels, bit for bit.
#include "gpu_test_util.hpp"

#include "backends/fp16/fp16_gemv.cuh"
#include "backends/fp16/fp16_linear.hpp"
#include "cuda/rms_norm.cuh"
#include "cuda/swiglu.cuh"

#include "qbench/engine/reference_ops.hpp"

#include "qbench/config/cell.hpp"
#include "qbench/io/tensor_source.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>

using namespace qbench;
using namespace qbench::test;

namespace {

// A checkpoint of one tensor, in memory.
class one_tensor_source final : public tensor_source {
public:
    one_tensor_source(std::string name, host_tensor t) : m_tensor(std::move(t)) {
        m_info.name = std::move(name);
        m_info.type = m_tensor.type;
        m_info.shape = m_tensor.shape;
        m_info.byte_size = m_tensor.byte_size();
    }
    const std::filesystem::path& path() const override { return m_path; }
    std::vector<std::string> names() const override { return {m_info.name}; }
    const tensor_info* find(std::string_view name) const override { return name == m_info.name ? &m_info : nullptr; }
    host_tensor read(std::string_view name) const override {
        require(name);
        return m_tensor;
    }
    const std::map<std::string, std::string>& metadata() const override { return m_meta; }
    std::uint64_t total_bytes() const override { return m_tensor.byte_size(); }

private:
    host_tensor m_tensor;
    tensor_info m_info;
    std::filesystem::path m_path{"memory:test"};
    std::map<std::string, std::string> m_meta;
};

// y = x · wᵀ in double, rounded to fp16 (the fp16 linear's CPU semantics).
std::vector<float> reference(const std::vector<float>& w, const std::vector<float>& x, std::int64_t rows,
                             std::int64_t n, std::int64_t k) {
    std::vector<float> y(rows * n);
    for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t o = 0; o < n; ++o) {
            double acc = 0;
            for (std::int64_t i = 0; i < k; ++i) acc += static_cast<double>(x[r * k + i]) * w[o * k + i];
            y[r * n + o] = round_to_half(static_cast<float>(acc));
        }
    return y;
}

// Weights with the synthetic statistics: normal / sqrt(k).
std::vector<float> weights(std::int64_t n, std::int64_t k, std::uint64_t seed) {
    return random_halves(n * k, static_cast<float>(1.0 / std::sqrt(static_cast<double>(k))), seed);
}

void check_close(const std::vector<float>& got, const std::vector<float>& ref) {
    double max_ref = 0, max_err = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        max_ref = std::max(max_ref, static_cast<double>(std::fabs(ref[i])));
        max_err = std::max(max_err, std::fabs(static_cast<double>(got[i]) - ref[i]));
    }
    CHECK(rel_l2(got, ref) < 1e-3);     // fp16 output rounding alone is ~3e-4
    CHECK(max_err <= 4e-3 * max_ref);   // no element far off (a wrong index would be)
}

}  // namespace

TEST_CASE("f16 gemv: every row count, both variants, awkward shapes", "[gpu][gemv]") {
    struct shape_case {
        std::int64_t n, k;
    };
    for (const shape_case sc : {shape_case{300, 4096}, shape_case{77, 1000}, shape_case{129, 1003}, shape_case{5, 24},
                                shape_case{4096, 11008}, shape_case{17, 4104},
                                shape_case{1, 8}, shape_case{33, 8 * 32 * 9 + 8}}) {
        const std::uint64_t seed = fresh_seed();
        const std::vector<float> w = weights(sc.n, sc.k, seed);
        device_buffer dw = to_device_f16(w);
        for (std::int64_t rows = 1; rows <= k_f16_gemv_max_rows; ++rows) {
            const std::vector<float> x = random_halves(rows * sc.k, 1.0f, seed + rows);
            const std::vector<float> ref = reference(w, x, rows, sc.n, sc.k);
            const std::vector<f16_gemv_variant> variants{
                {f16_gemv_kind::mma, 4, 0, true, f16_mma_layout::contiguous, 1},
                {f16_gemv_kind::mma, 4, 0, true, f16_mma_layout::strided, 0},
                {f16_gemv_kind::mma, 8, 0, true, f16_mma_layout::contiguous, 1},
                {f16_gemv_kind::mma, 8, 0, true, f16_mma_layout::contiguous, 1, 1},
                {f16_gemv_kind::mma, 8, 0, true, f16_mma_layout::contiguous, 0},
                {f16_gemv_kind::mma, 8, 0, true, f16_mma_layout::strided, 1},
                {f16_gemv_kind::mma, 8, 0, true, f16_mma_layout::strided, 0},
                {f16_gemv_kind::ffma, 0, 1, false},  {f16_gemv_kind::ffma, 0, 1, true},
                {f16_gemv_kind::ffma, 0, 2, false},  {f16_gemv_kind::ffma, 0, 2, true},
                {f16_gemv_kind::ffma, 0, 4, true}};
            for (const f16_gemv_variant& variant : variants) {
                for (const bool pdl : {false, true}) {
                    device_buffer dx = to_device_f16(x);
                    const std::string path = f16_gemv_path(dw.get(), dx.get(), rows, sc.n, sc.k, variant);
                    CAPTURE(sc.n, sc.k, rows, path, pdl, seed);
                    device_buffer dy = poisoned(rows * sc.n);
                    launch_f16_gemv(dw.as<__half>(), dx.as<__half>(), dy.as<__half>(), rows, sc.n, sc.k,
                                    {context().stream(), pdl && context().pdl_enabled()}, variant);
                    check_close(from_device_f16(dy.get(), rows * sc.n), ref);
                }
            }
            // Activations at an address that is not 16-byte aligned take the scalar path and stay correct.
            CAPTURE(sc.n, sc.k, rows, seed);
            std::vector<float> shifted(1, 0.0f);
            shifted.insert(shifted.end(), x.begin(), x.end());
            device_buffer dxs = to_device_f16(shifted);
            device_buffer dy = poisoned(rows * sc.n);
            const __half* xs = dxs.as<__half>() + 1;
            CHECK(f16_gemv_path(dw.get(), xs, rows, sc.n, sc.k) == "gemv-f16-scalar");
            launch_f16_gemv(dw.as<__half>(), xs, dy.as<__half>(), rows, sc.n, sc.k, {context().stream(), false});
            check_close(from_device_f16(dy.get(), rows * sc.n), ref);
        }
    }
}

// Variants the fused launches are checked with: both kernels, both mma layouts.
const std::vector<f16_gemv_variant> k_fused_variants{
    {f16_gemv_kind::mma, 8, 0, true, f16_mma_layout::contiguous, 1},
    {f16_gemv_kind::mma, 4, 0, true, f16_mma_layout::contiguous, 1, 1},
    {f16_gemv_kind::mma, 4, 0, true, f16_mma_layout::strided, 0},
    {f16_gemv_kind::ffma, 0, 1, true},
    {f16_gemv_kind::ffma, 0, 2, false},
    {f16_gemv_kind::ffma, 0, 4, true}};

std::vector<std::uint16_t> bits_of(const device_buffer& b, std::size_t n) {
    return from_device<std::uint16_t>(b.get(), n);
}

TEST_CASE("f16 gemv group: q, k, v in one launch equal the separate launches bit for bit", "[gpu][gemv]") {
    struct group_case {
        std::int64_t n0, n1, n2, k;
    };
    for (const group_case gc : {group_case{300, 77, 129, 1000}, group_case{5, 0, 17, 24}, group_case{33, 33, 1, 4104},
                                group_case{4096, 1024, 1024, 4096}}) {
        const std::uint64_t seed = fresh_seed();
        const std::int64_t ns[3] = {gc.n0, gc.n1, gc.n2};
        std::vector<std::vector<float>> w(3);
        std::vector<device_buffer> dw;
        for (int i = 0; i < 3; ++i) {
            w[i] = weights(ns[i], gc.k, seed + i);
            dw.push_back(to_device_f16(w[i]));
        }
        for (const std::int64_t rows : {1, 2, 3, 4, 5, 8}) {
            const std::vector<float> x = random_halves(rows * gc.k, 1.0f, seed + 10 + rows);
            device_buffer dx = to_device_f16(x);
            for (const f16_gemv_variant& variant : k_fused_variants) {
                CAPTURE(gc.n0, gc.n1, gc.n2, gc.k, rows, seed, f16_gemv_path(dw[0].get(), dx.get(), rows, gc.n0, gc.k, variant));
                REQUIRE(f16_gemv_fusable(dw[0].get(), dx.get(), rows, gc.k));
                std::vector<device_buffer> fused, single;
                f16_gemv_segment seg[3];
                for (int i = 0; i < 3; ++i) {
                    fused.push_back(poisoned(rows * ns[i]));
                    single.push_back(poisoned(rows * ns[i]));
                    seg[i] = {dw[i].as<__half>(), fused[i].as<__half>(), ns[i]};
                }
                launch_f16_gemv_group(seg, 3, dx.as<__half>(), rows, gc.k, {context().stream(), context().pdl_enabled()},
                                      variant);
                for (int i = 0; i < 3; ++i)
                    launch_f16_gemv(dw[i].as<__half>(), dx.as<__half>(), single[i].as<__half>(), rows, ns[i], gc.k,
                                    {context().stream(), false}, variant);
                for (int i = 0; i < 3; ++i) {
                    if (ns[i] == 0) continue;
                    CAPTURE(i);
                    CHECK(bits_of(fused[i], rows * ns[i]) == bits_of(single[i], rows * ns[i]));
                    if (gc.k <= 4104) check_close(from_device_f16(fused[i].get(), rows * ns[i]), reference(w[i], x, rows, ns[i], gc.k));
                }
            }
        }
    }
}

TEST_CASE("f16 gemv swiglu: gate, up and the product in one launch equal gemv + gemv + swiglu", "[gpu][gemv]") {
    struct mlp_case {
        std::int64_t n, k;
    };
    for (const mlp_case mc : {mlp_case{300, 1000}, mlp_case{7, 24}, mlp_case{11008, 4096}, mlp_case{9, 4104}}) {
        const std::uint64_t seed = fresh_seed();
        const std::vector<float> wg = weights(mc.n, mc.k, seed), wu = weights(mc.n, mc.k, seed + 1);
        device_buffer dg = to_device_f16(wg), du = to_device_f16(wu);
        for (const std::int64_t rows : {1, 2, 3, 4, 8}) {
            // Larger activations than the other tests, so silu sees both signs well away from zero.
            const std::vector<float> x = random_halves(rows * mc.k, 4.0f, seed + 10 + rows);
            device_buffer dx = to_device_f16(x);
            // CPU: fp16 gate and up, then swiglu_ref, rounded to fp16.
            const std::vector<float> g = reference(wg, x, rows, mc.n, mc.k), u = reference(wu, x, rows, mc.n, mc.k);
            std::vector<float> ref(g.size());
            swiglu_ref(g.data(), u.data(), static_cast<std::int64_t>(g.size()), ref.data());
            for (float& v : ref) v = round_to_half(v);
            for (const f16_gemv_variant& variant : k_fused_variants) {
                CAPTURE(mc.n, mc.k, rows, seed, f16_gemv_path(dg.get(), dx.get(), rows, mc.n, mc.k, variant));
                device_buffer act = poisoned(rows * mc.n), gate = poisoned(rows * mc.n), up = poisoned(rows * mc.n),
                              act2 = poisoned(rows * mc.n);
                launch_f16_gemv_swiglu(dg.as<__half>(), du.as<__half>(), dx.as<__half>(), act.as<__half>(), rows, mc.n,
                                       mc.k, {context().stream(), context().pdl_enabled()}, variant);
                launch_f16_gemv(dg.as<__half>(), dx.as<__half>(), gate.as<__half>(), rows, mc.n, mc.k,
                                {context().stream(), false}, variant);
                launch_f16_gemv(du.as<__half>(), dx.as<__half>(), up.as<__half>(), rows, mc.n, mc.k,
                                {context().stream(), false}, variant);
                launch_swiglu(gate.as<__half>(), up.as<__half>(), rows * mc.n, act2.as<__half>(), {context().stream(), false});
                CHECK(bits_of(act, rows * mc.n) == bits_of(act2, rows * mc.n));
                const std::vector<float> got = from_device_f16(act.get(), rows * mc.n);
                // gate and up may each differ from the CPU by one fp16 rounding step: compare loosely, never NaN.
                CHECK(rel_l2(got, ref) < 3e-3);
            }
        }
    }
}

TEST_CASE("f16 device linear: GEMV and cuBLAS paths at Llama-7B shapes equal the CPU reference", "[gpu][gemv]") {
    struct shape_case {
        std::int64_t n, k;
        std::vector<std::int64_t> rows;
    };
    const std::vector<shape_case> cases{{4096, 11008, {1, 4, 9}}, {11008, 4096, {2, 8, 16}}, {4096, 4096, {1, 3, 33}},
                                        {250, 130, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}};
    cell_spec cell;
    cell.framework = "fp16";
    for (const shape_case& sc : cases) {
        const std::uint64_t seed = fresh_seed();
        const std::vector<float> w = weights(sc.n, sc.k, seed);
        one_tensor_source source("layer.weight", make_f16_tensor(w, {sc.n, sc.k}));
        const linear_request request{source, "layer", linear_kind::q_proj, sc.k, sc.n, cell};
        std::unique_ptr<device_linear> linear = load_f16_device_linear(request, context());
        CHECK(linear->weight_bytes() == static_cast<std::uint64_t>(sc.n * sc.k * 2));
        CHECK(linear->format_name() == "f16");
        for (const std::int64_t rows : sc.rows) {
            CAPTURE(sc.n, sc.k, rows, seed, linear->kernel_path(rows));
            CHECK(linear->kernel_path(rows) == (rows <= 8 ? f16_gemv_path(nullptr, nullptr, rows, sc.n, sc.k, default_f16_gemv_variant()) : "cublas-gemm-f16"));
            const std::vector<float> x = random_halves(rows * sc.k, 1.0f, seed + 100 + rows);
            device_buffer dx = to_device_f16(x);
            device_buffer dy = poisoned(rows * sc.n);
            linear->forward(dx.get(), rows, dy.get(), context().stream());
            check_close(from_device_f16(dy.get(), rows * sc.n), reference(w, x, rows, sc.n, sc.k));
        }
    }
}

TEST_CASE("f16 device linear: a mis-shaped checkpoint tensor is an input error", "[gpu][gemv]") {
    cell_spec cell;
    one_tensor_source source("layer.weight", make_f16_tensor(std::vector<float>(12, 1.0f), {3, 4}));
    const linear_request request{source, "layer", linear_kind::q_proj, 3, 4, cell};
    CHECK_THROWS_AS(load_f16_device_linear(request, context()), input_error);
}

// ---- the folded RMSNorm (decode): the GEMV forms h = rms_norm(x) in its prologue, and o/down add into x in their
// epilogue. Both must equal the separate kernels (launch_rms_norm, then the GEMV on h) bit for bit.

namespace {

int compute_capability() {
    int dev = 0, major = 0, minor = 0;
    QB_CUDA_CHECK(cudaGetDevice(&dev));
    QB_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    QB_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    return major * 10 + minor;
}

// RMSNorm weights near 1, as trained ones are.
std::vector<float> norm_weights(std::int64_t k, std::uint64_t seed) {
    std::vector<float> g = random_halves(k, 0.25f, seed);
    for (float& v : g) v = round_to_half(1.0f + v);
    return g;
}

// Variants the folded norm is built for: the default (k_split 8, two rounds ahead), k_split 4 (a 128-thread
// prologue), one round ahead.
const std::vector<f16_gemv_variant> k_fold_variants{
    {},
    {f16_gemv_kind::mma, 4, 0, true, f16_mma_layout::contiguous, 1, 2},
    {f16_gemv_kind::mma, 8, 0, true, f16_mma_layout::contiguous, 1, 1}};

}  // namespace

TEST_CASE("f16 gemv folded RMSNorm: q/k/v, gate/up and lm_head on x equal rms_norm + the GEMV on h bit for bit",
          "[gpu][gemv][fold]") {
    const bool mma_device = compute_capability() >= 80;
    struct fold_case {
        std::int64_t n0, n1, n2, k;
        bool swiglu;
    };
    // 7B q/k/v, gate/up and lm_head; awkward: chunks not a multiple of 32, the largest foldable row (1024 chunks:
    // four 256-thread passes), a row of 3 chunks, an empty segment.
    for (const fold_case fc : {fold_case{4096, 4096, 4096, 4096, false}, fold_case{11008, 0, 0, 4096, true},
                               fold_case{32001, 0, 0, 4096, false}, fold_case{300, 77, 129, 1000, false},
                               fold_case{33, 1, 5, 8192, false}, fold_case{17, 0, 9, 24, false},
                               fold_case{301, 0, 0, 1000, true}}) {
        const std::uint64_t seed = fresh_seed();
        const std::int64_t ns[3] = {fc.n0, fc.swiglu ? fc.n0 : fc.n1, fc.swiglu ? 0 : fc.n2};
        const int count = fc.swiglu ? 2 : (fc.n1 == 0 && fc.n2 == 0 ? 1 : 3);
        std::vector<device_buffer> dw;
        for (int i = 0; i < 3; ++i) dw.push_back(to_device_f16(weights(ns[i], fc.k, seed + i)));
        device_buffer dg = to_device_f16(norm_weights(fc.k, seed + 5));
        for (const std::int64_t rows : {1, 2, 3, 4, 8}) {
            // The residual stream: larger than the normed values, with a few outliers as real ones have.
            std::vector<float> x = random_halves(rows * fc.k, 2.0f, seed + 10 + rows);
            for (std::size_t i = 0; i < x.size(); i += 997) x[i] = round_to_half(x[i] * 40.0f);
            device_buffer dx = to_device_f16(x);
            const std::vector<std::uint16_t> x_before = bits_of(dx, rows * fc.k);
            for (const double eps : {1e-6, 1e-5}) {
                for (const f16_gemv_variant& variant : k_fold_variants) {
                    CAPTURE(fc.n0, fc.n1, fc.n2, fc.k, fc.swiglu, rows, eps, seed,
                            f16_gemv_path(dw[0].get(), dx.get(), rows, fc.n0, fc.k, variant));
                    const bool foldable = f16_gemv_norm_foldable(dw[0].get(), dx.get(), dg.get(), rows, fc.k, variant);
                    if (!foldable) {
                        CHECK_FALSE((mma_device && fc.k <= 4096));  // 7B widths always fold on sm_80+
                        continue;
                    }
                    const launch_options sep{context().stream(), false};
                    const launch_options fold{context().stream(), context().pdl_enabled()};
                    device_buffer h = poisoned(rows * fc.k);
                    launch_rms_norm(dx.as<__half>(), nullptr, dg.as<__half>(), eps, rows, fc.k, h.as<__half>(), sep);
                    const f16_gemv_norm norm{dg.as<__half>(), eps};
                    const std::int64_t outs = fc.swiglu ? 1 : count;
                    std::vector<device_buffer> ys, yf;
                    for (int i = 0; i < 3; ++i) {
                        ys.push_back(poisoned(rows * ns[i]));
                        yf.push_back(poisoned(rows * ns[i]));
                    }
                    if (fc.swiglu) {
                        launch_f16_gemv_swiglu(dw[0].as<__half>(), dw[1].as<__half>(), h.as<__half>(),
                                               ys[0].as<__half>(), rows, fc.n0, fc.k, sep, variant);
                        launch_f16_gemv_swiglu(dw[0].as<__half>(), dw[1].as<__half>(), dx.as<__half>(),
                                               yf[0].as<__half>(), rows, fc.n0, fc.k, fold, variant, &norm);
                    } else {
                        f16_gemv_segment s_sep[3], s_fold[3];
                        for (int i = 0; i < 3; ++i) {
                            s_sep[i] = {dw[i].as<__half>(), ys[i].as<__half>(), ns[i]};
                            s_fold[i] = {dw[i].as<__half>(), yf[i].as<__half>(), ns[i]};
                        }
                        launch_f16_gemv_group(s_sep, count, h.as<__half>(), rows, fc.k, sep, variant);
                        launch_f16_gemv_group(s_fold, count, dx.as<__half>(), rows, fc.k, fold, variant, &norm);
                    }
                    for (int i = 0; i < outs; ++i) {
                        if (ns[i] == 0) continue;
                        CAPTURE(i);
                        const auto a = bits_of(yf[i], rows * ns[i]), b = bits_of(ys[i], rows * ns[i]);
                        CHECK(a == b);
                        CHECK(std::count(b.begin(), b.end(), std::uint16_t{0xffff}) == 0);  // every output written
                    }
                    CHECK(bits_of(dx, rows * fc.k) == x_before);  // the residual stream is only read
                }
            }
        }
    }
}

TEST_CASE("f16 gemv folded RMSNorm: shapes it cannot fold are declined", "[gpu][gemv][fold]") {
    device_buffer w = to_device_f16(weights(16, 8200, 1)), x = to_device_f16(random_halves(8200, 1.0f, 2)),
                  g = to_device_f16(norm_weights(8200, 3));
    CHECK_FALSE(f16_gemv_norm_foldable(w.get(), x.get(), g.get(), 1, 8200));          // 1025 chunks: over a block
    CHECK_FALSE(f16_gemv_norm_foldable(w.get(), x.get(), g.get(), 9, 4096));          // rows above the GEMV's
    CHECK_FALSE(f16_gemv_norm_foldable(w.get(), x.as<__half>() + 1, g.get(), 1, 4096));  // unaligned x
    CHECK_FALSE(f16_gemv_norm_foldable(w.get(), x.get(), g.as<__half>() + 1, 1, 4096));  // unaligned norm weight
    CHECK_FALSE(f16_gemv_norm_foldable(w.get(), x.get(), g.get(), 1, 4100));          // k not a multiple of 8
    const f16_gemv_variant ffma{f16_gemv_kind::ffma, 0, 2, true};
    CHECK_FALSE(f16_gemv_norm_foldable(w.get(), x.get(), g.get(), 1, 4096, ffma));    // only the mma kernel folds
    const f16_gemv_variant strided{f16_gemv_kind::mma, 8, 0, true, f16_mma_layout::strided, 1};
    CHECK_FALSE(f16_gemv_norm_foldable(w.get(), x.get(), g.get(), 1, 4096, strided));
}

TEST_CASE("f16 gemv residual epilogue: x = fp16(x + fp16(a · wᵀ)) equals the GEMV + rms_norm's add bit for bit",
          "[gpu][gemv][fold]") {
    struct res_case {
        std::int64_t n, k;
    };
    // o_proj and down_proj of 7B; awkward: n not a multiple of 16 (1003 also takes rms_norm's strided kernel).
    for (const res_case rc : {res_case{4096, 4096}, res_case{4096, 11008}, res_case{1003, 1000}, res_case{24, 16}}) {
        const std::uint64_t seed = fresh_seed();
        device_buffer dw = to_device_f16(weights(rc.n, rc.k, seed));
        device_buffer dg = to_device_f16(norm_weights(rc.n, seed + 1));
        for (const std::int64_t rows : {1, 2, 3, 4, 8}) {
            const std::vector<float> a = random_halves(rows * rc.k, 1.0f, seed + 10 + rows);
            const std::vector<float> x = random_halves(rows * rc.n, 2.0f, seed + 20 + rows);
            device_buffer da = to_device_f16(a);
            for (const f16_gemv_variant& variant : k_fused_variants) {
                CAPTURE(rc.n, rc.k, rows, seed, f16_gemv_path(dw.get(), da.get(), rows, rc.n, rc.k, variant));
                REQUIRE(f16_gemv_fusable(dw.get(), da.get(), rows, rc.k));
                device_buffer x_sep = to_device_f16(x), x_fold = to_device_f16(x);
                device_buffer delta = poisoned(rows * rc.n), h = poisoned(rows * rc.n);
                launch_f16_gemv(dw.as<__half>(), da.as<__half>(), delta.as<__half>(), rows, rc.n, rc.k,
                                {context().stream(), false}, variant);
                launch_rms_norm(x_sep.as<__half>(), delta.as<__half>(), dg.as<__half>(), 1e-6, rows, rc.n,
                                h.as<__half>(), {context().stream(), false});
                launch_f16_gemv_residual(dw.as<__half>(), da.as<__half>(), x_fold.as<__half>(), rows, rc.n, rc.k,
                                         {context().stream(), context().pdl_enabled()}, variant);
                const auto got = bits_of(x_fold, rows * rc.n), want = bits_of(x_sep, rows * rc.n);
                CHECK(got == want);
                CHECK(got != bits_of(to_device_f16(x), rows * rc.n));  // the add happened
            }
        }
    }
}
