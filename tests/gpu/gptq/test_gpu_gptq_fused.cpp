// The GPTQ linear's fused launches (harness/cuda/fused_linear.hpp), label gpu: forward_group (q, k, v in one kernel)
// must equal the separate forward() outputs bit for bit (every output column is summed in the same order), and
// forward_swiglu must equal forward(gate), forward(up) and launch_swiglu bit for bit; on Llama-7B shapes and awkward
// ones, 2/3/4/8 bits, block and per-slab group paths, act-order, batches 1, 2, 4 (and 8 / 12 in chunks), with the
// layers loaded for kernel v2 and for v3. Where the fusion does not apply the calls must return false and enqueue
// nothing (outputs stay poisoned).
#include "gptq_gpu_test_util.hpp"

#include "backends/gptq/gptq_linear.hpp"

#include "cuda/fused_linear.hpp"
#include "cuda/rms_norm.cuh"
#include "cuda/swiglu.cuh"

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

// v2's fused launches are opt-in (QBENCH_GPTQ_FUSE=1, gptq_device_linear.cu; v3's are the default): both are tested.
static const int g_gptq_fusion_on = (::setenv("QBENCH_GPTQ_FUSE", "1", 1), 0);

using namespace qbench;
using namespace qbench::gptq;
using namespace qbench::gptq::test;

