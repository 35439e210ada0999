// quantize_model: the driver shared by both devices, the CPU path (the CPU engine's layer forward with a linear
// observer), the report, and the artifact cache.
#include "backends/fp16/fp16_backend.hpp"
#include "backends/gptq/gptq_cpu_dot.hpp"
#include "backends/gptq/gptq_format.hpp"
#include "backends/gptq/gptq_linear.hpp"
#include "backends/gptq/gptq_quantize_internal.hpp"

#include "qbench/common/counter_rng.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/common/half.hpp"
#include "qbench/engine/cpu_forward.hpp"
#include "qbench/engine/cpu_model.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

namespace qbench::gptq {

namespace {
std::size_t sz(std::int64_t v) { return static_cast<std::size_t>(v); }
using clock_type = std::chrono::steady_clock;

std::uint64_t peak_rss_bytes() {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    return static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;
}

std::unique_ptr<cpu_linear>& linear_slot(cpu_layer& layer, linear_kind k) {
    switch (k) {
    case linear_kind::q_proj: return layer.q_proj;
    case linear_kind::k_proj: return layer.k_proj;
    case linear_kind::v_proj: return layer.v_proj;
    case linear_kind::o_proj: return layer.o_proj;
    case linear_kind::gate_proj: return layer.gate_proj;
    case linear_kind::up_proj: return layer.up_proj;
    case linear_kind::down_proj: return layer.down_proj;
    default: throw std::invalid_argument("gptq: not a decoder-layer linear");
    }
}

/// Which linears read the same input: q/k/v share the attention input, gate/up the MLP input.
linear_kind input_owner(linear_kind k) {
    if (k == linear_kind::k_proj || k == linear_kind::v_proj) return linear_kind::q_proj;
    if (k == linear_kind::up_proj) return linear_kind::gate_proj;
    return k;
}

void write_json_atomically(const std::filesystem::path& file, const nlohmann::ordered_json& j) {
    const auto tmp = file.string() + ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << j.dump(2) << "\n";
        if (!out) throw error("cannot write " + tmp);
    }
    std::filesystem::rename(tmp, file);
}

/// The fp16 weights of the calibration forward as floats, multiplied with gptq_cpu_dot.hpp's float dot product: the
/// engine's own fp16 linear sums in double in index order, which is exact to the last bit but several times slower,
/// and calibration needs activations, not bit-exact logits (outputs are still rounded to fp16).
class calibration_linear final : public cpu_linear {
public:
    calibration_linear(std::vector<float> w, std::int64_t in, std::int64_t out) : m_w(std::move(w)), m_in(in), m_out(out) {}
    std::int64_t in_features() const override { return m_in; }
    std::int64_t out_features() const override { return m_out; }
    std::uint64_t weight_bytes() const override { return static_cast<std::uint64_t>(m_in * m_out) * 2; }
    std::string format_name() const override { return "f16"; }
    void forward(const float* x, std::int64_t rows, float* y) const override {
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t n = 0; n < m_out; ++n) y[r * m_out + n] = round_to_half(dot_f32(x + r * m_in, &m_w[sz(n * m_in)], m_in));
    }

private:
    std::vector<float> m_w;
    std::int64_t m_in, m_out;
};

/// Thrown by an observer once it has the inputs it needs, so a calibration pass does not compute the rest of the
/// layer (the engine's forward holds everything in vectors, so unwinding is clean).
struct stop_forward {};

/// The stage order of the linears' inputs: attention input, attention output, MLP input, SwiGLU output.
int stage_rank(linear_kind k) {
    switch (k) {
    case linear_kind::o_proj: return 1;
    case linear_kind::gate_proj:
    case linear_kind::up_proj: return 2;
    case linear_kind::down_proj: return 3;
    default: return 0;
    }
}

