// The host side of the fp16 GEMV (fp16_gemv.cuh): the public launches, which build a job (gemv_job), resolve the
// variant for the row count and device, check and size the folded RMSNorm, and launch the kernel they pick from
// fp16_gemv_mma.cu (tensor cores) or fp16_gemv_ffma.cu (fp32 FMA, scalar). Shared definitions: fp16_gemv_common.cuh.
#include "backends/fp16/fp16_gemv.cuh"
#include "backends/fp16/fp16_gemv_common.cuh"

#include "cuda/rms_norm.cuh"

#include "qbench/common/errors.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace qbench {

using namespace f16_gemv_detail;  // the job, the kernel pointer types and the pick_* functions (fp16_gemv_common.cuh)

namespace {

bool vectorizable(const void* w, const void* x, std::int64_t k) {
    return k % 8 == 0 && reinterpret_cast<std::uintptr_t>(w) % 16 == 0 && reinterpret_cast<std::uintptr_t>(x) % 16 == 0;
}

// Default output rows per warp of the fp32-FMA path: two rows give each lane more bytes in flight and amortize each
// activation load and conversion over more weights (PERF_NOTES.md, v2).
constexpr int k_default_rows_per_warp = 2;

struct device_facts {
    int cc = 0;
    int smem_optin = 0;  // dynamic shared memory a block may opt in to
};
// Compute capability of the current device, looked up once per device.
device_facts facts() {
    static device_facts cache[64];
    int dev = 0;
    cudaGetDevice(&dev);
    device_facts& f = cache[dev & 63];
    if (f.cc == 0) {
        int major = 0, minor = 0;
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
        cudaDeviceGetAttribute(&f.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
        f.cc = major * 10 + minor;
    }
    return f;
}

// Measured on the H200 at Llama-7B shapes (PERF_NOTES.md, v5): the mma kernel with contiguous K ranges and
// activations loaded a round ahead reads all of a 7B token's linears at 0.85 of the stream bandwidth at 1, 2 and 4
// rows (the fp32-FMA kernel: 0.81 at 1 row, 0.71 at 2, issue-bound beyond), so it serves every row count on sm_80+.
// QBENCH_GEMV_MMA_FROM sets the row count from which the mma kernel serves (A/B runs; ffma below it).
constexpr int k_default_k_split = 8;
std::int64_t mma_from_rows() {
    static const std::int64_t from = [] {
        const char* env = std::getenv("QBENCH_GEMV_MMA_FROM");
        return env != nullptr ? std::max(1, std::atoi(env)) : 1;
    }();
    return from;
}

resolved resolve(std::int64_t rows, const f16_gemv_variant& v) {
    f16_gemv_kind kind = v.kind;
    if (kind == f16_gemv_kind::automatic)
        kind = facts().cc >= 80 && rows >= mma_from_rows() ? f16_gemv_kind::mma : f16_gemv_kind::ffma;
    if (kind == f16_gemv_kind::mma && facts().cc < 80) kind = f16_gemv_kind::ffma;  // mma.m16n8k16 needs sm_80
    const int ks = v.k_split == 4 || v.k_split == 8 ? v.k_split : k_default_k_split;
    return {kind,
            ks,
            v.rows_per_warp == 1 || v.rows_per_warp == 4 ? v.rows_per_warp : k_default_rows_per_warp,
            v.pipelined,
            v.layout != f16_mma_layout::strided,
            v.prefetch_x != 0,
            v.prefetch_x != 0 && v.ahead_rounds != 1};
}

// Dynamic shared memory of a NORM launch: the normed rows and the norm weights.
std::size_t norm_smem_bytes(std::int64_t rows, std::int64_t k) {
    const int chunks = static_cast<int>(k / 8);
    return static_cast<std::size_t>(rows * norm_row_stride(chunks) + chunks) * sizeof(uint4);
}

// Static shared memory of the NORM kernels (partial tiles, the prologue's warp sums and inverse RMS) stays below this.
constexpr std::size_t k_norm_static_smem_bound = 8 * 1024;

// Whether a NORM launch of these sizes can run with this variant on this device.
bool norm_launchable(std::int64_t rows, std::int64_t k, const f16_gemv_variant& variant) {
    if (rows < 1 || rows > k_f16_gemv_max_rows || k <= 0 || k % 8 != 0 || k / 8 > k_rms_norm_max_chunks) return false;
    const resolved r = resolve(rows, variant);
    if (r.kind != f16_gemv_kind::mma) return false;
    const mma_kernel kernel = r.k_split == 8 ? pick_mma_norm<8>(r) : pick_mma_norm<4>(r);
    return kernel != nullptr &&
           norm_smem_bytes(rows, k) + k_norm_static_smem_bound <= static_cast<std::size_t>(facts().smem_optin);
}

// Kernel attributes are set once per kernel and device, not on every launch (launches may be captured into a CUDA
// graph): each setter keeps one of these and asks first(kernel) before setting.
class once_per_kernel_and_device {
public:
    bool first(mma_kernel kernel) {
        int dev = 0;
        QB_CUDA_CHECK(cudaGetDevice(&dev));
        const std::lock_guard<std::mutex> lock(m_mutex);
        for (const auto& d : m_done)
            if (d.first == kernel && d.second == dev) return false;
        m_done.emplace_back(kernel, dev);
        return true;
    }

private:
    std::mutex m_mutex;
    std::vector<std::pair<mma_kernel, int>> m_done;
};

// Lets a NORM kernel use all the dynamic shared memory the device allows (the attribute does not change occupancy by
// itself).
void allow_norm_smem(mma_kernel kernel) {
    static once_per_kernel_and_device once;
    if (!once.first(kernel)) return;
    cudaFuncAttributes attr{};
    QB_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
    QB_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       facts().smem_optin - static_cast<int>(attr.sharedSizeBytes)));
}