namespace {

/// A member of a fused call: its layer shares `g_idx_from`'s g_idx when given (act-order q, k and v of one layer
/// share the row order: one Hessian).
quantized_linear member(std::int64_t K, std::int64_t N, std::int64_t bits, std::int64_t gs, bool act, std::uint64_t seed,
                        const quantized_linear* g_idx_from = nullptr) {
    quantized_linear q = random_layer(K, N, bits, gs, act, seed);
    if (g_idx_from != nullptr) q.g_idx = g_idx_from->g_idx;
    return q;
}

std::vector<std::unique_ptr<device_linear>> upload_all(device_context& ctx, const std::vector<quantized_linear>& qs,
                                                       std::int64_t threshold = 8) {
    std::vector<std::unique_ptr<device_linear>> out;
    for (const auto& q : qs) out.push_back(make_gptq_device_linear(ctx, pack(q), threshold));
    return out;
}

device_buffer poisoned(device_context& ctx, std::int64_t halves) {
    device_buffer b = ctx.allocate(static_cast<std::uint64_t>(halves) * 2, "test output");
    QB_CUDA_CHECK(cudaMemsetAsync(b.get(), 0xff, static_cast<std::size_t>(halves) * 2, ctx.stream()));
    return b;
}

bool still_poisoned(const device_buffer& b, std::int64_t halves) {
    const auto v = download<std::uint16_t>(b.get(), static_cast<std::size_t>(halves));
    return std::all_of(v.begin(), v.end(), [](std::uint16_t h) { return h == 0xffff; });
}

/// forward_group of lins[0] with the others against one forward() each, for every batch: bit-identical outputs,
/// rows past the batch untouched.
void check_group(device_context& ctx, const std::vector<std::unique_ptr<device_linear>>& lins, const char* what,
                 std::initializer_list<std::int64_t> batches, std::uint64_t seed, bool unaligned_x = false) {
    const std::int64_t K = lins[0]->in_features(), max_rows = 12;
    const int count = static_cast<int>(lins.size());
    auto* fused = dynamic_cast<fused_linear*>(lins[0].get());
    REQUIRE(fused != nullptr);
    // unaligned_x: x one half past a 16-byte boundary (the staged path of an unaligned input).
    auto xh = to_half_bits(random_inputs(max_rows, K, seed));
    xh.insert(xh.begin(), 0x3c00);
    const device_buffer xbuf = upload(ctx, xh);
    if (!unaligned_x) QB_CUDA_CHECK(cudaMemcpy(xbuf.get(), xh.data() + 1, (xh.size() - 1) * 2, cudaMemcpyHostToDevice));
    const void* xd = static_cast<const std::uint16_t*>(xbuf.get()) + (unaligned_x ? 1 : 0);
    std::vector<device_linear*> others;
    for (int i = 1; i < count; ++i) others.push_back(lins[static_cast<std::size_t>(i)].get());
    for (std::int64_t rows : batches) {
        std::vector<device_buffer> sep, fus;
        std::vector<void*> ys;
        for (int i = 0; i < count; ++i) {
            const std::int64_t n = lins[static_cast<std::size_t>(i)]->out_features();
            sep.push_back(poisoned(ctx, max_rows * n));
            fus.push_back(poisoned(ctx, max_rows * n));
            ys.push_back(fus.back().get());
            lins[static_cast<std::size_t>(i)]->forward(xd, rows, sep.back().get(), ctx.stream());
        }
        const bool ran = fused->forward_group(others.data(), count - 1, xd, rows, ys.data(), ctx.stream());
        QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
        INFO(what << " members=" << count << " K=" << K << " rows=" << rows);
        REQUIRE(ran);
        for (int i = 0; i < count; ++i) {
            const std::int64_t n = lins[static_cast<std::size_t>(i)]->out_features();
            const auto a = download<std::uint16_t>(sep[static_cast<std::size_t>(i)].get(), static_cast<std::size_t>(max_rows * n));
            const auto b = download<std::uint16_t>(fus[static_cast<std::size_t>(i)].get(), static_cast<std::size_t>(max_rows * n));
            std::int64_t differ = 0, unpoisoned_tail = 0, nonfinite = 0;
            for (std::size_t j = 0; j < a.size(); ++j) {
                differ += a[j] != b[j];
                if (static_cast<std::int64_t>(j) >= rows * n) unpoisoned_tail += b[j] != 0xffff;
                else nonfinite += (b[j] & 0x7c00) == 0x7c00;
            }
            INFO("member " << i << " N=" << n << " differing outputs " << differ << " non-finite " << nonfinite);
            CHECK(differ == 0);
            CHECK(unpoisoned_tail == 0);
            CHECK(nonfinite == 0);  // both paths really wrote (the poison is NaN)
        }
    }
}

/// forward_swiglu of gate against forward(gate), forward(up) and launch_swiglu: bit-identical.
void check_swiglu(device_context& ctx, device_linear& gate, device_linear& up, const char* what,
                  std::initializer_list<std::int64_t> batches, std::uint64_t seed) {
    const std::int64_t K = gate.in_features(), N = gate.out_features(), max_rows = 12;
    auto* fused = dynamic_cast<fused_linear*>(&gate);
    REQUIRE(fused != nullptr);
    const device_buffer xd = upload(ctx, to_half_bits(random_inputs(max_rows, K, seed)));
    for (std::int64_t rows : batches) {
        device_buffer g = poisoned(ctx, max_rows * N), u = poisoned(ctx, max_rows * N);
        device_buffer act_sep = poisoned(ctx, max_rows * N), act_fused = poisoned(ctx, max_rows * N);
        gate.forward(xd.get(), rows, g.get(), ctx.stream());
        up.forward(xd.get(), rows, u.get(), ctx.stream());
        launch_swiglu(g.as<const __half>(), u.as<const __half>(), rows * N, act_sep.as<__half>(), launch_options{ctx.stream(), false});
        const bool ran = fused->forward_swiglu(up, xd.get(), rows, act_fused.get(), ctx.stream());
        QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
        INFO(what << " K=" << K << " N=" << N << " rows=" << rows);
        REQUIRE(ran);
        const auto a = download<std::uint16_t>(act_sep.get(), static_cast<std::size_t>(max_rows * N));
        const auto b = download<std::uint16_t>(act_fused.get(), static_cast<std::size_t>(max_rows * N));
        std::int64_t differ = 0, unpoisoned_tail = 0, nonzero = 0;
        for (std::size_t j = 0; j < a.size(); ++j) {
            differ += a[j] != b[j];
            if (static_cast<std::int64_t>(j) >= rows * N) unpoisoned_tail += b[j] != 0xffff;
            else nonzero += (b[j] & 0x7fff) != 0 && (b[j] & 0x7c00) != 0x7c00;
        }
        INFO("differing outputs " << differ << " of " << rows * N);
        CHECK(differ == 0);
        CHECK(unpoisoned_tail == 0);
        CHECK(nonzero > rows * N / 2);  // finite, mostly non-zero: a real product, not an untouched or zeroed buffer
    }
}

/// Every test runs with the layers loaded for kernel v2 and for v3 (layers v3 cannot take, groups smaller than a
/// k-block, load for v2 either way), most also for v3 with paired CTAs (`v3-paired`: QBENCH_GPTQ_PAIR=1) and for v3
/// with the weights' L2 prefetch before the PDL wait (`v3-l2pre`: QBENCH_GPTQ_L2PRE=16, which covers every warp's run
/// of these shapes, gate's and up's).
struct kernel_under_test {
    explicit kernel_under_test(const std::string& name)
        : choice("QBENCH_GPTQ_KERNEL", name == "v2" ? "v2" : "v3"), pairing("QBENCH_GPTQ_PAIR", name == "v3-paired" ? "1" : "0"),
          l2_prefetch("QBENCH_GPTQ_L2PRE", name == "v3-l2pre" ? "16" : "0"), v3(name != "v2"), paired(name == "v3-paired"),
          suffix(paired ? "-paired" : name == "v3-l2pre" ? "-l2pre16" : "") {
        std::printf("kernel %s\n", name.c_str());
    }
    env_choice choice;
    env_choice pairing;
    env_choice l2_prefetch;
    bool v3;
    bool paired;
    std::string suffix;  ///< what kernel_path appends for this kernel
};

struct variant {
    std::int64_t gs;
    bool act;
    const char* name;
};

/// A stand-in linear of another backend (the fused calls must decline it).
class other_linear final : public device_linear {
public:
    other_linear(std::int64_t in, std::int64_t out) : m_in(in), m_out(out) {}
    std::int64_t in_features() const override { return m_in; }
    std::int64_t out_features() const override { return m_out; }
    void forward(const void*, std::int64_t, void*, CUstream_st*) override {}
    std::uint64_t weight_bytes() const override { return 0; }
    std::string kernel_path(std::int64_t) const override { return "none"; }
    std::string format_name() const override { return "stand-in"; }

private:
    std::int64_t m_in, m_out;
};

}  // namespace

