#pragma once
/// Kernel launch with optional programmatic dependent launch (PDL, sm_90+).
///
/// Why: a decode step is ~350 small kernels; between two of them the GPU normally idles while the first drains and
/// the second ramps up. With PDL the next kernel is launched while its predecessor still runs: it may do work that
/// does not depend on the predecessor (a GEMV loads its first weights, which never change) and then waits in
/// pdl_wait() until the predecessor has finished and its writes are visible. A kernel launched with PDL MUST call
/// pdl_wait() before it reads anything a previous kernel wrote and before it writes anything a previous kernel may
/// still read. Each kernel calls pdl_trigger() right after its wait, so at most one successor runs ahead -- except
/// the small kernels between two GEMVs (RMSNorm, decode attention: a few blocks), which may trigger BEFORE their wait
/// (launch_options::early_trigger, pdl_enter): the GEMV after them is then launched while the GEMV before them still
/// drains, and its blocks take the SM slots that free up and request their first weights there, instead of after
/// the small kernel has started. Safe: the early GEMV only reads its (constant) weights before its own pdl_wait(),
/// which waits for the small kernel, which waits for everything before it; and a kernel triggers only once all its
/// blocks run, so the early successor can never keep a block of an earlier kernel from becoming resident.
/// On older GPUs (and with PDL off) both are no-ops and the launch is an ordinary one: the same code is correct on
/// sm_75, sm_86 and sm_90.
#include "cuda/cuda_check.cuh"

#include <cuda_runtime.h>

#include <cstdlib>
#include <string>
#include <utility>

namespace qbench {

/// Where and how a launcher enqueues its kernel.
struct launch_options {
    cudaStream_t stream = nullptr;
    bool pdl = false;  ///< launch with programmatic stream serialization (only honoured on sm_90+)
    bool early_trigger = false;  ///< small kernels that honour it trigger their successor before their wait
    /// Every CTA resident at once, or the launch fails (cudaLaunchAttributeCooperative; valid in stream capture):
    /// what a persistent kernel with grid_barrier.cuh's barriers needs.
    bool cooperative = false;
};

#if defined(__CUDACC__)
/// Waits until the preceding kernel in the stream has completed and its memory operations are visible.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/// Lets the next kernel in the stream be launched (it still waits for this one in its own pdl_wait()).
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/// The PDL entry of a kernel: wait, then let the successor launch; with `early` (launch_options::early_trigger, only
/// for kernels of a few blocks between two GEMVs, see the top of this file) the successor may launch first.
__device__ __forceinline__ void pdl_enter(bool early) {
    if (early) pdl_trigger();
    pdl_wait();
    if (!early) pdl_trigger();
}

/// Launches `kernel<<<grid, block, smem, o.stream>>>(args...)`, with PDL when o.pdl; checks the launch.
template <class... Params, class... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem, const launch_options& o,
                   Args&&... args) {
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = o.stream;
    cudaLaunchAttribute attribute[2];
    unsigned count = 0;
    if (o.pdl) {
        attribute[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attribute[count++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (o.cooperative) {
        attribute[count].id = cudaLaunchAttributeCooperative;
        attribute[count++].val.cooperative = 1;
    }
    config.attrs = count > 0 ? attribute : nullptr;
    config.numAttrs = count;
    QB_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}
#endif  // __CUDACC__

/// A named-choice switch: the environment variable `name` as written, or "" where it is unset (the caller maps
/// anything it does not know to its default).
inline std::string string_switch_from_env(const char* name) {
    const char* v = std::getenv(name);
    return v == nullptr ? std::string() : std::string(v);
}

/// An integer measurement switch: the environment variable `name` as a whole decimal number within [lo, hi], else -1
/// (unset, empty or anything else: the caller keeps its default). lo must be >= 0.
inline int int_switch_from_env(const char* name, long lo, long hi) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return -1;
    char* end = nullptr;
    const long value = std::strtol(v, &end, 10);
    return *end == '\0' && value >= lo && value <= hi ? static_cast<int>(value) : -1;
}

/// The L1 / shared-memory split a backend's kernels should prefer (cudaFuncAttributePreferredSharedMemoryCarveout:
/// percent of the most shared memory an SM has), from the environment variable `name` (0..100); -1 where it is unset
/// or not a percentage (leave the attribute alone: the driver's choice). Why a switch: the split moves a streaming
/// kernel's time by 10-40% either way and no rule predicts which (backends/gptq/PERF_NOTES.md, tenth session); so far
/// the driver's own choice was the fastest wherever it was measured (GPTQ v3, bnb team kernels, fp16 GEMV).
inline int preferred_carveout_from_env(const char* name) { return int_switch_from_env(name, 0, 100); }

}  // namespace qbench