/// The CPU path: the engine's reference layer forward, Hessians from its linear observer.
void quantize_model_cpu(const model_config& config, const weight_store& weights, const gptq_quantize_options& options,
                        async_linear_writer& writer, gptq_quantize_report& report) {
    const auto t_read = clock_type::now();
    cell_spec fp16_cell;
    fp16_cell.model = config.name;
    fp16_cell.framework = "fp16";
    fp16_cell.bits = 16;
    const auto fp16 = make_fp16_backend();
    host_reservation model_hold(weights.source().total_bytes(), "gptq (cpu): fp16 model for the reference forward");
    cpu_model model = load_cpu_model(config, weights.source(), *fp16, fp16_cell);
    for (std::int64_t l = 0; l < config.num_layers; ++l)
        for (linear_kind k : k_layer_linears)
            linear_slot(model.layers[sz(l)], k) = std::make_unique<calibration_linear>(
                weights.linear_f32(l, k), linear_in_features(config, k), linear_out_features(config, k));
    report.read_s += seconds_since(t_read);

    const std::int64_t T = options.gptq.calibration_seq_len;
    const std::int64_t S = options.gptq.calibration_samples;
    const std::int64_t S_ho = quality_sequence_count(options);
    const std::int64_t H = config.hidden_size;
    host_reservation act_hold(static_cast<std::uint64_t>((S + S_ho) * T * H) * sizeof(float) * 2,
                              "gptq (cpu): calibration activations");
    std::vector<float> hidden = embed_tokens(model, calibration_tokens(config, S, T, options.seed, "gptq-calibration"));
    std::vector<float> held_out;
    if (S_ho > 0) held_out = embed_tokens(model, calibration_tokens(config, S_ho, T, options.seed, "gptq-heldout"));
    const gptq_config cfg = algorithm_config(options);
    constexpr std::int64_t chunk = 8;  // sequences per forward call: bounds the attention scratch

    for (std::int64_t l = 0; l < config.num_layers; ++l) {
        for (const auto& group : sequential_groups(options.true_sequential)) {
            // Hessians of the group's distinct inputs from the calibration sequences.
            const auto t_fwd = clock_type::now();
            std::map<linear_kind, hessian_accumulator> hess;
            std::map<linear_kind, std::vector<float>> held_x;
            linear_kind last = group.front();
            for (linear_kind k : group) {
                if (input_owner(k) == k) hess.emplace(k, hessian_accumulator(linear_in_features(config, k)));
                if (stage_rank(k) > stage_rank(last)) last = k;
            }
            last = input_owner(last);
            for (std::int64_t s0 = 0; s0 < S; s0 += chunk) {
                const std::int64_t n = std::min(chunk, S - s0);
                std::vector<float> h(hidden.begin() + s0 * T * H, hidden.begin() + (s0 + n) * T * H);
                const linear_observer obs = [&](std::int64_t, linear_kind kind, const float* x, std::int64_t rows,
                                                std::int64_t in) {
                    auto it = hess.find(kind);
                    if (it != hess.end()) it->second.add_batch(std::span<const float>(x, sz(rows * in)), rows, n);
                    if (kind == last) throw stop_forward{};
                };
                try {
                    cpu_layer_forward(model, l, h, T, &obs);
                } catch (const stop_forward&) {
                }
            }
            if (S_ho > 0) {
                std::vector<float> h = held_out;
                const linear_observer obs = [&](std::int64_t, linear_kind kind, const float* x, std::int64_t rows,
                                                std::int64_t in) {
                    if (hess.count(kind)) held_x[kind].assign(x, x + rows * in);
                    if (kind == last) throw stop_forward{};
                };
                try {
                    cpu_layer_forward(model, l, h, T, &obs);
                } catch (const stop_forward&) {
                }
            }
            report.forward_s += seconds_since(t_fwd);

            for (linear_kind k : group) {
                const std::string prefix = linear_prefix(l, k);
                const std::int64_t K = linear_in_features(config, k), N = linear_out_features(config, k);
                const auto w = weights.linear_f32(l, k);
                const auto t_alg = clock_type::now();
                const auto hmat = hess.at(input_owner(k)).finalize();
                gptq_result r = gptq_quantize_ref(w, N, K, hmat, cfg);
                gptq_layer_report lr = layer_report(prefix, K, N, r, seconds_since(t_alg));
                report.algorithm_s += lr.seconds;
                if (S_ho > 0) {
                    const auto t_q = clock_type::now();
                    const auto& x = held_x.at(input_owner(k));
                    const auto rtn = rtn_quantize_ref(w, N, K, cfg.bits, cfg.group_size, cfg.sym);
                    lr.gptq_relative_error = relative_output_error(w, r.q.dequantize(), N, K, x, S_ho * T);
                    lr.rtn_relative_error = relative_output_error(w, rtn.dequantize(), N, K, x, S_ho * T);
                    report.quality_s += seconds_since(t_q);
                }
                report.layers.push_back(lr);
                linear_slot(model.layers[sz(l)], k) = make_gptq_cpu_linear(r.q, 0);
                report.write_s += writer.submit(prefix, std::move(r.q));
            }
        }
        // The layer's output with every linear quantized: the next layer's input.
        const auto t_out = clock_type::now();
        for (std::int64_t s0 = 0; s0 < S; s0 += chunk) {
            const std::int64_t n = std::min(chunk, S - s0);
            std::vector<float> h(hidden.begin() + s0 * T * H, hidden.begin() + (s0 + n) * T * H);
            cpu_layer_forward(model, l, h, T, nullptr);
            std::copy(h.begin(), h.end(), hidden.begin() + s0 * T * H);
        }
        if (S_ho > 0) cpu_layer_forward(model, l, held_out, T, nullptr);
        report.forward_s += seconds_since(t_out);
        if (options.on_layer) options.on_layer(l + 1, config.num_layers, report.read_s + report.forward_s + report.algorithm_s + report.quality_s + report.write_s);
    }
}
}  // namespace

