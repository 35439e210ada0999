#include "cuda/cuda_check.cuh"
#include "cuda/device_context.cuh"

#include "qbench/common/errors.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace qbench {

void device_buffer::reset() noexcept {
    if (m_ptr != nullptr && m_context != nullptr) m_context->release(m_ptr, m_bytes);
    m_ptr = nullptr;
    m_bytes = 0;
    m_context = nullptr;
}

namespace {

std::uint64_t used_device_bytes() {
    std::size_t free_b = 0, total_b = 0;
    QB_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return total_b - free_b;
}

std::string mib(std::uint64_t bytes) {
    return std::to_string(bytes >> 20) + " MiB";
}

}  // namespace

device_context::device_context(const device_context_options& options)
    : m_device(options.device), m_budget(options.budget_bytes) {
    int count = 0;
    QB_CUDA_CHECK(cudaGetDeviceCount(&count));
    if (options.device < 0 || options.device >= count)
        throw cuda_error("device " + std::to_string(options.device) + " does not exist (" + std::to_string(count) +
                         " CUDA devices)");
    QB_CUDA_CHECK(cudaSetDevice(m_device));
    QB_CUDA_CHECK(cudaFree(nullptr));  // creates the primary context now, so its cost is measured here
    QB_CUDA_CHECK(cudaGetDeviceProperties(&m_props, m_device));
    std::size_t free_b = 0, total_b = 0;
    QB_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    m_total = total_b;
    // Everything in use on the device right after the context exists: the context itself when this process is the
    // GPU's only user, as it is in a cell's child process.
    m_context_bytes = total_b - free_b;

    QB_CUDA_CHECK(cudaStreamCreateWithFlags(&m_stream, cudaStreamNonBlocking));
    const std::uint64_t before_libs = used_device_bytes();
    QB_CUBLAS_CHECK(cublasCreate(&m_cublas));
    QB_CUBLAS_CHECK(cublasLtCreate(&m_cublaslt));
    QB_CUBLAS_CHECK(cublasSetStream(m_cublas, m_stream));
    m_cublas_stream = m_stream;
    const std::uint64_t after_libs = used_device_bytes();
    m_library_bytes = after_libs > before_libs ? after_libs - before_libs : 0;
    m_device_peak = after_libs;

    try {
        if (m_budget && m_context_bytes + m_library_bytes > *m_budget)
            throw out_of_memory(memory_kind::vram, m_context_bytes + m_library_bytes, *m_budget,
                                "the CUDA context and libraries take " + mib(m_context_bytes + m_library_bytes) +
                                    ", more than the VRAM budget of " + mib(*m_budget));
        m_workspace_size = options.workspace_bytes;
        if (options.workspace_bytes > 0) {
            m_workspace = allocate(options.workspace_bytes, "cuBLAS workspace");
            QB_CUBLAS_CHECK(cublasSetWorkspace(m_cublas, m_workspace.get(), m_workspace.size()));
        }
    } catch (...) {
        // No destructor runs for a constructor that throws: release what exists so far.
        m_workspace.reset();
        cublasLtDestroy(m_cublaslt);
        cublasDestroy(m_cublas);
        cudaStreamDestroy(m_stream);
        throw;
    }
    const char* env = std::getenv("QBENCH_PDL");
    set_pdl_enabled(options.allow_pdl && !(env != nullptr && std::strcmp(env, "0") == 0));
}

device_context::~device_context() {
    if (m_staging != nullptr) QB_CUDA_CHECK_NOEXCEPT(cudaFreeHost(m_staging));
    m_stream_workspaces.clear();
    if (m_cublaslt != nullptr) cublasLtDestroy(m_cublaslt);
    if (m_cublas != nullptr) cublasDestroy(m_cublas);
    m_workspace.reset();
    if (m_stream != nullptr) QB_CUDA_CHECK_NOEXCEPT(cudaStreamDestroy(m_stream));
}

device_buffer device_context::allocate(std::uint64_t bytes, std::string_view what) {
    if (bytes == 0) return {};
    if (m_budget) {
        const std::uint64_t used = m_context_bytes + m_library_bytes + m_current;
        if (used + bytes > *m_budget) {
            const std::uint64_t available = *m_budget > used ? *m_budget - used : 0;
            throw out_of_memory(memory_kind::vram, bytes, available,
                                "VRAM budget exceeded allocating " + std::string(what) + ": " + mib(bytes) +
                                    " requested, " + mib(available) + " of the " + mib(*m_budget) +
                                    " budget available");
        }
    }
    void* ptr = nullptr;
    const cudaError_t err = cudaMalloc(&ptr, bytes);
    if (err == cudaErrorMemoryAllocation) {
        cudaGetLastError();  // an allocation failure is not sticky: clear it so the context stays usable
        std::size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        throw out_of_memory(memory_kind::vram, bytes, free_b,
                            "device out of memory allocating " + std::string(what) + ": " + mib(bytes) +
                                " requested, " + mib(free_b) + " free");
    }
    QB_CUDA_CHECK(err);
    m_current += bytes;
    m_peak = std::max(m_peak, m_current);
    sample_device_memory();
    return device_buffer(this, ptr, bytes);
}