// QBENCH_FP16_CARVEOUT=0..100 (measurement only): the L1 / shared-memory split the mma GEMV kernels ask for
// (launch.cuh); unset leaves the driver's choice (measured faster: PERF_NOTES of backends/gptq, tenth session).
void prefer_carveout(mma_kernel kernel) {
    static const int carveout = preferred_carveout_from_env("QBENCH_FP16_CARVEOUT");
    static once_per_kernel_and_device once;
    if (carveout >= 0 && once.first(kernel))
        QB_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, carveout));
}

void check_rows(const char* what, std::int64_t rows) {
    if (rows < 1 || rows > k_f16_gemv_max_rows)
        throw error(std::string(what) + ": rows " + std::to_string(rows) + " outside [1, " +
                    std::to_string(k_f16_gemv_max_rows) + "]");
}

// Launches a vectorizable job: the grid covers job.total output rows (plain: all virtual rows; swiglu: n).
void launch_job(const gemv_job& job, const __half* x, std::int64_t rows, std::int64_t k, const launch_options& o,
                const f16_gemv_variant& variant) {
    const resolved r = resolve(rows, variant);
    const auto* x4 = reinterpret_cast<const uint4*>(x);
    const int chunks = static_cast<int>(k / 8);
    if (job.norm_w != nullptr) {
        // Callers check f16_gemv_norm_foldable first; this is the last line of defence.
        if (!norm_launchable(rows, k, variant))
            throw error("f16 gemv: the folded RMSNorm is not available for rows " + std::to_string(rows) + ", k " +
                        std::to_string(k) + " with this variant");
        const mma_kernel kernel = r.k_split == 8 ? pick_mma_norm<8>(r) : pick_mma_norm<4>(r);
        const std::size_t smem = norm_smem_bytes(rows, k);
        if (smem > 48 * 1024) allow_norm_smem(kernel);
        prefer_carveout(kernel);
        const std::int64_t tiles = job.swiglu ? (job.n + 7) / 8 : (job.total + 15) / 16;
        launch_kernel(kernel, dim3(static_cast<unsigned>(tiles)), dim3(r.k_split * 32), smem, o, job, x4,
                      static_cast<int>(rows), chunks);
        return;
    }
    if (r.kind == f16_gemv_kind::mma) {
        const mma_kernel kernel = r.k_split == 8 ? pick_mma<8>(r) : pick_mma<4>(r);
        prefer_carveout(kernel);
        const std::int64_t tiles = job.swiglu ? (job.n + 7) / 8 : (job.total + 15) / 16;
        launch_kernel(kernel, dim3(static_cast<unsigned>(tiles)), dim3(r.k_split * 32), 0, o, job, x4,
                      static_cast<int>(rows), chunks);
        return;
    }
    // A swiglu job pairs gate and up rows in one warp: it needs an even number of rows per warp.
    const int rpw = job.swiglu && r.rows_per_warp == 1 ? 2 : r.rows_per_warp;
    const std::int64_t warps = (job.total + rpw - 1) / rpw;
    const dim3 grid(static_cast<unsigned>((warps + k_warps_per_block - 1) / k_warps_per_block));
    launch_kernel(pick_ffma(rows, rpw, r.pipelined), grid, dim3(k_warps_per_block * 32), 0, o, job, x4, chunks);
}

}  // namespace