async_linear_writer::async_linear_writer(artifact_writer& writer, std::size_t max_pending)
    : m_writer(writer), m_max_pending(std::max<std::size_t>(1, max_pending)), m_thread([this] { run(); }) {}

async_linear_writer::~async_linear_writer() {
    {
        std::lock_guard lock(m_mutex);
        m_stop = true;
    }
    m_changed.notify_all();
    m_thread.join();
}

void async_linear_writer::run() {
    std::unique_lock lock(m_mutex);
    for (;;) {
        m_changed.wait(lock, [&] { return m_stop || !m_queue.empty(); });
        if (m_queue.empty()) return;  // stopping and drained
        task t = std::move(m_queue.front());
        m_queue.pop_front();
        m_busy = true;
        const bool skip = m_error != nullptr;  // after a failure, drop the rest
        lock.unlock();
        const auto t0 = clock_type::now();
        std::exception_ptr err;
        if (!skip) {
            try {
                m_writer.write_linear(t.prefix, t.q);
            } catch (...) {
                err = std::current_exception();
            }
        }
        t = task{};
        lock.lock();
        m_busy_s += seconds_since(t0);
        if (err && !m_error) m_error = err;
        m_busy = false;
        m_changed.notify_all();
    }
}

double async_linear_writer::submit(std::string prefix, quantized_linear q) {
    const auto t0 = clock_type::now();
    host_reservation hold(static_cast<std::uint64_t>(q.codes.size()) + (q.scales.size() + q.zeros.size()) * 5,
                          "gptq: quantized layer waiting to be written");
    std::unique_lock lock(m_mutex);
    m_changed.wait(lock, [&] { return m_error != nullptr || m_queue.size() < m_max_pending; });
    if (m_error) std::rethrow_exception(m_error);
    m_queue.push_back(task{std::move(prefix), std::move(q), std::move(hold)});
    lock.unlock();
    m_changed.notify_all();
    return seconds_since(t0);
}

double async_linear_writer::finish() {
    const auto t0 = clock_type::now();
    std::unique_lock lock(m_mutex);
    m_changed.wait(lock, [&] { return m_queue.empty() && !m_busy; });
    if (m_error) std::rethrow_exception(m_error);
    return seconds_since(t0);
}

double async_linear_writer::busy_seconds() const {
    std::lock_guard lock(m_mutex);
    return m_busy_s;
}