void device_context::release(void* ptr, std::uint64_t bytes) noexcept {
    QB_CUDA_CHECK_NOEXCEPT(cudaFree(ptr));
    m_current -= std::min(bytes, m_current);
}

void device_context::upload(void* dst, const void* src, std::uint64_t bytes) {
    const auto t0 = std::chrono::steady_clock::now();
    QB_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, m_stream));
    QB_CUDA_CHECK(cudaStreamSynchronize(m_stream));
    m_upload_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    m_uploaded_bytes += bytes;
}

std::byte* device_context::staging(std::uint64_t bytes) {
    if (bytes <= m_staging_bytes) return m_staging;
    if (m_staging != nullptr) QB_CUDA_CHECK(cudaFreeHost(m_staging));
    m_staging = nullptr;
    m_staging_bytes = 0;
    m_staging_reservation.reset();
    const std::uint64_t want = (bytes + (1u << 20) - 1) & ~std::uint64_t{(1u << 20) - 1};
    m_staging_reservation = host_reservation(want, "pinned staging buffer for uploads");
    void* p = nullptr;
    const cudaError_t err = cudaHostAlloc(&p, want, cudaHostAllocDefault);
    if (err == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        m_staging_reservation.reset();
        throw out_of_memory(memory_kind::host, want, 0, "cannot pin " + mib(want) + " of host memory for staging");
    }
    QB_CUDA_CHECK(err);
    m_staging = static_cast<std::byte*>(p);
    m_staging_bytes = want;
    return m_staging;
}

cublasHandle_t device_context::cublas_on(cudaStream_t stream) {
    if (stream != m_cublas_stream) {
        const device_buffer* ws = &m_workspace;
        if (stream != m_stream) {
            auto it = std::find_if(m_stream_workspaces.begin(), m_stream_workspaces.end(),
                                   [&](const auto& e) { return e.first == stream; });
            if (it == m_stream_workspaces.end()) {
                m_stream_workspaces.emplace_back(stream, allocate(m_workspace_size, "cuBLAS workspace (second stream)"));
                it = m_stream_workspaces.end() - 1;
            }
            ws = &it->second;
        }
        QB_CUBLAS_CHECK(cublasSetStream(m_cublas, stream));
        if (*ws) QB_CUBLAS_CHECK(cublasSetWorkspace(m_cublas, ws->get(), ws->size()));
        m_cublas_stream = stream;
    }
    return m_cublas;
}

void device_context::forget_stream(cudaStream_t stream) noexcept {
    if (stream == m_stream) return;
    if (m_cublas_stream == stream) {
        cublasSetStream(m_cublas, m_stream);
        if (m_workspace) cublasSetWorkspace(m_cublas, m_workspace.get(), m_workspace.size());
        m_cublas_stream = m_stream;
    }
    std::erase_if(m_stream_workspaces, [&](const auto& e) { return e.first == stream; });
}

void device_context::sample_device_memory() {
    std::size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) m_device_peak = std::max<std::uint64_t>(m_device_peak, total_b - free_b);
}

device_memory_figures device_context::memory() const {
    device_memory_figures f;
    f.allocated_current = m_current;
    f.allocated_peak = m_peak;
    f.device_peak = m_device_peak;
    f.context = m_context_bytes;
    f.libraries = m_library_bytes;
    f.workspace = m_workspace.size();
    for (const auto& e : m_stream_workspaces) f.workspace += e.second.size();
    f.device_total = m_total;
    f.budget = m_budget;
    return f;
}

std::uint64_t device_context::available_bytes() const {
    if (m_budget) {
        const std::uint64_t used = m_context_bytes + m_library_bytes + m_current;
        return *m_budget > used ? *m_budget - used : 0;
    }
    std::size_t free_b = 0, total_b = 0;
    QB_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return free_b;
}

void device_context::reset_peaks() {
    m_peak = m_current;
    m_device_peak = used_device_bytes();
}