TEST_CASE("forward_group equals the separate forwards bit for bit (Llama-7B q/k/v, 4-bit)", "[gpu][gptq][fused]") {
    const kernel_under_test kernel(GENERATE(as<std::string>{}, "v2", "v3"));
    device_context ctx;
    for (const variant& v : {variant{128, false, "g128"}, variant{128, true, "g128-act"}, variant{-1, false, "g-1"}}) {
        const auto q = member(4096, 4096, 4, v.gs, v.act, 10);
        const auto lins = upload_all(ctx, {q, member(4096, 4096, 4, v.gs, v.act, 11, &q), member(4096, 4096, 4, v.gs, v.act, 12, &q)});
        CHECK(lins[0]->kernel_path(1) == (kernel.v3 ? "gptq-fused-v3-4b" : "gptq-fused-mma-4b") + std::string(v.act ? "-perm" : "") + kernel.suffix);
        check_group(ctx, lins, v.name, {1, 2, 4, 8}, 13);
        if (!v.act) check_group(ctx, lins, v.name, {1, 4}, 14, true);  // unaligned x: staged once for all three
        std::printf("  7B q/k/v 4-bit %-8s: fused == separate\n", v.name);
    }
}

TEST_CASE("forward_group equals the separate forwards on every width and awkward shapes", "[gpu][gptq][fused]") {
    const kernel_under_test kernel(GENERATE(as<std::string>{}, "v2", "v3", "v3-paired", "v3-l2pre"));
    device_context ctx;
    std::uint64_t seed = 200;
    const variant variants[] = {{128, false, "g128"}, {128, true, "g128-act"}, {32, true, "g32-act (per-slab)"}, {64, false, "g64 (per-slab)"}};
    for (std::int64_t bits : {2, 3, 4, 8}) {
        // 7B q/k/v at g128 for every width; GQA-like members of different N.
        {
            const auto q = member(4096, 4096, bits, 128, false, seed++);
            const auto lins = upload_all(ctx, {q, member(4096, 4096, bits, 128, false, seed++), member(4096, 4096, bits, 128, false, seed++)});
            check_group(ctx, lins, "7B q/k/v g128", {1, 2, 4}, seed++);
        }
        for (const variant& v : variants) {
            if (bits == 4 || (v.gs == 128 && v.act)) {  // 7B-size GQA members: every group layout at 4 bits
                const auto q = member(4096, 4096, bits, v.gs, v.act, seed++);
                const auto lins = upload_all(ctx, {q, member(4096, 1024, bits, v.gs, v.act, seed++, &q), member(4096, 1024, bits, v.gs, v.act, seed++, &q)});
                check_group(ctx, lins, "GQA 4096 -> 4096/1024/1024", {1, 2, 4}, seed++);
            }
            {
                // Ragged K (staged x), N not a multiple of 8 in every member, a member smaller than one CTA's range.
                const auto q = member(688, 176, bits, v.gs, v.act, seed++);
                const auto lins = upload_all(ctx, {q, member(688, 100, bits, v.gs, v.act, seed++, &q), member(688, 13, bits, v.gs, v.act, seed++, &q)});
                check_group(ctx, lins, "ragged 688 -> 176/100/13", {1, 2, 4}, seed++);
            }
            {
                const auto q = member(4128, 4100, bits, v.gs, v.act, seed++);
                const auto lins = upload_all(ctx, {q, member(4128, 36, bits, v.gs, v.act, seed++, &q)});
                check_group(ctx, lins, "two members 4128 -> 4100/36", {1, 4}, seed++);
            }
            {
                // K below 8 k-blocks: some warps own no k-block.
                const auto q = member(320, 98, bits, v.gs, v.act, seed++);
                const auto lins = upload_all(ctx, {q, member(320, 98, bits, v.gs, v.act, seed++, &q), member(320, 40, bits, v.gs, v.act, seed++, &q)});
                check_group(ctx, lins, "small K 320 -> 98/98/40", {1, 2, 4}, seed++);
            }
        }
        std::printf("  forward_group %lld-bit: fused == separate\n", static_cast<long long>(bits));
    }
}