std::vector<std::vector<linear_kind>> sequential_groups(bool true_sequential) {
    if (!true_sequential) return {{std::begin(k_layer_linears), std::end(k_layer_linears)}};
    return {{linear_kind::k_proj, linear_kind::v_proj, linear_kind::q_proj},
            {linear_kind::o_proj},
            {linear_kind::up_proj, linear_kind::gate_proj},
            {linear_kind::down_proj}};
}

std::vector<std::int32_t> calibration_tokens(const model_config& model, std::int64_t sequences, std::int64_t length,
                                             std::uint64_t seed, const std::string& stream) {
    const auto key = stream_key(seed, hash_string(stream));
    const auto range = static_cast<std::uint64_t>(std::max<std::int64_t>(1, model.vocab_size - 3));
    std::vector<std::int32_t> t(sz(sequences * length));
    for (std::int64_t s = 0; s < sequences; ++s)
        for (std::int64_t i = 0; i < length; ++i) {
            const auto idx = static_cast<std::uint64_t>(s * length + i);
            t[sz(s * length + i)] = i == 0 ? model.bos_token_id
                                           : static_cast<std::int32_t>(3 + random_bits(key, idx) % range);
        }
    return t;
}

gptq_config algorithm_config(const gptq_quantize_options& o) {
    gptq_config c;
    c.bits = o.bits;
    c.group_size = o.gptq.group_size;
    c.sym = o.gptq.sym;
    c.act_order = o.gptq.desc_act;
    c.static_groups = o.gptq.static_groups;
    c.damp_percent = o.gptq.damp_percent;
    return c;
}

std::int64_t quality_sequence_count(const gptq_quantize_options& o) {
    if (o.quality_sequences >= 0) return o.quality_sequences;
    return std::max<std::int64_t>(1, o.gptq.calibration_samples / 32);
}

weight_store::weight_store(const tensor_source& source, const model_config& model, const std::string& memory_plan)
    : m_source(source) {
    if (memory_plan != "autogptq" && memory_plan != "streaming")
        throw input_error("gptq", "memory_plan", "must be \"autogptq\" or \"streaming\", got \"" + memory_plan + "\"");
    m_staged = memory_plan == "autogptq";
    if (!m_staged) return;
    // AutoGPTQ holds the whole fp16 model on the CPU while it quantizes layer by layer.
    const auto t0 = clock_type::now();
    std::vector<std::string> names = unquantized_tensor_names(model);
    for (std::int64_t l = 0; l < model.num_layers; ++l)
        for (linear_kind k : k_layer_linears) names.push_back(linear_prefix(l, k) + ".weight");
    std::uint64_t total = 0;
    for (const auto& n : names) total += source.require(n).byte_size;
    m_hold = host_reservation(total, "gptq: fp16 model staged in host RAM (memory_plan autogptq)");
    // AutoGPTQ loads with low_cpu_mem_usage=False: transformers builds the whole fp16 model, then torch.load()s one
    // checkpoint shard at a time into RAM beside it and copies it in. So while staging, the largest shard of the
    // checkpoint is held on top of the model (the seed's Vicuna checkpoints were written with transformers' 10 GB
    // shards; qbench's synthetic ones use the same size).
    std::map<std::filesystem::path, std::uint64_t> shard_bytes;
    for (const auto& n : source.names()) shard_bytes[source.require(n).file] += source.require(n).byte_size;
    std::uint64_t largest_shard = 0;
    for (const auto& [file, bytes] : shard_bytes) largest_shard = std::max(largest_shard, bytes);
    host_reservation shard_buffer(largest_shard, "gptq: one checkpoint shard as torch.load holds it (memory_plan autogptq)");
    for (const auto& n : names) {
        const host_tensor t = source.read(n);
        std::vector<std::uint16_t> bits(sz(t.numel()));
        if (t.type == dtype::f16) {
            std::memcpy(bits.data(), t.data.data(), bits.size() * 2);
        } else {
            const auto f = to_float_vector(t);
            for (std::size_t i = 0; i < bits.size(); ++i) bits[i] = float_to_half(f[i]);
        }
        m_tensors.emplace(n, std::move(bits));
    }
    m_read_s = seconds_since(t0);
}