f16_gemv_variant default_f16_gemv_variant() {
    static const f16_gemv_variant v = [] {
        f16_gemv_variant d;
        if (const char* kind = std::getenv("QBENCH_GEMV")) {
            const std::string k = kind;
            d.kind = k == "mma" ? f16_gemv_kind::mma : (k == "ffma" ? f16_gemv_kind::ffma : f16_gemv_kind::automatic);
        }
        if (const char* ks = std::getenv("QBENCH_GEMV_KSPLIT")) d.k_split = std::atoi(ks);
        if (const char* rpw = std::getenv("QBENCH_GEMV_RPW")) {
            const int v = std::atoi(rpw);
            d.rows_per_warp = v == 1 || v == 4 ? v : 2;
        }
        if (const char* pipe = std::getenv("QBENCH_GEMV_PIPE")) d.pipelined = std::atoi(pipe) != 0;
        if (const char* layout = std::getenv("QBENCH_GEMV_LAYOUT"))
            d.layout = std::string(layout) == "strided" ? f16_mma_layout::strided : f16_mma_layout::contiguous;
        if (const char* pre = std::getenv("QBENCH_GEMV_XPRE")) d.prefetch_x = std::atoi(pre) != 0 ? 1 : 0;
        if (const char* ahead = std::getenv("QBENCH_GEMV_AHEAD")) d.ahead_rounds = std::atoi(ahead) == 1 ? 1 : 2;
        return d;
    }();
    return v;
}

std::string f16_gemv_path(const void* w, const void* x, std::int64_t rows, std::int64_t n, std::int64_t k,
                          f16_gemv_variant variant) {
    (void)n;
    if (!vectorizable(w, x, k)) return "gemv-f16-scalar";
    const resolved r = resolve(rows, variant);
    if (r.kind == f16_gemv_kind::mma)
        return "gemv-f16-mma-ks" + std::to_string(r.k_split) + (r.contiguous ? "-contig" : "-strided") +
               (r.prefetch_x ? (r.two_rounds_ahead ? "-xpre-ahead2" : "-xpre") : "");
    return std::string("gemv-f16-ffma-") + (r.pipelined || r.rows_per_warp == 4 ? "pipe" : "burst") + "-rpw" +
           std::to_string(r.rows_per_warp);
}

bool f16_gemv_fusable(const void* w, const void* x, std::int64_t rows, std::int64_t k) {
    return rows >= 1 && rows <= k_f16_gemv_max_rows && k <= INT32_MAX && vectorizable(w, x, k);
}

bool f16_gemv_norm_foldable(const void* w, const void* x, const void* norm_weight, std::int64_t rows, std::int64_t k,
                            f16_gemv_variant variant) {
    return f16_gemv_fusable(w, x, rows, k) && reinterpret_cast<std::uintptr_t>(norm_weight) % 16 == 0 &&
           norm_weight != nullptr && norm_launchable(rows, k, variant);
}

void launch_f16_gemv(const __half* w, const __half* x, __half* y, std::int64_t rows, std::int64_t n, std::int64_t k,
                     const launch_options& o, f16_gemv_variant variant) {
    check_rows("launch_f16_gemv", rows);
    if (n <= 0 || k <= 0) return;
    if (n > INT32_MAX || k > INT32_MAX) throw error("launch_f16_gemv: shape too large");
    if (!vectorizable(w, x, k)) {
        const dim3 grid(static_cast<unsigned>((n + k_warps_per_block - 1) / k_warps_per_block));
        launch_kernel(pick_scalar(rows), grid, dim3(k_warps_per_block * 32), 0, o, w, x, y, static_cast<int>(n),
                      static_cast<int>(k));
        return;
    }
    const f16_gemv_segment one{w, y, n};
    launch_f16_gemv_group(&one, 1, x, rows, k, o, variant);
}

namespace {

void set_norm(gemv_job& job, const f16_gemv_norm* norm) {
    job.norm_w = norm != nullptr ? reinterpret_cast<const uint4*>(norm->weight) : nullptr;
    job.eps = norm != nullptr ? norm->eps : 0.0;
    if (norm != nullptr && reinterpret_cast<std::uintptr_t>(norm->weight) % 16 != 0)
        throw error("f16 gemv: the RMSNorm weight is not 16-byte aligned");
}

}  // namespace

