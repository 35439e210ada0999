#pragma once
/// Pieces shared by the CPU and GPU drivers of quantize_model (gptq_model_quantize.cpp, gptq_model_quantize.cu).
/// Host-only header.
#include "backends/gptq/gptq_algorithm_ref.hpp"
#include "backends/gptq/gptq_artifact.hpp"
#include "backends/gptq/gptq_quantize.hpp"
#include "qbench/common/host_memory.hpp"
#include "qbench/common/tensor.hpp"
#include "qbench/engine/model_config.hpp"
#include "qbench/io/tensor_source.hpp"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace qbench::gptq {

/// The seven linears of a decoder layer, in AutoGPTQ's order.
inline constexpr linear_kind k_layer_linears[] = {linear_kind::q_proj,    linear_kind::k_proj,  linear_kind::v_proj,
                                                  linear_kind::o_proj,    linear_kind::gate_proj, linear_kind::up_proj,
                                                  linear_kind::down_proj};

/// AutoGPTQ's Llama "inside layer modules": [k, v, q] -> [o] -> [up, gate] -> [down] (true_sequential), or one group.
std::vector<std::vector<linear_kind>> sequential_groups(bool true_sequential);

/// Token ids [sequences][length]: BOS first, then ids in [3, vocab) from the counter RNG keyed by (seed, stream).
std::vector<std::int32_t> calibration_tokens(const model_config& model, std::int64_t sequences, std::int64_t length,
                                             std::uint64_t seed, const std::string& stream);

/// The algorithm settings of the options.
gptq_config algorithm_config(const gptq_quantize_options& options);
/// Held-out sequences for the quality figures.
std::int64_t quality_sequence_count(const gptq_quantize_options& options);

/// The fp16 weights the run reads. memory_plan "autogptq" stages every tensor of the model in host RAM up front
/// (accounted for the whole run); "streaming" reads each linear when it is quantized (accounted while held).
class weight_store {
public:
    weight_store(const tensor_source& source, const model_config& model, const std::string& memory_plan);
    /// fp16 bits of a linear's weight [N][K].
    std::vector<std::uint16_t> linear_f16(std::int64_t layer, linear_kind kind) const;
    /// The same as floats.
    std::vector<float> linear_f32(std::int64_t layer, linear_kind kind) const;
    /// Any tensor as fp16 bits (embeddings, norms).
    std::vector<std::uint16_t> tensor_f16(const std::string& name) const;
    const tensor_source& source() const { return m_source; }
    double read_seconds() const { return m_read_s; }

private:
    const tensor_source& m_source;
    bool m_staged = false;
    host_reservation m_hold;
    std::map<std::string, std::vector<std::uint16_t>> m_tensors;
    mutable double m_read_s = 0;
};

/// Writes quantized linears into the artifact on a background thread, so packing and disk writes overlap the next
/// linears' calibration and algorithm (on the GPU path the write of a 7B artifact would otherwise add minutes).
/// At most `max_pending` layers wait (accounted as host memory); an error of the writer thread is rethrown by the
/// next submit() or by finish().
class async_linear_writer {
public:
    explicit async_linear_writer(artifact_writer& writer, std::size_t max_pending = 4);
    ~async_linear_writer();
    async_linear_writer(const async_linear_writer&) = delete;
    async_linear_writer& operator=(const async_linear_writer&) = delete;
    /// Queues one layer; blocks while the queue is full. Returns the seconds it blocked.
    double submit(std::string prefix, quantized_linear q);
    /// Waits until everything is written; returns the seconds it waited. Rethrows a writer error.
    double finish();
    /// Seconds the writer thread spent writing.
    double busy_seconds() const;

private:
    struct task {
        std::string prefix;
        quantized_linear q;
        host_reservation hold;
    };
    void run();
    artifact_writer& m_writer;
    std::size_t m_max_pending;
    mutable std::mutex m_mutex;
    std::condition_variable m_changed;
    std::deque<task> m_queue;
    bool m_busy = false, m_stop = false;
    std::exception_ptr m_error;
    double m_busy_s = 0;
    std::thread m_thread;
};

/// Seconds since `t0`.
inline double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// The report of linear `name` (K inputs, N outputs) once the algorithm ran on it for `seconds`; the held-out errors
/// stay unmeasured (-1) until the caller measures them.
inline gptq_layer_report layer_report(const std::string& name, std::int64_t K, std::int64_t N, const gptq_result& r,
                                      double seconds) {
    gptq_layer_report lr;
    lr.name = name;
    lr.in_features = K;
    lr.out_features = N;
    lr.gptq_loss = r.loss;
    lr.damp_percent_used = r.damp_used;
    lr.seconds = seconds;
    return lr;
}

#if QBENCH_HAVE_CUDA
/// The GPU driver (gptq_model_quantize.cu): calibration forward on the GPU, the per-linear algorithm with
/// cuBLAS/cuSOLVER; writes every quantized linear through `writer` and fills the report's timings, peaks and layers.
void quantize_model_cuda(const model_config& model, const weight_store& weights, const gptq_quantize_options& options,
                         async_linear_writer& writer, gptq_quantize_report& report);
#endif

}  // namespace qbench::gptq
