// How GPTQ layers are launched (gptq_launch_plan.cuh says what each function decides and why).
#include "backends/gptq/gptq_launch_plan.cuh"
#include "backends/gptq/gptq_gemm.cuh"
#include "backends/gptq/gptq_stream_load.cuh"

#include "cuda/cuda_check.cuh"
#include "cuda/launch.cuh"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

namespace qbench::gptq {

int resident_ctas(const device_context& context, int bits, int rows) {
    static std::mutex mutex;
    static std::map<std::array<int, 3>, int> cache;
    const std::array<int, 3> key{context.device(), bits, rows};
    std::lock_guard lock(mutex);
    const auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    int per_sm = 0;
    QB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, fused_kernel_for(bits, rows), k_fused_threads, 0));
    const int total = std::max(1, per_sm) * context.properties().multiProcessorCount;
    cache[key] = total;
    return total;
}

kernel_version chosen_kernel(const layout_plan& plan) {
    const std::string choice = string_switch_from_env("QBENCH_GPTQ_KERNEL");
    if (choice == "v1") return kernel_version::v1;
    if (choice == "v2" || !a_layout_supported(plan)) return kernel_version::v2;
    return kernel_version::v3;
}

int resident_per_sm(const device_context& context, const void* kernel, int threads, std::size_t smem) {
    static std::mutex mutex;
    static std::map<std::tuple<int, const void*, int, std::size_t>, int> cache;
    const auto key = std::make_tuple(context.device(), kernel, threads, smem);
    std::lock_guard lock(mutex);
    const auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    int per_sm = 0;
    QB_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
    per_sm = std::max(1, per_sm);
    cache[key] = per_sm;
    return per_sm;
}

int a_tiles_guess(const device_context& context, int mtiles) {
    const int sms = context.properties().multiProcessorCount;
    return std::min(k_a_max_tiles, std::max(1, (mtiles + 2 * sms - 1) / (2 * sms)) + 1);
}

namespace {
/// CTAs per SM a launch is planned for: QBENCH_GPTQ_CTAS_PER_SM where set (read at each plan: tests change it within
/// one process), else the kernel's occupancy (resident_per_sm).
int planned_per_sm(const device_context& context, const void* kernel, int threads, std::size_t smem) {
    if (const char* v = std::getenv("QBENCH_GPTQ_CTAS_PER_SM"))
        if (const int per_sm = std::atoi(v); per_sm > 0) return per_sm;
    return resident_per_sm(context, kernel, threads, smem);
}
}  // namespace

int a_resident(const device_context& context, const void* kernel, std::size_t smem) {
    return planned_per_sm(context, kernel, k_a_threads, smem) * context.properties().multiProcessorCount;
}

int a_ctas(const device_context& context, int bits, bool bypass_l1, int mtiles, int rows, int kblocks) {
    const int resident = a_resident(context, a_kernel_for(bits, bypass_l1), a_smem_bytes(a_tiles_guess(context, mtiles), rows, kblocks));
    int ctas = std::max(std::min(mtiles, resident), (mtiles + k_a_max_tiles - 1) / k_a_max_tiles);
    while (ctas < mtiles && a_smem_bytes((mtiles + ctas - 1) / ctas, rows, kblocks) > k_a_max_smem) ++ctas;
    return ctas;
}

bool gptq_fusion_enabled(bool v3, std::int64_t bits) {
    const char* v = std::getenv("QBENCH_GPTQ_FUSE");
    if (v == nullptr || *v == '\0') return v3 || bits == 8;
    return std::string(v) == "1";
}

void a_share_ctas(int resident, int rows, int kblocks, a_args& a) {
    const int members = a.members;
    auto per_cta = [&](int i, int ctas) { return (a.m[i].mtiles + ctas - 1) / ctas; };
    int given = 0;
    for (int i = 0; i < members; ++i) {
        a.m[i].ctas = 1;
        while (a.m[i].ctas < a.m[i].mtiles && (per_cta(i, a.m[i].ctas) > k_a_max_tiles ||
                                               a_smem_bytes(per_cta(i, a.m[i].ctas), rows, kblocks) > k_a_max_smem))
            ++a.m[i].ctas;
        given += a.m[i].ctas;
    }
    while (given < resident) {
        int best = -1;
        for (int i = 0; i < members; ++i)
            if (a.m[i].ctas < a.m[i].mtiles && (best < 0 || per_cta(i, a.m[i].ctas) > per_cta(best, a.m[best].ctas))) best = i;
        if (best < 0) break;  // every mtile has its own CTA
        ++a.m[best].ctas;
        ++given;
    }
}

mma_variant chosen_mma_variant() {
    const char* v = std::getenv("QBENCH_GPTQ_OCC");
    if (v != nullptr && std::string(v) == "3") return mma_variant::occ3;
    return weight_loads_bypass_l1() ? mma_variant::occ2_l1na : mma_variant::occ2;
}

int mma_ctas(const device_context& context, int bits, bool block_groups, mma_variant variant, int ntiles, int rows) {
    const int sms = context.properties().multiProcessorCount;
    const int guess = std::min(k_mma_max_tiles, std::max(1, (ntiles + 2 * sms - 1) / (2 * sms)));
    const int per_sm = planned_per_sm(context, mma_kernel_for(bits, block_groups, variant), k_mma_threads,
                                      mma_smem_bytes(guess + 1, rows));
    const int ctas = std::min(ntiles, per_sm * sms);
    return std::max(ctas, (ntiles + k_mma_max_tiles - 1) / k_mma_max_tiles);
}

int mma_fused_ctas(const device_context& context, const void* kernel, mma_fusion mode, int work, int rows) {
    const int sms = context.properties().multiProcessorCount;
    const int max_work = mma_fused_max_work(mode);
    const int guess = std::min(max_work, std::max(1, (work + 2 * sms - 1) / (2 * sms)));
    const int per_sm = planned_per_sm(context, kernel, k_mma_threads, mma_fused_smem_bytes(mode, guess, rows));
    const int ctas = std::min(work, per_sm * sms);
    return std::max(ctas, (work + max_work - 1) / max_work);
}

}  // namespace qbench::gptq