std::vector<std::uint16_t> weight_store::tensor_f16(const std::string& name) const {
    if (m_staged) {
        const auto it = m_tensors.find(name);
        if (it != m_tensors.end()) return it->second;
    }
    const auto t0 = clock_type::now();
    const host_tensor t = m_source.read(name);
    std::vector<std::uint16_t> bits(sz(t.numel()));
    if (t.type == dtype::f16) {
        std::memcpy(bits.data(), t.data.data(), bits.size() * 2);
    } else {
        const auto f = to_float_vector(t);
        for (std::size_t i = 0; i < bits.size(); ++i) bits[i] = float_to_half(f[i]);
    }
    m_read_s += seconds_since(t0);
    return bits;
}

std::vector<std::uint16_t> weight_store::linear_f16(std::int64_t layer, linear_kind kind) const {
    return tensor_f16(linear_prefix(layer, kind) + ".weight");
}

std::vector<float> weight_store::linear_f32(std::int64_t layer, linear_kind kind) const {
    const auto h = linear_f16(layer, kind);
    std::vector<float> f(h.size());
    for (std::size_t i = 0; i < h.size(); ++i) f[i] = half_to_float(h[i]);
    return f;
}

nlohmann::ordered_json gptq_quantize_report::to_json(const gptq_quantize_options& o) const {
    nlohmann::ordered_json j;
    j["quantize_time_s"] = quantize_time_s;
    j["quantize_host_peak_bytes"] = host_peak_bytes;
    j["quantize_vram_peak_bytes"] = vram_peak_bytes;
    j["quantize_rss_peak_bytes"] = rss_peak_bytes;
    j["quantize_device_peak_bytes"] = device_peak_bytes;
    j["device"] = device;
    j["phases_s"] = {{"read", read_s}, {"forward", forward_s}, {"algorithm", algorithm_s}, {"quality", quality_s},
                     {"write", write_s}, {"write_busy", write_busy_s}};
    j["artifact_bytes"] = artifact_bytes;
    nlohmann::ordered_json opt;
    opt["bits"] = o.bits;
    opt["group_size"] = o.gptq.group_size;
    opt["desc_act"] = o.gptq.desc_act;
    opt["static_groups"] = o.gptq.static_groups;
    opt["sym"] = o.gptq.sym;
    opt["damp_percent"] = o.gptq.damp_percent;
    opt["true_sequential"] = o.true_sequential;
    opt["calibration_samples"] = o.gptq.calibration_samples;
    opt["calibration_seq_len"] = o.gptq.calibration_seq_len;
    opt["quality_sequences"] = quality_sequence_count(o);
    opt["memory_plan"] = o.gptq.memory_plan;
    opt["seed"] = o.seed;
    j["options"] = opt;
    j["mean_gptq_relative_error"] = mean_gptq_relative_error;
    j["mean_rtn_relative_error"] = mean_rtn_relative_error;
    auto layers_j = nlohmann::ordered_json::array();
    for (const auto& l : layers) {
        nlohmann::ordered_json e;
        e["name"] = l.name;
        e["in_features"] = l.in_features;
        e["out_features"] = l.out_features;
        e["gptq_relative_error"] = l.gptq_relative_error;
        e["rtn_relative_error"] = l.rtn_relative_error;
        e["gptq_loss"] = l.gptq_loss;
        e["damp_percent_used"] = l.damp_percent_used;
        e["seconds"] = l.seconds;
        layers_j.push_back(e);
    }
    j["layers"] = layers_j;
    return j;
}