TEST_CASE("forward_group with a threshold above 8 runs chunks of 8 rows and stays bit-identical", "[gpu][gptq][fused]") {
    const kernel_under_test kernel(GENERATE(as<std::string>{}, "v2", "v3", "v3-paired", "v3-l2pre"));
    device_context ctx;
    const auto q = member(512, 256, 4, 64, true, 300);
    std::vector<quantized_linear> qs = {q, member(512, 256, 4, 64, true, 301, &q), member(512, 72, 4, 64, true, 302, &q)};
    std::vector<std::unique_ptr<device_linear>> lins;
    for (const auto& l : qs) lins.push_back(make_gptq_device_linear(ctx, pack(l), 16));
    check_group(ctx, lins, "threshold 16", {1, 9, 12}, 303);
    const auto gate = make_gptq_device_linear(ctx, pack(member(512, 200, 4, 64, true, 304, &q)), 16);
    const auto up = make_gptq_device_linear(ctx, pack(member(512, 200, 4, 64, true, 305, &q)), 16);
    check_swiglu(ctx, *gate, *up, "threshold 16", {1, 9, 12}, 306);
}

TEST_CASE("forward_swiglu equals forward(gate), forward(up) and launch_swiglu bit for bit", "[gpu][gptq][fused]") {
    const kernel_under_test kernel(GENERATE(as<std::string>{}, "v2", "v3", "v3-paired", "v3-l2pre"));
    device_context ctx;
    std::uint64_t seed = 400;
    for (std::int64_t bits : {4, 2, 3, 8}) {
        {
            const auto g = member(4096, 11008, bits, 128, false, seed++);
            const auto lins = upload_all(ctx, {g, member(4096, 11008, bits, 128, false, seed++)});
            if (bits == 4)
                CHECK(lins[0]->kernel_path(1) == (kernel.v3 ? "gptq-fused-v3-4b" : "gptq-fused-mma-4b") + kernel.suffix);
            check_swiglu(ctx, *lins[0], *lins[1], "7B gate/up g128", {1, 2, 4}, seed++);
        }
        for (const variant& v : {variant{128, true, "g128-act"}, variant{32, true, "g32-act"}, variant{-1, false, "g-1"}}) {
            {
                const auto g = member(688, 176, bits, v.gs, v.act, seed++);
                const auto lins = upload_all(ctx, {g, member(688, 176, bits, v.gs, v.act, seed++, &g)});
                check_swiglu(ctx, *lins[0], *lins[1], "ragged 688 -> 176", {1, 2, 4}, seed++);
            }
            {
                const auto g = member(4128, 4100, bits, v.gs, v.act, seed++);
                const auto lins = upload_all(ctx, {g, member(4128, 4100, bits, v.gs, v.act, seed++, &g)});
                check_swiglu(ctx, *lins[0], *lins[1], "4128 -> 4100", {1, 4}, seed++);
            }
            {
                const auto g = member(320, 13, bits, v.gs, v.act, seed++);
                const auto lins = upload_all(ctx, {g, member(320, 13, bits, v.gs, v.act, seed++, &g)});
                check_swiglu(ctx, *lins[0], *lins[1], "320 -> 13", {1, 2, 4}, seed++);
            }
        }
        std::printf("  forward_swiglu %lld-bit: fused == separate + launch_swiglu\n", static_cast<long long>(bits));
    }
    {
        // 7B gate/up, 4-bit act-order (the per-slab path at a real size).
        const auto g = member(4096, 11008, 4, 32, true, seed++);
        const auto lins = upload_all(ctx, {g, member(4096, 11008, 4, 32, true, seed++, &g)});
        check_swiglu(ctx, *lins[0], *lins[1], "7B gate/up g32-act", {1, 2, 4}, seed++);
    }
}