void launch_f16_gemv_group(const f16_gemv_segment* segments, int count, const __half* x, std::int64_t rows,
                           std::int64_t k, const launch_options& o, f16_gemv_variant variant,
                           const f16_gemv_norm* norm) {
    check_rows("launch_f16_gemv_group", rows);
    if (count < 1 || count > k_f16_gemv_max_segments)
        throw error("launch_f16_gemv_group: " + std::to_string(count) + " segments outside [1, " +
                    std::to_string(k_f16_gemv_max_segments) + "]");
    std::int64_t total = 0;
    for (int s = 0; s < count; ++s) {
        if (!f16_gemv_fusable(segments[s].w, x, rows, k) || segments[s].n < 0)
            throw error("launch_f16_gemv_group: unaligned pointers or k " + std::to_string(k) + " not a multiple of 8");
        total += segments[s].n;
    }
    if (total == 0 || k <= 0) return;
    if (total > INT32_MAX / 2) throw error("launch_f16_gemv_group: shape too large");
    // Segment s covers virtual rows [start_s, start_s + n_s): empty and unused segments cover none.
    gemv_job job{};
    const uint4* w[3];
    __half* y[3];
    int start[3];
    std::int64_t at = 0;
    const uint4* any = nullptr;
    for (int s = 0; s < count; ++s)
        if (segments[s].n > 0 && any == nullptr) any = reinterpret_cast<const uint4*>(segments[s].w);
    for (int s = 0; s < 3; ++s) {
        const bool used = s < count && segments[s].n > 0;
        w[s] = used ? reinterpret_cast<const uint4*>(segments[s].w) : any;  // never read when unused
        y[s] = used ? segments[s].y : nullptr;
        start[s] = static_cast<int>(at);
        if (s < count) at += segments[s].n;
    }
    job.w0 = w[0];
    job.w1 = w[1];
    job.w2 = w[2];
    job.y0 = y[0];
    job.y1 = y[1];
    job.y2 = y[2];
    job.start1 = start[1];
    job.start2 = start[2];
    job.total = static_cast<int>(total);
    job.n = 0;
    job.swiglu = false;
    set_norm(job, norm);
    launch_job(job, x, rows, k, o, variant);
}

void launch_f16_gemv_residual(const __half* w, const __half* a, __half* x, std::int64_t rows, std::int64_t n,
                              std::int64_t k, const launch_options& o, f16_gemv_variant variant) {
    check_rows("launch_f16_gemv_residual", rows);
    if (!f16_gemv_fusable(w, a, rows, k))
        throw error("launch_f16_gemv_residual: unaligned pointers or k " + std::to_string(k) + " not a multiple of 8");
    if (n <= 0 || k <= 0) return;
    if (n > INT32_MAX / 2) throw error("launch_f16_gemv_residual: shape too large");
    gemv_job job{};
    job.w0 = job.w1 = job.w2 = reinterpret_cast<const uint4*>(w);
    job.y0 = x;
    job.y1 = job.y2 = nullptr;
    job.total = static_cast<int>(n);
    job.start1 = job.start2 = job.total;
    job.residual = true;
    launch_job(job, a, rows, k, o, variant);
}

void launch_f16_gemv_swiglu(const __half* w_gate, const __half* w_up, const __half* x, __half* act,
                            std::int64_t rows, std::int64_t n, std::int64_t k, const launch_options& o,
                            f16_gemv_variant variant, const f16_gemv_norm* norm) {
    check_rows("launch_f16_gemv_swiglu", rows);
    if (!f16_gemv_fusable(w_gate, x, rows, k) || !f16_gemv_fusable(w_up, x, rows, k))
        throw error("launch_f16_gemv_swiglu: unaligned pointers or k " + std::to_string(k) + " not a multiple of 8");
    if (n <= 0 || k <= 0) return;
    if (n > INT32_MAX / 4) throw error("launch_f16_gemv_swiglu: shape too large");
    gemv_job job{};
    job.w0 = reinterpret_cast<const uint4*>(w_gate);
    job.w1 = reinterpret_cast<const uint4*>(w_up);
    job.w2 = job.w0;
    job.y0 = act;
    job.y1 = job.y2 = nullptr;
    job.total = static_cast<int>(2 * n);
    job.start1 = job.start2 = job.total;
    job.n = static_cast<int>(n);
    job.swiglu = true;
    set_norm(job, norm);
    launch_job(job, x, rows, k, o, variant);
}

}  // namespace qbench