gptq_quantize_report quantize_model(const model_config& model, const tensor_source& fp16,
                                    const gptq_quantize_options& options, const std::filesystem::path& out_dir,
                                    bool use_cuda) {
    if (!is_supported_bits(options.bits))
        throw unsupported_error("GPTQ quantizes to 2, 3, 4 or 8 bits, not " + std::to_string(options.bits));
    if (options.gptq.group_size != -1 && options.gptq.group_size < 32)
        throw unsupported_error("GPTQ group size must be -1 or at least 32, got " + std::to_string(options.gptq.group_size));
    if (options.gptq.calibration_samples < 1 || options.gptq.calibration_seq_len < 1)
        throw input_error("gptq", "calibration", "needs at least one sequence of one token");
#if !QBENCH_HAVE_CUDA
    if (use_cuda) throw unsupported_error("this qbench was built without CUDA: GPTQ runs on the CPU reference only");
#endif
    const auto t0 = clock_type::now();
    host_memory::reset_peak();
    gptq_quantize_report report;
    report.artifact = out_dir;
    {
        weight_store weights(fp16, model, options.gptq.memory_plan);
        report.read_s = weights.read_seconds();
        quantize_config qc;
        qc.bits = options.bits;
        qc.group_size = options.gptq.group_size;
        qc.damp_percent = options.gptq.damp_percent;
        qc.desc_act = options.gptq.desc_act;
        qc.static_groups = options.gptq.static_groups;
        qc.sym = options.gptq.sym;
        qc.true_sequential = options.true_sequential;
        qc.model_name_or_path = options.model_name_or_path.empty() ? model.hf_name : options.model_name_or_path;
        artifact_writer writer(out_dir, model, qc, fp16);
        {
            async_linear_writer linears(writer);
            if (use_cuda) {
#if QBENCH_HAVE_CUDA
                quantize_model_cuda(model, weights, options, linears, report);
#endif
            } else {
                report.device = "cpu";
                quantize_model_cpu(model, weights, options, linears, report);
            }
            report.write_s += linears.finish();
            report.write_busy_s = linears.busy_seconds();
        }
        const auto t_w = clock_type::now();
        writer.copy_unquantized();
        writer.finish();
        report.write_s += seconds_since(t_w);
        report.artifact_bytes = writer.bytes_written();
    }
    double ge = 0, re = 0;
    int n = 0;
    for (const auto& l : report.layers)
        if (l.gptq_relative_error >= 0) {
            ge += l.gptq_relative_error;
            re += l.rtn_relative_error;
            ++n;
        }
    if (n > 0) {
        report.mean_gptq_relative_error = ge / n;
        report.mean_rtn_relative_error = re / n;
    }
    report.host_peak_bytes = host_memory::peak();
    report.rss_peak_bytes = peak_rss_bytes();
    report.quantize_time_s = seconds_since(t0);
    write_json_atomically(out_dir / k_quantize_report_file, report.to_json(options));
    std::ofstream(out_dir / k_artifact_complete_marker) << "complete\n";
    return report;
}

gptq_quantize_options options_for_cell(const cell_spec& cell) {
    gptq_quantize_options o;
    o.bits = cell.bits;
    o.gptq = cell.gptq;
    o.seed = cell.seed;
    return o;
}

std::filesystem::path ensure_gptq_artifact(const model_config& model, const std::filesystem::path& fp16_checkpoint,
                                           const gptq_quantize_options& options, const std::filesystem::path& cache_dir,
                                           bool use_cuda) {
    artifact_key key;
    key.model = model.name;
    key.shape = model;
    key.bits = options.bits;
    key.options = options.gptq;
    key.true_sequential = options.true_sequential;
    key.seed = options.seed;
    const auto dir = artifact_directory(cache_dir, key);
    if (artifact_complete(dir)) return dir;
    std::filesystem::create_directories(dir.parent_path());
    const auto tmp = dir.parent_path() / (dir.filename().string() + ".tmp-" + std::to_string(::getpid()));
    std::error_code ec;
    std::filesystem::remove_all(tmp, ec);
    try {
        const auto source = open_checkpoint(fp16_checkpoint);
        quantize_model(model, *source, options, tmp, use_cuda);
        // The key beside the artifact, for people looking at the cache.
        write_json_atomically(tmp / "artifact_key.json", key.to_json());
    } catch (...) {
        std::filesystem::remove_all(tmp, ec);
        throw;
    }
    std::filesystem::rename(tmp, dir, ec);
    if (ec) {  // another process finished first: use its artifact
        std::filesystem::remove_all(tmp, ec);
        if (!artifact_complete(dir)) throw error("gptq: could not move the artifact into " + dir.string());
    }
    return dir;
}

}  // namespace qbench::gptq