TEST_CASE("the fused calls decline (return false, enqueue nothing) where they do not apply", "[gpu][gptq][fused]") {
    const kernel_under_test kernel(GENERATE(as<std::string>{}, "v2", "v3"));
    device_context ctx;
    const std::int64_t K = 512, N = 256, R = 16;
    const device_buffer xd = upload(ctx, to_half_bits(random_inputs(R, K, 600)));
    const auto q = member(K, N, 4, 128, true, 601);
    const auto base = make_gptq_device_linear(ctx, pack(q), 8);
    auto* fused = dynamic_cast<fused_linear*>(base.get());
    REQUIRE(fused != nullptr);
    device_buffer y0 = poisoned(ctx, R * N), y1 = poisoned(ctx, R * N), y2 = poisoned(ctx, R * N);
    void* ys[3] = {y0.get(), y1.get(), y2.get()};
    const auto declines = [&](device_linear& other, std::int64_t rows, const char* why) {
        device_linear* others[1] = {&other};
        INFO(why);
        CHECK_FALSE(fused->forward_group(others, 1, xd.get(), rows, ys, ctx.stream()));
        CHECK_FALSE(fused->forward_swiglu(other, xd.get(), rows, y0.get(), ctx.stream()));
        QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
        CHECK(still_poisoned(y0, R * N));
        CHECK(still_poisoned(y1, R * N));
    };
    {
        // The cases that do apply, to show the declines below are about the difference.
        const auto same = make_gptq_device_linear(ctx, pack(member(K, N, 4, 128, true, 602, &q)), 8);
        device_linear* others[1] = {same.get()};
        CHECK(fused->forward_group(others, 1, xd.get(), 1, ys, ctx.stream()));
        CHECK(fused->forward_swiglu(*same, xd.get(), 1, y2.get(), ctx.stream()));
        QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
        CHECK_FALSE(still_poisoned(y0, R * N));
        QB_CUDA_CHECK(cudaMemsetAsync(y0.get(), 0xff, static_cast<std::size_t>(R * N) * 2, ctx.stream()));
        QB_CUDA_CHECK(cudaMemsetAsync(y1.get(), 0xff, static_cast<std::size_t>(R * N) * 2, ctx.stream()));
        declines(*same, 9, "rows above the fused threshold (reconstruct + cuBLAS)");
        declines(*same, 16, "rows 16");
        // More members than the kernel takes.
        device_linear* four[3] = {same.get(), same.get(), same.get()};
        void* ys4[4] = {y0.get(), y1.get(), y2.get(), y2.get()};
        CHECK_FALSE(fused->forward_group(four, 3, xd.get(), 1, ys4, ctx.stream()));
        void* ys_null[2] = {y0.get(), nullptr};
        CHECK_FALSE(fused->forward_group(others, 1, xd.get(), 1, ys_null, ctx.stream()));
    }
    {
        const auto other = make_gptq_device_linear(ctx, pack(member(K, N, 3, 128, true, 603, &q)), 8);
        declines(*other, 1, "different bits");
    }
    {
        const auto other = make_gptq_device_linear(ctx, pack(member(K, N, 4, 64, true, 604)), 8);
        declines(*other, 1, "different group size");
    }
    {
        const auto other = make_gptq_device_linear(ctx, pack(member(K, N, 4, 128, true, 605)), 8);  // its own g_idx
        declines(*other, 1, "different act-order g_idx");
    }
    {
        const auto other = make_gptq_device_linear(ctx, pack(member(K, N, 4, 128, false, 606)), 8);
        declines(*other, 1, "act-order vs sequential");
    }
    {
        const auto other = make_gptq_device_linear(ctx, pack(member(K + 128, N, 4, 128, true, 607)), 8);
        declines(*other, 1, "different in_features");
    }
    {
        other_linear other(K, N);
        declines(other, 1, "another backend's linear");
    }
    {
        const auto other = make_gptq_device_linear(ctx, pack(member(K, N + 8, 4, 128, true, 608, &q)), 8);
        CHECK_FALSE(fused->forward_swiglu(*other, xd.get(), 1, y0.get(), ctx.stream()));  // gate and up differ in N
        device_linear* others[1] = {other.get()};
        CHECK(fused->forward_group(others, 1, xd.get(), 1, ys, ctx.stream()));  // fine for a group
        QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
    }
    {
        const env_choice v1("QBENCH_GPTQ_KERNEL", "v1");
        const auto a = make_gptq_device_linear(ctx, pack(q), 8);
        const auto b = make_gptq_device_linear(ctx, pack(member(K, N, 4, 128, true, 609, &q)), 8);
        QB_CUDA_CHECK(cudaMemsetAsync(y0.get(), 0xff, static_cast<std::size_t>(R * N) * 2, ctx.stream()));
        QB_CUDA_CHECK(cudaMemsetAsync(y1.get(), 0xff, static_cast<std::size_t>(R * N) * 2, ctx.stream()));
        device_linear* others[1] = {b.get()};
        CHECK_FALSE(dynamic_cast<fused_linear*>(a.get())->forward_group(others, 1, xd.get(), 1, ys, ctx.stream()));
        CHECK_FALSE(dynamic_cast<fused_linear*>(a.get())->forward_swiglu(*b, xd.get(), 1, y0.get(), ctx.stream()));
        declines(*b, 1, "v1 kernel member");
    }
    if (!kernel.v3) {
        const env_choice occ("QBENCH_GPTQ_OCC", "3");
        const auto b = make_gptq_device_linear(ctx, pack(member(K, N, 4, 128, true, 610, &q)), 8);
        declines(*b, 1, "the 3-CTA variant (a measurement knob) has no fused kernel");
    }
    {
        // Group size 48: slabs straddle groups, no fused kernel at all (reconstruct path for every batch).
        const auto a = make_gptq_device_linear(ctx, pack(member(K, N, 4, 48, false, 611)), 8);
        const auto b = make_gptq_device_linear(ctx, pack(member(K, N, 4, 48, false, 612)), 8);
        device_linear* others[1] = {b.get()};
        CHECK_FALSE(dynamic_cast<fused_linear*>(a.get())->forward_group(others, 1, xd.get(), 1, ys, ctx.stream()));
        CHECK_FALSE(dynamic_cast<fused_linear*>(a.get())->forward_swiglu(*b, xd.get(), 1, y0.get(), ctx.stream()));
        QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
        CHECK(still_poisoned(y0, R * N));
    }
}