nlohmann::json device_context::gpu_environment() const {
    int driver = 0, runtime = 0, sm_clock_khz = 0, mem_clock_khz = 0;
    QB_CUDA_CHECK(cudaDriverGetVersion(&driver));
    QB_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
    QB_CUDA_CHECK(cudaDeviceGetAttribute(&sm_clock_khz, cudaDevAttrClockRate, m_device));
    QB_CUDA_CHECK(cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, m_device));
    int cublas_version = 0;
    cublasGetVersion(m_cublas, &cublas_version);
    char pci[32] = {};
    cudaDeviceGetPCIBusId(pci, sizeof pci, m_device);
    std::string uuid;
    static const char* hex = "0123456789abcdef";
    for (int i = 0; i < 16; ++i) {
        const auto b = static_cast<unsigned char>(m_props.uuid.bytes[i]);
        uuid += hex[b >> 4];
        uuid += hex[b & 15];
    }
    auto version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); };
    // Peak memory bandwidth from the datasheet figures the driver reports: DDR, so two transfers per clock.
    const double peak_gbs = 2.0 * mem_clock_khz * 1e3 * (m_props.memoryBusWidth / 8.0) / 1e9;
    return nlohmann::json{
        {"gpu_name", m_props.name},
        {"gpu_uuid", "GPU-" + uuid},
        {"pci_bus_id", pci},
        {"compute_capability", std::to_string(m_props.major) + "." + std::to_string(m_props.minor)},
        {"multiprocessors", m_props.multiProcessorCount},
        {"l2_cache_bytes", m_props.l2CacheSize},
        {"shared_memory_per_block_optin_bytes", m_props.sharedMemPerBlockOptin},
        {"memory_total_bytes", m_total},
        {"memory_bus_width_bits", m_props.memoryBusWidth},
        {"memory_clock_khz", mem_clock_khz},
        {"sm_clock_max_khz", sm_clock_khz},
        {"memory_peak_bandwidth_gbs_datasheet", peak_gbs},
        {"ecc_enabled", m_props.ECCEnabled != 0},
        {"driver_version", version(driver)},
        {"cuda_runtime_version", version(runtime)},
        {"cublas_version", cublas_version},
        {"context_bytes", m_context_bytes},
        {"library_bytes", m_library_bytes},
        {"pdl_enabled", m_pdl},
    };
}

namespace {

// Reads the buffer once with 16-byte loads, four in flight per thread; the XOR result is stored only when it
// equals a constant no fill produces, so the loads stay alive without a write stream.
__global__ void stream_read_kernel(const uint4* __restrict__ data, std::size_t n, unsigned* sink) {
    const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
    std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    uint4 acc = make_uint4(0, 0, 0, 0);
    for (; i + 3 * stride < n; i += 4 * stride) {
        const uint4 a = data[i], b = data[i + stride], c = data[i + 2 * stride], d = data[i + 3 * stride];
        acc.x ^= a.x ^ b.x ^ c.x ^ d.x;
        acc.y ^= a.y ^ b.y ^ c.y ^ d.y;
        acc.z ^= a.z ^ b.z ^ c.z ^ d.z;
        acc.w ^= a.w ^ b.w ^ c.w ^ d.w;
    }
    for (; i < n; i += stride) {
        const uint4 a = data[i];
        acc.x ^= a.x;
        acc.y ^= a.y;
        acc.z ^= a.z;
        acc.w ^= a.w;
    }
    const unsigned r = acc.x ^ acc.y ^ acc.z ^ acc.w;
    if (r == 0x9E3779B9u) *sink = r + i;
}

}  // namespace

double device_context::measure_stream_bandwidth_gbs() {
    const std::uint64_t peak_before = m_peak, device_peak_before = m_device_peak;
    const std::uint64_t available = available_bytes();
    std::uint64_t bytes = available >= (16ull << 30) ? (4ull << 30) : std::min<std::uint64_t>(2ull << 30, available / 2);
    bytes &= ~std::uint64_t{0xffff};
    if (bytes < (64ull << 20)) throw out_of_memory(memory_kind::vram, 64ull << 20, available, "too little memory to measure the stream bandwidth");
    double median_gbs = 0;
    {
        device_buffer buf = allocate(bytes, "stream bandwidth scratch");
        device_buffer sink = allocate(256, "stream bandwidth sink");
        // Not zeros: a constant byte pattern the XOR cannot shortcut.
        QB_CUDA_CHECK(cudaMemsetAsync(buf.get(), 0x5a, bytes, m_stream));
        const std::size_t n = bytes / sizeof(uint4);
        const int threads = 512;
        const int blocks = m_props.multiProcessorCount * (m_props.maxThreadsPerMultiProcessor / threads);
        cudaEvent_t start, stop;
        QB_CUDA_CHECK(cudaEventCreate(&start));
        QB_CUDA_CHECK(cudaEventCreate(&stop));
        std::vector<double> gbs;
        for (int rep = 0; rep < 18; ++rep) {
            QB_CUDA_CHECK(cudaEventRecord(start, m_stream));
            stream_read_kernel<<<blocks, threads, 0, m_stream>>>(buf.as<const uint4>(), n, sink.as<unsigned>());
            QB_CUDA_CHECK_LAUNCH(m_stream);
            QB_CUDA_CHECK(cudaEventRecord(stop, m_stream));
            QB_CUDA_CHECK(cudaEventSynchronize(stop));
            float ms = 0;
            QB_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
            if (rep >= 3) gbs.push_back(static_cast<double>(bytes) / (ms * 1e-3) / 1e9);  // 3 warm-ups
        }
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
        std::sort(gbs.begin(), gbs.end());
        median_gbs = gbs[gbs.size() / 2];
    }
    m_peak = peak_before;
    m_device_peak = device_peak_before;
    return median_gbs;
}

}  // namespace qbench
