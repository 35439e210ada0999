// Every bnb kernel against the CPU reference on fresh random inputs: real Llama-7B shapes and awkward ones, batches
// 1, 2, 3, 4, 8 (16 and more through the GEMM paths), outputs poisoned before each run.
#include "backends/bnb/bnb_kernels.cuh"
#include "backends/bnb/bnb_quant_ref.hpp"
#include "gpu_bnb_util.hpp"
#include "gpu_bnb_weight.hpp"
#include "qbench/common/counter_rng.hpp"

#include <catch2/catch.hpp>

#include <cublasLt.h>

#include <algorithm>
#include <cstring>

using namespace qbench;
using namespace qbench::bnb;
using namespace qbench::bnb::test;

namespace {

struct shape {
    std::int64_t n, k;
};

// Real shapes (q/k/v/o, gate/up, down of Llama-7B) and awkward ones: odd element counts, K not a multiple of the
// block or of 32, a single row, N not a multiple of the row group.
const shape k_real[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
const shape k_awkward[] = {{37, 99}, {5, 4100}, {1, 33}, {130, 96}, {4097, 4128}, {3, 11008}, {2, 16416}};

std::uint64_t g_seed = 1000;  // every case draws fresh inputs

std::vector<float> weights(std::int64_t count, float scale) {
    std::vector<float> v(static_cast<std::size_t>(count));
    const std::uint64_t key = stream_key(++g_seed, hash_string("gpu-bnb-weights"));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = round_to_half(normal01(key, i) * scale);
    return v;
}

std::vector<float> activations(std::int64_t m, std::int64_t k, std::int64_t outlier_every) {
    std::vector<float> v(static_cast<std::size_t>(m * k));
    const std::uint64_t key = stream_key(++g_seed, hash_string("gpu-bnb-x"));
    for (std::int64_t r = 0; r < m; ++r)
        for (std::int64_t c = 0; c < k; ++c) {
            const auto i = static_cast<std::size_t>(r * k + c);
            float x = normal01(key, i);
            if (outlier_every > 0 && c % outlier_every == 5) x = (x < 0 ? -1.0f : 1.0f) * (7.0f + 5.0f * uniform01(key, i + 1));
            v[i] = round_to_half(x);
        }
    return v;
}

const launch_options k_plain{nullptr, false};

}  // namespace

TEST_CASE("gpu bnb: 4-bit quantization matches the reference bit for bit", "[gpu][bnb]") {
    struct quant_case {
        shape s;
        quant_type t;
        std::int64_t bs;
    };
    std::vector<quant_case> cases;
    for (const shape& s : k_real) {
        cases.push_back({s, quant_type::nf4, 64});
        cases.push_back({s, quant_type::fp4, 64});
    }
    for (const shape& s : k_awkward)
        for (std::int64_t bs : {32, 64, 128, 4096}) {
            cases.push_back({s, quant_type::nf4, bs});
            cases.push_back({s, quant_type::fp4, bs});
        }
    for (const quant_case& qc : cases) {
        const std::int64_t n = qc.s.n * qc.s.k;
        std::vector<float> v = weights(n, 0.02f);
        v[static_cast<std::size_t>(n / 2)] = 0.5f;  // an outlier weight in some block
        const quant_4bit_weight ref = quantize_4bit_ref(v, qc.s.n, qc.s.k, {qc.t, qc.bs, false});
        dev<__half> in = to_device_half(v);
        dev<std::uint8_t> packed((n + 1) / 2);
        dev<float> absmax(static_cast<std::size_t>(ref.blocks()));
        packed.poison();
        absmax.poison();
        launch_quantize_4bit(in.get(), n, qc.t, qc.bs, packed.get(), absmax.get(), k_plain);
        INFO("shape [" << qc.s.n << ", " << qc.s.k << "] " << quant_type_name(qc.t) << " bs " << qc.bs);
        CHECK(packed.download() == ref.packed);
        CHECK(absmax.download() == ref.absmax);
    }
}

TEST_CASE("gpu bnb: double quantization matches the reference", "[gpu][bnb]") {
    for (std::int64_t blocks : {std::int64_t{4096} * 4096 / 64, std::int64_t{11008} * 4096 / 64, std::int64_t{1},
                                std::int64_t{255}, std::int64_t{257}, std::int64_t{1000}}) {
        std::vector<float> absmax = weights(blocks, 0.01f);
        for (float& a : absmax) a = std::fabs(a) + 0.02f;
        dev<float> a_d(absmax), offset(1), nested((blocks + 255) / 256);
        const auto& map = dynamic_map_signed();
        dev<float> code(std::vector<float>(map.begin(), map.end()));
        dev<std::uint8_t> codes(static_cast<std::size_t>(blocks));
        offset.poison();
        nested.poison();
        codes.poison();
        launch_absmax_mean(a_d.get(), blocks, offset.get(), k_plain);
        launch_double_quantize(a_d.get(), blocks, offset.get(), code.get(), 256, codes.get(), nested.get(), k_plain);
        const float gpu_offset = offset.download()[0];
        const float cpu_offset = absmax_mean_ref(absmax);
        INFO("blocks " << blocks);
        // Both sum in double, in different orders: equal after rounding to fp32 but for a rare 1-ulp tie.
        CHECK(std::fabs(gpu_offset - cpu_offset) <= std::fabs(cpu_offset) * 1.2e-7f);
        const nested_absmax ref = double_quantize_ref(absmax, 256, gpu_offset);
        CHECK(codes.download() == ref.codes);
        CHECK(nested.download() == ref.absmax);
    }
}

TEST_CASE("gpu bnb: dequantization matches the reference bit for bit", "[gpu][bnb]") {
    std::vector<shape> shapes(std::begin(k_awkward), std::end(k_awkward));
    shapes.push_back(k_real[1]);
    for (const shape& s : shapes)
        for (bool dq : {false, true})
            for (quant_type t : {quant_type::nf4, quant_type::fp4}) {
                const std::int64_t n = s.n * s.k;
                const quant_4bit_weight w = quantize_4bit_ref(weights(n, 0.05f), s.n, s.k, {t, dq ? 64 : 128, dq});
                device_4bit d(w);
                dev<__half> out(static_cast<std::size_t>(n));
                out.poison();
                launch_dequantize_4bit(d.view, out.get(), k_plain);
                std::vector<std::uint16_t> ref(static_cast<std::size_t>(n));
                dequantize_4bit_ref(w, ref);
                const std::vector<float> got = from_device_half(out);
                std::int64_t mismatches = 0;
                for (std::int64_t i = 0; i < n; ++i)
                    mismatches += float_to_half(got[static_cast<std::size_t>(i)]) != ref[static_cast<std::size_t>(i)] ? 1 : 0;
                INFO("shape [" << s.n << ", " << s.k << "] " << quant_type_name(t) << (dq ? " dq" : ""));
                CHECK(mismatches == 0);
            }
}

TEST_CASE("gpu bnb: fused 4-bit GEMV against the reference", "[gpu][bnb]") {
    struct gemv_case {
        shape s;
        quant_type t;
        bool dq;
        std::int64_t bs = 64;
    };
    std::vector<gemv_case> cases;
    for (const shape& s : k_real) {
        cases.push_back({s, quant_type::nf4, false});
        cases.push_back({s, quant_type::fp4, true});
    }
    cases.push_back({k_real[2], quant_type::nf4, true});
    for (const shape& s : k_awkward)
        if (s.k % 32 == 0) {
            cases.push_back({s, quant_type::nf4, true});
            cases.push_back({s, quant_type::fp4, false});
        }
    // Other block sizes: a 32-column slice is one block (32), or a block spans many slices and rows (256, 4096).
    cases.push_back({{130, 96}, quant_type::nf4, false, 32});
    cases.push_back({{37, 4096}, quant_type::nf4, true, 256});
    cases.push_back({{19, 1024}, quant_type::fp4, true, 4096});
    // The widest team (512 threads): too wide for the 384-thread kernels, whose configs then run their wide kernel.
    cases.push_back({{7, 16384}, quant_type::nf4, true});
    cases.push_back({{9, 16384}, quant_type::fp4, false});
    for (const gemv_case& gc : cases) {
        const std::int64_t n = gc.s.n, k = gc.s.k, mmax = 8;
        const quant_4bit_weight w = quantize_4bit_ref(weights(n * k, 1.0f / 64.0f), n, k, {gc.t, gc.bs, gc.dq});
        const std::vector<float> x = activations(mmax, k, 0);
        std::vector<float> ref(static_cast<std::size_t>(mmax * n));
        matmul_4bit_ref(w, x.data(), mmax, ref.data());
        const std::vector<double> s = abs_product(x, dequantize_4bit_ref(w), mmax, n, k);
        device_4bit d(w);
        dev<__half> xd = to_device_half(x);
        struct run {
            std::int64_t m;
            int variant;
        };
        std::vector<run> runs;
        for (int v = 0; v < k_gemv_4bit_variants; ++v) runs.push_back({1, v});  // every team config, v2, v1
        for (std::int64_t m : {2, 3, 4, 8}) runs.push_back({m, 0});
        for (std::int64_t m : {2, 8}) runs.push_back({m, k_gemv_4bit_v1_id});  // the v1 kernel at a batch
        for (const run r : runs) {
            dev<__half> y(static_cast<std::size_t>(r.m * n));
            y.poison();
            launch_gemv_4bit(d.view, xd.get(), r.m, y.get(), k_plain, r.variant);
            const std::vector<float> got = from_device_half(y);
            const std::vector<float> ref_m(ref.begin(), ref.begin() + r.m * n);
            const std::vector<double> s_m(s.begin(), s.begin() + r.m * n);
            // fp16 code book and half2 partial sums of 8 products: ~3 * 2^-11 of sum |x w|; fp16 output rounding.
            const comparison c = compare(got, ref_m, s_m, 2e-3, 1.0 / 1024, 1e-6);
            INFO("shape [" << n << ", " << k << "] " << quant_type_name(gc.t) << (gc.dq ? " dq" : "") << " bs " << gc.bs << " m " << r.m
                           << " variant " << gemv_4bit_variant_name(r.variant) << " first bad " << c.first_bad << " worst " << c.worst_ratio
                           << " rel_l2 " << c.rel_l2);
            CHECK(c.bad == 0);
            CHECK(c.rel_l2 < 2e-3);
        }
    }
}

TEST_CASE("gpu bnb: int8 weight and activation quantization match the reference", "[gpu][bnb]") {
    std::vector<shape> shapes(std::begin(k_awkward), std::end(k_awkward));
    shapes.push_back(k_real[2]);
    for (const shape& s : shapes) {
        const std::vector<float> v = weights(s.n * s.k, 0.03f);
        const int8_weight ref = quantize_int8_ref(v, s.n, s.k);
        dev<__half> in = to_device_half(v);
        dev<std::int8_t> cb(static_cast<std::size_t>(s.n * s.k));
        dev<float> scb(static_cast<std::size_t>(s.n));
        cb.poison();
        scb.poison();
        launch_quantize_int8_rows(in.get(), s.n, s.k, cb.get(), scb.get(), k_plain);
        INFO("shape [" << s.n << ", " << s.k << "]");
        CHECK(cb.download() == ref.cb);
        CHECK(scb.download() == ref.scb);

        for (std::int64_t m : {1, 3, 16, 40})
            for (float threshold : {0.0f, 6.0f}) {
                const std::vector<float> x = activations(m, s.k, 97);
                const int8_activations a = quantize_int8_activations_ref(x.data(), m, s.k, threshold);
                dev<__half> xd = to_device_half(x);
                dev<std::int8_t> q(static_cast<std::size_t>(m * s.k));
                dev<float> rs(static_cast<std::size_t>(m));
                dev<std::uint32_t> mask(static_cast<std::size_t>((s.k + 31) / 32));
                dev<std::int32_t> cols(static_cast<std::size_t>(s.k)), count(1);
                q.poison();
                rs.poison();
                mask.poison();
                count.poison();
                launch_quantize_int8_activations(xd.get(), m, s.k, threshold,
                                                 {q.get(), rs.get(), mask.get(), cols.get(), count.get()}, k_plain);
                INFO("m " << m << " threshold " << threshold);
                CHECK(q.download() == a.q);
                CHECK(rs.download() == a.row_stats);
                const std::int32_t cnt = count.download()[0];
                REQUIRE(cnt == static_cast<std::int32_t>(a.outlier_cols.size()));
                const std::vector<std::int32_t> got_cols = cols.download();
                for (std::int32_t j = 0; j < cnt; ++j) CHECK(got_cols[static_cast<std::size_t>(j)] == a.outlier_cols[static_cast<std::size_t>(j)]);
                const std::vector<std::uint32_t> got_mask = mask.download();
                for (std::int64_t c = 0; c < s.k; ++c) {
                    const bool bit = (got_mask[static_cast<std::size_t>(c / 32)] >> (c % 32)) & 1u;
                    const bool expected = std::find(a.outlier_cols.begin(), a.outlier_cols.end(), c) != a.outlier_cols.end();
                    if (bit != expected) {
                        FAIL_CHECK("mask bit of column " << c);
                        break;
                    }
                }
            }
    }
}

TEST_CASE("gpu bnb: LLM.int8() GEMV and GEMM paths against the reference", "[gpu][bnb]") {
    std::vector<shape> shapes(std::begin(k_real), std::end(k_real));
    shapes.insert(shapes.end(), std::begin(k_awkward), std::end(k_awkward));
    shapes.push_back({5, 16384});  // the widest fused team (512 threads): the 384-thread configs run their wide kernel
    cublasLtHandle_t lt = nullptr;
    REQUIRE(cublasLtCreate(&lt) == CUBLAS_STATUS_SUCCESS);
    dev<std::uint8_t> ws(32u << 20);
    for (const shape& s : shapes) {
        const std::int64_t n = s.n, k = s.k;
        const std::vector<float> v = weights(n * k, 0.03f);
        const int8_weight w = quantize_int8_ref(v, n, k);
        dev<std::int8_t> cb(w.cb);
        dev<float> scb(w.scb);
        std::vector<float> wdq(static_cast<std::size_t>(n * k));
        for (std::int64_t o = 0; o < n; ++o)
            for (std::int64_t c = 0; c < k; ++c) wdq[static_cast<std::size_t>(o * k + c)] = int8_weight_value(w, o, c);
        for (float threshold : {0.0f, 6.0f}) {
            const bool real = n >= 4096 && k >= 4096;
            const std::vector<std::int64_t> batches =
                real ? std::vector<std::int64_t>{1, 3, 8, 16} : std::vector<std::int64_t>{1, 2, 3, 4, 8, 16, 40};
            const std::int64_t mmax = batches.back();
            const std::vector<float> x = activations(mmax, k, 61);
            std::vector<float> ref(static_cast<std::size_t>(mmax * n));
            matmul_int8_ref(w, x.data(), mmax, threshold, ref.data());
            const std::vector<double> sabs = abs_product(x, wdq, mmax, n, k);
            dev<__half> xd = to_device_half(x);
            dev<std::int8_t> q(static_cast<std::size_t>(mmax * k));
            dev<float> rs(static_cast<std::size_t>(mmax));
            dev<std::uint32_t> mask(static_cast<std::size_t>((k + 31) / 32));
            dev<std::int32_t> cols(static_cast<std::size_t>(k)), count(1), product(static_cast<std::size_t>(mmax * n));
            if (gemv_int8_fused_supported(k)) {
                // The fused batch-1 kernel (activation quantization inside), every launch shape.
                const std::vector<float> ref_1(ref.begin(), ref.begin() + n);
                const std::vector<double> s_1(sabs.begin(), sabs.begin() + n);
                for (int config = 0; config < gemv_team_configs(); ++config) {
                    dev<__half> y(static_cast<std::size_t>(n));
                    y.poison();
                    launch_gemv_int8_fused(cb.get(), scb.get(), n, k, xd.get(), threshold, y.get(), k_plain, config);
                    const comparison c = compare(from_device_half(y), ref_1, s_1, 1e-5, 2.0 / 1024, 1e-6);
                    INFO("shape [" << n << ", " << k << "] m 1 threshold " << threshold << " fused "
                                   << gemv_int8_fused_config_name(config) << " first bad " << c.first_bad << " worst "
                                   << c.worst_ratio);
                    CHECK(c.bad == 0);
                }
            }
            for (std::int64_t m : batches) {
                int8_act_buffers act{q.get(), rs.get(), mask.get(), cols.get(), count.get()};
                dev<__half> y(static_cast<std::size_t>(m * n));
                y.poison();
                launch_quantize_int8_activations(xd.get(), m, k, threshold, act, k_plain);
                std::string path;
                if (m <= k_gemv_int8_max_rows && gemv_int8_supported(k)) {
                    // Both GEMV kernels: warp-owned (2) at m = 1, block-owned (1) at m = 2 and 3, defaults otherwise.
                    const int variant = m == 1 ? 2 : (m == 2 || m == 3) ? 1 : 0;
                    path = "gemv-variant-" + std::to_string(variant);
                    if (!(threshold > 0.0f)) act.outlier_mask = nullptr;
                    launch_gemv_int8(cb.get(), scb.get(), n, k, xd.get(), act, m, y.get(), k_plain, variant);
                } else {
                    product.poison();
                    path = "cublaslt";
                    if (!cublaslt_int8_gemm(lt, q.get(), cb.get(), product.get(), m, n, k, ws.get(), ws.size(), nullptr)) {
                        path = "plain";
                        launch_int8_matmul_plain(q.get(), cb.get(), m, n, k, product.get(), k_plain);
                    }
                    launch_int8_gemm_epilogue(product.get(), cb.get(), scb.get(), n, k, xd.get(), act, m, y.get(), k_plain);
                }
                const std::vector<float> got = from_device_half(y);
                const std::vector<float> ref_m(ref.begin(), ref.begin() + m * n);
                const std::vector<double> s_m(sabs.begin(), sabs.begin() + m * n);
                // The int32 product is exact on both sides; fp32 vs double scaling and the outlier sum differ by
                // rounding only: an fp16 ulp or two.
                const comparison c = compare(got, ref_m, s_m, 1e-5, 2.0 / 1024, 1e-6);
                INFO("shape [" << n << ", " << k << "] m " << m << " threshold " << threshold << " path " << path
                               << " first bad " << c.first_bad << " worst " << c.worst_ratio);
                CHECK(c.bad == 0);
            }
        }
    }
    cublasLtDestroy(lt);
}