namespace {

/// The shapes of the norm tests: hidden, k/v width, intermediate width (5120, 13B: the prologue's second round of 512
/// chunks, partly filled).
struct norm_dims {
    std::int64_t hidden, n_kv, inter;
};
constexpr norm_dims k_norm_dims[] = {{4096, 4096, 11008}, {512, 136, 328}, {5120, 640, 328}};

/// q/k/v and gate/up of one layer of shape `d` (seeds seed .. seed + 4), and their fused interfaces.
struct norm_layer {
    std::vector<std::unique_ptr<device_linear>> qkv, gu;
    fused_linear* fq = nullptr;
    fused_linear* fg = nullptr;
};
norm_layer upload_norm_layer(device_context& ctx, std::int64_t bits, const norm_dims& d, std::uint64_t seed) {
    const std::int64_t H = d.hidden;
    norm_layer L;
    L.qkv = upload_all(ctx, {member(H, H, bits, 128, false, seed), member(H, d.n_kv, bits, 128, false, seed + 1),
                             member(H, d.n_kv, bits, 128, false, seed + 2)});
    L.gu = upload_all(ctx, {member(H, d.inter, bits, 128, false, seed + 3), member(H, d.inter, bits, 128, false, seed + 4)});
    L.fq = dynamic_cast<fused_linear*>(L.qkv[0].get());
    L.fg = dynamic_cast<fused_linear*>(L.gu[0].get());
    REQUIRE((L.fq != nullptr && L.fg != nullptr));
    return L;
}

/// q, k, v and the SwiGLU product of `rows` rows of the residual stream `residual_host` ([R][hidden] fp16), twice, into
/// outputs of `R` rows poisoned first: `sep` from h = rms_norm(x) * w by the RMSNorm kernel, `fold` from x with the norm
/// folded into the same launches.
void run_separate_and_folded(device_context& ctx, const norm_layer& L, const norm_dims& d, std::int64_t R,
                             const std::vector<std::uint16_t>& residual_host, const device_buffer& norm_w, double eps,
                             std::int64_t rows, std::vector<device_buffer>& sep, std::vector<device_buffer>& fold) {
    INFO("hidden=" << d.hidden << " rows=" << rows);
    REQUIRE(L.fq->folds_norm(rows));
    const device_buffer x = upload(ctx, residual_host);
    device_buffer h = poisoned(ctx, R * d.hidden);
    launch_rms_norm(x.as<__half>(), nullptr, norm_w.as<const __half>(), eps, rows, d.hidden, h.as<__half>(),
                    launch_options{ctx.stream(), false});
    const fused_linear::normed_input in{x.get(), norm_w.get(), eps};
    for (std::int64_t n : {d.hidden, d.n_kv, d.n_kv, d.inter}) {
        sep.push_back(poisoned(ctx, R * n));
        fold.push_back(poisoned(ctx, R * n));
    }
    device_linear* kv[2] = {L.qkv[1].get(), L.qkv[2].get()};
    void* ys_sep[3] = {sep[0].get(), sep[1].get(), sep[2].get()};
    void* ys_fold[3] = {fold[0].get(), fold[1].get(), fold[2].get()};
    REQUIRE(L.fq->forward_group(kv, 2, h.get(), rows, ys_sep, ctx.stream()));
    REQUIRE(L.fg->forward_swiglu(*L.gu[1], h.get(), rows, sep[3].get(), ctx.stream()));
    REQUIRE(L.fq->forward_group_normed(kv, 2, in, rows, ys_fold, ctx.stream()));
    REQUIRE(L.fg->forward_swiglu_normed(*L.gu[1], in, rows, fold[3].get(), ctx.stream()));
    QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));  // x and h go out of scope
}

}  // namespace

TEST_CASE("v3's folded RMSNorm, residual add and norm in the last CTA equal launch_rms_norm and the separate launches bit for bit",
          "[gpu][gptq][fused][norm]") {
    const env_choice v3("QBENCH_GPTQ_KERNEL", "v3");
    device_context ctx;
    const double eps = 1e-6;
    std::uint64_t seed = 900;
    for (std::int64_t bits : {2, 3, 4, 8})
        for (const norm_dims& d : k_norm_dims) {
            const std::int64_t H = d.hidden, I = d.inter, R = 8;
            const norm_layer layer = upload_norm_layer(ctx, bits, d, seed);
            const auto down = upload_all(ctx, {member(I, H, bits, 128, false, seed + 5)});
            auto* fd = dynamic_cast<fused_linear*>(down[0].get());
            REQUIRE(fd != nullptr);
            const auto residual_host = to_half_bits(random_inputs(R, H, seed + 6));
            const device_buffer norm_w = upload(ctx, to_half_bits(random_inputs(1, H, seed + 7)));
            const device_buffer act = upload(ctx, to_half_bits(random_inputs(R, I, seed + 8)));
            seed += 10;
            for (std::int64_t rows : {1, 2, 3, 4, 8}) {  // 3: the prologue loads rows two at a time
                INFO(bits << "-bit hidden=" << H << " rows=" << rows);
                std::vector<device_buffer> sep, fold;
                run_separate_and_folded(ctx, layer, d, R, residual_host, norm_w, eps, rows, sep, fold);
                // The residual add: forward() into a delta then launch_rms_norm's add, against forward_residual.
                const device_buffer x_sep = upload(ctx, residual_host), x_fold = upload(ctx, residual_host);
                device_buffer delta = poisoned(ctx, R * H), h2 = poisoned(ctx, R * H);
                down[0]->forward(act.get(), rows, delta.get(), ctx.stream());
                launch_rms_norm(x_sep.as<__half>(), delta.as<const __half>(), norm_w.as<const __half>(), eps, rows, H,
                                h2.as<__half>(), launch_options{ctx.stream(), false});
                REQUIRE(fd->forward_residual(act.get(), rows, x_fold.get(), ctx.stream()));
                // And the next norm in the same launch (its last CTA), against launch_rms_norm of the updated stream:
                // twice, so the arrival counter is seen re-armed.
                const device_buffer x_norm = upload(ctx, residual_host);
                device_buffer h3 = poisoned(ctx, R * H);
                const fused_linear::normed_output next{h3.get(), norm_w.get(), eps};
                REQUIRE(fd->forward_residual_normed(act.get(), rows, x_norm.get(), next, ctx.stream()));
                const device_buffer x_norm2 = upload(ctx, residual_host);
                device_buffer h4 = poisoned(ctx, R * H);
                REQUIRE(fd->forward_residual_normed(act.get(), rows, x_norm2.get(), fused_linear::normed_output{h4.get(), norm_w.get(), eps},
                                                    ctx.stream()));
                QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
                {
                    const std::size_t used = static_cast<std::size_t>(rows * H);
                    const auto h_sep = download<std::uint16_t>(h2.get(), used);
                    INFO("the norm in down's last CTA");
                    CHECK(download<std::uint16_t>(x_norm.get(), static_cast<std::size_t>(R * H)) ==
                          download<std::uint16_t>(x_sep.get(), static_cast<std::size_t>(R * H)));
                    CHECK(download<std::uint16_t>(h3.get(), used) == h_sep);
                    CHECK(download<std::uint16_t>(h4.get(), used) == h_sep);
                    CHECK(std::none_of(h_sep.begin(), h_sep.end(), [](std::uint16_t v) { return (v & 0x7c00) == 0x7c00; }));
                }
                const char* names[4] = {"q", "k", "v", "swiglu act"};
                for (std::size_t i = 0; i < 4; ++i) {
                    const std::size_t n = static_cast<std::size_t>(R * (i == 0 ? H : i == 3 ? I : d.n_kv));
                    const auto a = download<std::uint16_t>(sep[i].get(), n), b = download<std::uint16_t>(fold[i].get(), n);
                    const std::size_t used = static_cast<std::size_t>(rows) * (n / static_cast<std::size_t>(R));
                    INFO(names[i]);
                    CHECK(a == b);
                    CHECK(std::none_of(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(used), [](std::uint16_t v) { return (v & 0x7c00) == 0x7c00; }));
                }
                const auto xs = download<std::uint16_t>(x_sep.get(), static_cast<std::size_t>(R * H));
                const auto xf = download<std::uint16_t>(x_fold.get(), static_cast<std::size_t>(R * H));
                CHECK(xs == xf);
                CHECK(xf != residual_host);  // the add really happened
            }
            std::printf("  folded norm %lld-bit hidden %lld: normed q/k/v, gate/up and the residual add == separate\n",
                        static_cast<long long>(bits), static_cast<long long>(H));
        }
    // Where the fold does not apply, the calls decline: v2 layers, act-order rows.
    const auto a = make_gptq_device_linear(ctx, pack(member(512, 64, 3, 32, false, 990)), 8);  // g32: v2
    const auto b = make_gptq_device_linear(ctx, pack(member(512, 64, 4, 128, true, 991)), 8);   // act-order
    for (const auto* l : {a.get(), b.get()}) {
        auto* f = dynamic_cast<const fused_linear*>(l);
        REQUIRE(f != nullptr);
        CHECK_FALSE(f->folds_norm(1));
    }
    CHECK_FALSE(dynamic_cast<fused_linear*>(a.get())->forward_residual(nullptr, 1, nullptr, ctx.stream()));
    CHECK_FALSE(dynamic_cast<fused_linear*>(a.get())->forward_residual_normed(nullptr, 1, nullptr, {}, ctx.stream()));
}

TEST_CASE("v3's scaled RMSNorm fold agrees with launch_rms_norm and the separate launches to fp16 rounding",
          "[gpu][gptq][fused][norm][scaled]") {
    // QBENCH_GPTQ_NORM_FOLD=scaled (a_args::norm_scaled): the kernels stage x * w and scale the outputs by the inverse
    // RMS, so they are not bit-identical to the RMSNorm kernel's h; they must agree to fp16 rounding. The residual is
    // scaled up so that its RMS is far from 1: a missing or wrong inverse RMS would be off by that factor.
    const env_choice v3("QBENCH_GPTQ_KERNEL", "v3");
    const env_choice scaled("QBENCH_GPTQ_NORM_FOLD", "scaled");
    device_context ctx;
    const double eps = 1e-6;
    std::uint64_t seed = 1900;
    for (std::int64_t bits : {2, 3, 4, 8})
        for (const norm_dims& d : k_norm_dims) {
            const std::int64_t H = d.hidden, I = d.inter, R = 8;
            const norm_layer layer = upload_norm_layer(ctx, bits, d, seed);
            CHECK(layer.fq->prefers_folded_norm());
            CHECK(layer.fq->folded_norm_form() == "-scaled");
            auto residual = random_inputs(R, H, seed + 6);
            for (float& v : residual) v *= 24.0f;
            const auto residual_host = to_half_bits(residual);
            const device_buffer norm_w = upload(ctx, to_half_bits(random_inputs(1, H, seed + 7)));
            seed += 10;
            for (std::int64_t rows : {1, 2, 3, 8}) {
                INFO(bits << "-bit hidden=" << H << " rows=" << rows);
                std::vector<device_buffer> sep, fold;
                run_separate_and_folded(ctx, layer, d, R, residual_host, norm_w, eps, rows, sep, fold);
                const char* names[4] = {"q", "k", "v", "swiglu act"};
                for (std::size_t i = 0; i < 4; ++i) {
                    const std::size_t n = static_cast<std::size_t>(R * (i == 0 ? H : i == 3 ? I : d.n_kv));
                    const std::size_t used = static_cast<std::size_t>(rows) * (n / static_cast<std::size_t>(R));
                    const auto a = download<std::uint16_t>(sep[i].get(), n), b = download<std::uint16_t>(fold[i].get(), n);
                    std::vector<double> ref(used);
                    double largest = 0;
                    for (std::size_t j = 0; j < used; ++j) {
                        ref[j] = half_to_float(a[j]);
                        largest = std::max(largest, std::abs(ref[j]));
                    }
                    const comparison c = compare(b, ref, used);
                    INFO(names[i] << ": relative L2 " << c.rel_l2 << ", largest difference " << c.max_abs << " of " << largest);
                    CHECK(c.nonfinite == 0);
                    CHECK(c.rel_l2 < 4e-3);
                    CHECK(c.max_abs <= 0.02 * largest);
                    CHECK(std::all_of(b.begin() + static_cast<std::ptrdiff_t>(used), b.end(), [](std::uint16_t v) { return v == 0xffff; }));
                }
            }
            std::printf("  scaled norm fold %lld-bit hidden %lld: q/k/v and gate/up agree with the separate path\n",
                        static_cast<long long>(bits), static_cast<long long>(H));
        }
}

TEST_CASE("the fused calls can be captured in a CUDA graph and replay identically", "[gpu][gptq][fused][graph]") {
    const kernel_under_test kernel(GENERATE(as<std::string>{}, "v2", "v3", "v3-paired", "v3-l2pre"));
    device_context ctx;
    const auto q = member(4096, 4096, 4, 128, false, 700);
    const auto qkv = upload_all(ctx, {q, member(4096, 4096, 4, 128, false, 701), member(4096, 4096, 4, 128, false, 702)});
    const auto gu = upload_all(ctx, {member(4096, 11008, 4, 128, false, 703), member(4096, 11008, 4, 128, false, 704)});
    const device_buffer xd = upload(ctx, to_half_bits(random_inputs(4, 4096, 705)));
    for (std::int64_t rows : {1, 4}) {
        device_buffer e[4] = {poisoned(ctx, 4 * 4096), poisoned(ctx, 4 * 4096), poisoned(ctx, 4 * 4096), poisoned(ctx, 4 * 11008)};
        device_buffer c[4] = {poisoned(ctx, 4 * 4096), poisoned(ctx, 4 * 4096), poisoned(ctx, 4 * 4096), poisoned(ctx, 4 * 11008)};
        device_linear* kv[2] = {qkv[1].get(), qkv[2].get()};
        const auto body = [&](device_buffer* out) {
            void* ys[3] = {out[0].get(), out[1].get(), out[2].get()};
            REQUIRE(dynamic_cast<fused_linear*>(qkv[0].get())->forward_group(kv, 2, xd.get(), rows, ys, ctx.stream()));
            REQUIRE(dynamic_cast<fused_linear*>(gu[0].get())->forward_swiglu(*gu[1], xd.get(), rows, out[3].get(), ctx.stream()));
        };
        body(e);  // eager
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        QB_CUDA_CHECK(cudaStreamBeginCapture(ctx.stream(), cudaStreamCaptureModeThreadLocal));
        body(c);
        QB_CUDA_CHECK(cudaStreamEndCapture(ctx.stream(), &graph));
        QB_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
        for (int i = 0; i < 3; ++i) QB_CUDA_CHECK(cudaGraphLaunch(exec, ctx.stream()));
        QB_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
        for (int i = 0; i < 4; ++i) {
            const std::size_t n = static_cast<std::size_t>(4 * (i == 3 ? 11008 : 4096));
            CHECK(download<std::uint16_t>(e[i].get(), n) == download<std::uint16_t>(c[i].get(), n));
        }
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
    }
}
