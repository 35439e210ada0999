// The CUDA executor: the whole Llama decoder on the GPU with the semantics of engine/generation.hpp.
//
// Per layer (rows = prompt positions in the prefill, beams in a decode step):
//   h = rms_norm(x += delta)            x: fp16 residual stream, delta: the previous block's output (fused add)
//   q, k, v = linear(h)                 backend
//   prefill: rope + append k, v to slot 0; causal attention       decode: rope + append + attention in one kernel
//   o = linear(attn)                    backend
//   h = rms_norm(x += o); act = swiglu(gate(h), up(h)); o = down(act)
// then logits = lm_head(rms_norm(x += o)), and the next tokens are chosen on the GPU (select.cuh). A decode step
// reads its position and step index from device memory, so one captured CUDA graph replays every step.
//
// Folded RMSNorm (backends offering fused_linear's normed forwards: fp16 on sm_80+ and GPTQ kernel v3, rows <= 8):
// o_proj and down_proj add their output into x in their epilogue (forward_residual), and q/k/v, gate/up and the LM
// head form rms_norm(x) in their prologue (forward_*_normed), so no separate RMSNorm kernel runs: 5 kernels per layer
// instead of 7, bit-identical outputs. Each piece falls back on its own when declined (m_delta_pending tracks whether
// m_o still holds a block output that x lacks). By default each linear folds where its backend prefers it
// (fused_linear::prefers_folded_norm), and none does: the folded step was slower for fp16 on the H200 (7B beam 1
// 3.884 vs 3.642 ms, beam 4 4.683 vs 3.742 ms: every GEMV block re-reads and reduces x before its first product,
// tests/bench/PERF_NOTES.md v6) and for GPTQ v3 on the H100 (531.4 vs 539.9 tok/s, backends/gptq/PERF_NOTES.md,
// eighth session). QBENCH_FP16_FOLD_NORM=1 / 0 (read at each generate) folds wherever possible / nowhere; the kernel
// path string says which ran ("+fold-norm" / "+norm-kernel").
#include "cuda/attention.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/device_context.cuh"
#include "cuda/embedding.cuh"
#include "cuda/fused_linear.hpp"
#include "cuda/rms_norm.cuh"
#include "cuda/rope.cuh"
#include "cuda/select.cuh"
#include "cuda/swiglu.cuh"
#include "cuda/tensor_upload.cuh"

#include "qbench/backend/backend.hpp"
#include "qbench/common/counter_rng.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/common/half.hpp"
#include "qbench/engine/cpu_model.hpp"
#include "qbench/engine/cuda_api.hpp"
#include "qbench/engine/reference_ops.hpp"
#include "qbench/io/tensor_source.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace qbench {

namespace {

using steady = std::chrono::steady_clock;

constexpr std::array<linear_kind, 7> k_layer_linears{linear_kind::q_proj,    linear_kind::k_proj,
                                                     linear_kind::v_proj,    linear_kind::o_proj,
                                                     linear_kind::gate_proj, linear_kind::up_proj,
                                                     linear_kind::down_proj};

// Forwards to a checkpoint and adds up the time spent reading it (the load report's read_s).
class timed_source final : public tensor_source {
public:
    explicit timed_source(const tensor_source& inner) : m_inner(inner) {}
    const std::filesystem::path& path() const override { return m_inner.path(); }
    std::vector<std::string> names() const override { return m_inner.names(); }
    const tensor_info* find(std::string_view name) const override { return m_inner.find(name); }
    host_tensor read(std::string_view name) const override {
        const auto t0 = steady::now();
        host_tensor t = m_inner.read(name);
        m_seconds += std::chrono::duration<double>(steady::now() - t0).count();
        return t;
    }
    void read_into(std::string_view name, std::span<std::byte> out) const override {
        const auto t0 = steady::now();
        m_inner.read_into(name, out);
        m_seconds += std::chrono::duration<double>(steady::now() - t0).count();
    }
    const std::map<std::string, std::string>& metadata() const override { return m_inner.metadata(); }
    std::uint64_t total_bytes() const override { return m_inner.total_bytes(); }
    double seconds() const { return m_seconds; }

private:
    const tensor_source& m_inner;
    mutable double m_seconds = 0;
};

struct gpu_layer {
    device_buffer input_norm, post_norm;
    std::array<std::unique_ptr<device_linear>, 7> linear;  // k_layer_linears order
    fused_linear* fused_q = nullptr;     // q_proj's fusion capability (q, k, v in one kernel), if its backend has it
    fused_linear* fused_gate = nullptr;  // gate_proj's (gate, up and SwiGLU in one kernel)
    fused_linear* fused_o = nullptr;     // o_proj's (residual add in the epilogue)
    fused_linear* fused_down = nullptr;  // down_proj's (residual add in the epilogue)
};

// Where the RMSNorm is folded into the linears: QBENCH_FP16_FOLD_NORM=1 wherever a backend can, =0 nowhere, unset
// where the backend prefers it (fused_linear::prefers_folded_norm). Read at each generate, for A/B runs in one process.
enum class fold_choice { backend, on, off };
fold_choice fold_norm_from_env() {
    const char* env = std::getenv("QBENCH_FP16_FOLD_NORM");
    if (env == nullptr || *env == '\0') return fold_choice::backend;
    return std::atoi(env) != 0 ? fold_choice::on : fold_choice::off;
}
bool folds(fold_choice choice, const fused_linear* f) {
    return f != nullptr && (choice == fold_choice::on || (choice == fold_choice::backend && f->prefers_folded_norm()));
}

// Measurement only: QBENCH_DECODE_ABLATE=attention,norm (read at each generate) leaves the named kernels out of
// decode steps, so an A/B run shows what each costs inside the step (bench_decode --ablate-ab 1). The outputs are
// wrong while it is set, and the kernel path string says "+ablate-..." so such a figure cannot pass for a real one.
enum ablate_bits : unsigned { k_ablate_attention = 1, k_ablate_norm = 2 };
unsigned ablate_from_env() {
    const char* env = std::getenv("QBENCH_DECODE_ABLATE");
    if (env == nullptr) return 0;
    const std::string s = env;
    return (s.find("attention") != std::string::npos ? k_ablate_attention : 0u) |
           (s.find("norm") != std::string::npos ? k_ablate_norm : 0u);
}
std::string ablate_suffix(unsigned bits) {
    return std::string((bits & k_ablate_attention) != 0 ? "+ablate-attention" : "") +
           ((bits & k_ablate_norm) != 0 ? "+ablate-norm" : "");
}

// The RMSNorm and attention kernels let the next GEMV launch before their own wait (launch.cuh: early trigger), so
// its first weight loads overlap the drain of the GEMV before them. QBENCH_PDL_EARLY_TRIGGER=0 (read at each
// generate) restores the trigger after the wait, for A/B runs (bench_decode variant "graph+pdl-late-trigger").
bool early_trigger_from_env() {
    const char* env = std::getenv("QBENCH_PDL_EARLY_TRIGGER");
    return env == nullptr || std::atoi(env) != 0;
}

// What a captured decode step depends on besides the buffers.
struct graph_key {
    std::int64_t beams = 0;
    decode_mode mode = decode_mode::greedy;
    double temperature = 0, top_p = 0;
    std::int64_t top_k = 0;
    std::uint64_t seed = 0;
    bool pdl = false;  // launches are captured with or without programmatic dependent launch
    fold_choice fold = fold_choice::backend;  // where the RMSNorm is folded into the linears
    unsigned ablate = 0;  // ablate_bits left out (measurement only)
    bool early_trigger = true;  // RMSNorm / attention trigger their successor before their wait
    bool operator==(const graph_key&) const = default;
};

struct graph_entry {
    graph_key key;
    bool warmed = false;             // one eager step ran (lazy module loading, cuBLAS setup) before capture
    cudaGraphExec_t exec = nullptr;
};

class cuda_executor_impl final : public cuda_executor {
public:
    cuda_executor_impl(const model_config& model, const tensor_source& source, const backend& backend,
                       const cell_spec& cell, device_context& context);
    ~cuda_executor_impl() override;

    generation_output generate(const prompt& p, const generation_config& g) override;
    const generation_timing& last_timing() const override { return m_timing; }
    std::vector<std::vector<float>> teacher_forced_logits(const prompt& p,
                                                          const std::vector<std::int32_t>& forced) override;

    const cuda_load_report& load_report() const override { return m_load; }
    std::uint64_t bytes_per_decode_step(std::int64_t beam, std::int64_t context_len) const override;
    std::string kernel_path(std::int64_t rows) const override {
        std::string path = m_layers.at(0).linear[0]->kernel_path(rows);
        const fused_linear* f = m_layers.at(0).fused_q;
        if (f != nullptr && m_fuse && f->folds_norm(rows))
            path += folds(fold_norm_from_env(), f) ? "+fold-norm" : "+norm-kernel";
        return path + (early_trigger_from_env() ? "" : "+late-trigger") + ablate_suffix(ablate_from_env());
    }
    void set_graphs_enabled(bool on) override { m_graphs_enabled = on; }
    bool graphs_used() const override { return m_graphs_used; }

private:
    // Activation, cache and state buffers, grown to the largest request seen (reallocation drops the graphs).
    struct caps {
        std::int64_t rows = 0, beams = 0, len = 0, logit_rows = 0, steps = 0, text = 0;
    };
    void ensure_buffers(const caps& need);
    void upload_tokens(const std::vector<std::int32_t>& tokens);
    void check_prompt(const prompt& p) const;
    launch_options lo() const { return {m_context.stream(), m_context.pdl_enabled()}; }
    // For the small kernels between two GEMVs (RMSNorm, attention): lo() with the early trigger when it is on.
    launch_options lo_small() const { return {m_context.stream(), m_context.pdl_enabled(), m_early_trigger}; }
    __half* kcache(std::int64_t layer) const {
        return m_kcache.as<__half>() + layer * m_caps.beams * m_caps.len * m_model.kv_size();
    }
    __half* vcache(std::int64_t layer) const {
        return m_vcache.as<__half>() + layer * m_caps.beams * m_caps.len * m_model.kv_size();
    }
    attention_shape attn_shape() const {
        return {static_cast<int>(m_model.num_heads), static_cast<int>(m_model.num_kv_heads),
                static_cast<int>(m_model.head_dim()), m_caps.len,
                static_cast<float>(1.0 / std::sqrt(static_cast<double>(m_model.head_dim())))};
    }
    void enqueue_layer(std::int64_t layer, std::int64_t rows, bool decode);
    void enqueue_head(std::int64_t first, std::int64_t logit_rows);
    void enqueue_prefill(const prompt& p, std::int64_t rows, std::int64_t logit_rows);
    void enqueue_choose(const generation_config& g, std::int64_t parent_rows);
    void enqueue_decode_step(const generation_config& g);
    graph_entry& graph_for(const graph_key& key);
    bool capture(graph_entry& entry, const generation_config& g);
    void drop_graphs() noexcept;
    cudaEvent_t event(std::size_t i);

    device_context& m_context;
    model_config m_model;
    std::vector<gpu_layer> m_layers;
    device_buffer m_embed, m_final_norm, m_inv_freq;
    std::unique_ptr<device_linear> m_lm_head;
    fused_linear* m_fused_head = nullptr;  // the LM head's capability (final norm in its prologue), if any
    bool m_capturable = true;
    cuda_load_report m_load;

    caps m_caps;
    std::int64_t m_beams = 1;  // beams of the generation in flight
    device_buffer m_x, m_h, m_q, m_k, m_v, m_attn, m_o, m_gate, m_up, m_logits, m_kcache, m_vcache, m_tokens;
    device_buffer m_pos, m_step, m_next, m_hist_tokens, m_hist_parents, m_scores, m_table, m_table_tmp, m_row_max,
        m_row_logsum, m_cand_logit, m_cand_token, m_greedy;
    decode_state m_state;

    // Decode steps run q, k, v (and gate, up) as parallel branches on side streams: the linears of one input
    // overlap, so one kernel's ramp-up and tail hide behind another's stream of weights. QBENCH_PARALLEL_LINEARS=0
    // turns it off.
    bool m_parallel = true;
    // Linears of one input as one kernel where the backend offers it (fused_linear.hpp): q, k, v; gate, up and the
    // SwiGLU product. Tried before the branches above. QBENCH_FUSE_LINEARS=0 turns it off.
    bool m_fuse = true;
    // RMSNorm folded into the linears where the backend offers and prefers it, or as QBENCH_FP16_FOLD_NORM says (see
    // the top of this file; refreshed at each generate): fold(f) for linear f. m_delta_pending: while enqueuing,
    // whether m_o holds a block output not yet added into m_x (the next RMSNorm kernel must add it).
    fold_choice m_fold = fold_choice::backend;
    bool fold(const fused_linear* f) const { return folds(m_fold, f); }
    bool m_early_trigger = true;  // early_trigger_from_env(), refreshed at each generate
    unsigned m_ablate = 0;  // ablate_bits, decode steps only (measurement only: ablate_from_env)
    bool m_delta_pending = false;
    cudaStream_t m_side[2] = {nullptr, nullptr};
    cudaEvent_t m_fork = nullptr, m_join[2] = {nullptr, nullptr};
    void fork(int branches);
    void join(int branches);

    bool m_graphs_enabled = true;
    bool m_graphs_used = false;
    bool m_capture_failed = false;
    std::vector<graph_entry> m_graphs;
    std::vector<cudaEvent_t> m_events;
    generation_timing m_timing;
};

cuda_executor_impl::cuda_executor_impl(const model_config& model, const tensor_source& source, const backend& backend,
                                       const cell_spec& cell, device_context& context)
    : m_context(context), m_model(model) {
    validate_model_config(model);
    const auto t0 = steady::now();
    const double upload0 = context.upload_seconds();
    const timed_source timed(source);
    const std::int64_t H = model.hidden_size, V = model.vocab_size;
    const std::array<std::int64_t, 2> embed_shape{V, H};
    const std::array<std::int64_t, 1> norm_shape{H};
    m_embed = upload_f16_tensor(context, timed, "model.embed_tokens.weight", embed_shape);
    m_load.other_bytes += m_embed.size();
    auto load_linear = [&](std::int64_t layer, linear_kind kind) {
        const linear_request request{timed,
                                     linear_prefix(layer, kind),
                                     kind,
                                     linear_in_features(model, kind),
                                     linear_out_features(model, kind),
                                     cell};
        auto linear = backend.load_device_linear(request, context);
        m_load.weight_bytes += linear->weight_bytes();
        m_capturable = m_capturable && linear->graph_capturable();
        return linear;
    };
    for (std::int64_t l = 0; l < model.num_layers; ++l) {
        gpu_layer layer;
        const std::string base = "model.layers." + std::to_string(l) + ".";
        layer.input_norm = upload_f16_tensor(context, timed, base + "input_layernorm.weight", norm_shape);
        for (std::size_t i = 0; i < k_layer_linears.size(); ++i) layer.linear[i] = load_linear(l, k_layer_linears[i]);
        layer.post_norm = upload_f16_tensor(context, timed, base + "post_attention_layernorm.weight", norm_shape);
        layer.fused_q = dynamic_cast<fused_linear*>(layer.linear[0].get());
        layer.fused_gate = dynamic_cast<fused_linear*>(layer.linear[4].get());
        layer.fused_o = dynamic_cast<fused_linear*>(layer.linear[3].get());
        layer.fused_down = dynamic_cast<fused_linear*>(layer.linear[6].get());
        m_load.other_bytes += layer.input_norm.size() + layer.post_norm.size();
        m_layers.push_back(std::move(layer));
    }
    m_final_norm = upload_f16_tensor(context, timed, "model.norm.weight", norm_shape);
    m_load.other_bytes += m_final_norm.size();
    m_lm_head = load_linear(0, linear_kind::lm_head);
    m_fused_head = dynamic_cast<fused_linear*>(m_lm_head.get());

    // The same frequency table as the CPU reference (rope_inv_freq), so both start from identical floats.
    const std::vector<float> inv_freq = rope_inv_freq(model.head_dim(), model.rope_theta);
    m_inv_freq = context.allocate(inv_freq.size() * sizeof(float), "RoPE frequencies");
    context.upload(m_inv_freq.get(), inv_freq.data(), inv_freq.size() * sizeof(float));

    if (const char* env = std::getenv("QBENCH_PARALLEL_LINEARS")) m_parallel = std::atoi(env) != 0;
    if (const char* env = std::getenv("QBENCH_FUSE_LINEARS")) m_fuse = std::atoi(env) != 0;
    m_fold = fold_norm_from_env();
    for (cudaStream_t& s : m_side) QB_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    QB_CUDA_CHECK(cudaEventCreateWithFlags(&m_fork, cudaEventDisableTiming));
    for (cudaEvent_t& e : m_join) QB_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));

    m_load.total_s = std::chrono::duration<double>(steady::now() - t0).count();
    m_load.read_s = timed.seconds();
    m_load.upload_s = context.upload_seconds() - upload0;
    m_load.quantize_s = std::max(0.0, m_load.total_s - m_load.read_s - m_load.upload_s);
}

cuda_executor_impl::~cuda_executor_impl() {
    cudaStreamSynchronize(m_context.stream());
    drop_graphs();
    for (cudaEvent_t e : m_events) cudaEventDestroy(e);
    for (cudaStream_t s : m_side) {
        if (s == nullptr) continue;
        cudaStreamSynchronize(s);
        m_context.forget_stream(s);
        cudaStreamDestroy(s);
    }
    if (m_fork != nullptr) cudaEventDestroy(m_fork);
    for (cudaEvent_t e : m_join)
        if (e != nullptr) cudaEventDestroy(e);
}

void cuda_executor_impl::fork(int branches) {
    QB_CUDA_CHECK(cudaEventRecord(m_fork, m_context.stream()));
    for (int i = 0; i < branches; ++i) QB_CUDA_CHECK(cudaStreamWaitEvent(m_side[i], m_fork, 0));
}

void cuda_executor_impl::join(int branches) {
    for (int i = 0; i < branches; ++i) {
        QB_CUDA_CHECK(cudaEventRecord(m_join[i], m_side[i]));
        QB_CUDA_CHECK(cudaStreamWaitEvent(m_context.stream(), m_join[i], 0));
    }
}

void cuda_executor_impl::drop_graphs() noexcept {
    for (graph_entry& g : m_graphs)
        if (g.exec != nullptr) QB_CUDA_CHECK_NOEXCEPT(cudaGraphExecDestroy(g.exec));
    m_graphs.clear();
}

cudaEvent_t cuda_executor_impl::event(std::size_t i) {
    while (m_events.size() <= i) {
        cudaEvent_t e;
        QB_CUDA_CHECK(cudaEventCreate(&e));
        m_events.push_back(e);
    }
    return m_events[i];
}

std::uint64_t cuda_executor_impl::bytes_per_decode_step(std::int64_t beam, std::int64_t context_len) const {
    const std::uint64_t kv = static_cast<std::uint64_t>(beam) * static_cast<std::uint64_t>(context_len) *
                             static_cast<std::uint64_t>(m_model.kv_bytes_per_token());
    const std::uint64_t embed_rows = static_cast<std::uint64_t>(beam * m_model.hidden_size) * 2u;
    const std::uint64_t norms = static_cast<std::uint64_t>((2 * m_model.num_layers + 1) * m_model.hidden_size) * 2u;
    return m_load.weight_bytes + kv + embed_rows + norms;
}

void cuda_executor_impl::ensure_buffers(const caps& need) {
    if (need.rows <= m_caps.rows && need.beams <= m_caps.beams && need.len <= m_caps.len &&
        need.logit_rows <= m_caps.logit_rows && need.steps <= m_caps.steps && need.text <= m_caps.text)
        return;
    QB_CUDA_CHECK(cudaStreamSynchronize(m_context.stream()));
    drop_graphs();
    caps c{std::max(need.rows, m_caps.rows),         std::max(need.beams, m_caps.beams),
           std::max(need.len, m_caps.len),           std::max(need.logit_rows, m_caps.logit_rows),
           std::max(need.steps, m_caps.steps),       std::max(need.text, m_caps.text)};
    if (c.len > attention_max_len(static_cast<int>(m_model.head_dim())))
        throw unsupported_error("a context of " + std::to_string(c.len) + " positions is longer than the " +
                                std::to_string(attention_max_len(static_cast<int>(m_model.head_dim()))) +
                                " the CUDA attention kernel supports");
    // Free everything first, so growing does not hold old and new buffers at once.
    for (device_buffer* b : {&m_x, &m_h, &m_q, &m_k, &m_v, &m_attn, &m_o, &m_gate, &m_up, &m_logits, &m_kcache,
                             &m_vcache, &m_tokens, &m_pos, &m_step, &m_next, &m_hist_tokens, &m_hist_parents,
                             &m_scores, &m_table, &m_table_tmp, &m_row_max, &m_row_logsum, &m_cand_logit,
                             &m_cand_token, &m_greedy})
        b->reset();
    m_caps = {};
    const std::uint64_t H = m_model.hidden_size, Q = m_model.q_size(), KV = m_model.kv_size(),
                        I = m_model.intermediate_size, V = m_model.vocab_size, L = m_model.num_layers;
    const std::uint64_t rows = c.rows;
    auto alloc = [&](std::uint64_t bytes, const char* what) { return m_context.allocate(bytes, what); };
    m_x = alloc(rows * H * 2, "activations (residual)");
    m_h = alloc(rows * H * 2, "activations (normed)");
    m_q = alloc(rows * Q * 2, "activations (q)");
    m_k = alloc(rows * KV * 2, "activations (k)");
    m_v = alloc(rows * KV * 2, "activations (v)");
    m_attn = alloc(rows * Q * 2, "activations (attention)");
    m_o = alloc(rows * H * 2, "activations (block output)");
    m_gate = alloc(rows * I * 2, "activations (gate)");
    m_up = alloc(rows * I * 2, "activations (up)");
    m_logits = alloc(static_cast<std::uint64_t>(c.logit_rows) * V * 2, "logits");
    const std::uint64_t cache = L * static_cast<std::uint64_t>(c.beams * c.len) * KV * 2;
    m_kcache = alloc(cache, "KV cache (keys)");
    m_vcache = alloc(cache, "KV cache (values)");
    m_tokens = alloc(static_cast<std::uint64_t>(std::max<std::int64_t>(c.text, 1)) * 4, "prompt tokens");
    const std::uint64_t B = c.beams;
    m_pos = alloc(4, "decode position");
    m_step = alloc(4, "decode step");
    m_next = alloc(B * 4, "chosen tokens");
    m_hist_tokens = alloc(static_cast<std::uint64_t>(std::max<std::int64_t>(c.steps, 1)) * B * 4, "token history");
    m_hist_parents = alloc(static_cast<std::uint64_t>(std::max<std::int64_t>(c.steps, 1)) * B * 4, "parent history");
    m_scores = alloc(B * 8, "beam scores");
    m_table = alloc(B * static_cast<std::uint64_t>(c.len) * 4, "beam slot table");
    m_table_tmp = alloc(B * static_cast<std::uint64_t>(c.len) * 4, "beam slot table scratch");
    m_row_max = alloc(B * 4, "beam row max");
    m_row_logsum = alloc(B * 8, "beam row log-sum");
    m_cand_logit = alloc(B * B * 4, "beam candidates");
    m_cand_token = alloc(B * B * 4, "beam candidate tokens");
    // Multi-block greedy scratch: [arrival counter, 16 bytes][sums, double][maxima, float][ids, int32], per row
    // k_greedy_blocks entries; the counter must start at zero.
    m_greedy = alloc(16 + B * k_greedy_blocks * 16, "greedy choice scratch");
    QB_CUDA_CHECK(cudaMemset(m_greedy.get(), 0, m_greedy.size()));
    m_caps = c;
}

void cuda_executor_impl::upload_tokens(const std::vector<std::int32_t>& tokens) {
    if (tokens.empty()) return;
    QB_CUDA_CHECK(cudaMemcpyAsync(m_tokens.get(), tokens.data(), tokens.size() * 4, cudaMemcpyHostToDevice,
                                  m_context.stream()));
    // The host vector may die before the copy ran: pageable copies return early only for small sizes.
    QB_CUDA_CHECK(cudaStreamSynchronize(m_context.stream()));
}

void cuda_executor_impl::check_prompt(const prompt& p) const {
    const auto text = static_cast<std::int64_t>(p.tokens.size());
    if (p.image_offset < 0 || p.image_offset > text || p.image_tokens < 0)
        throw error("generate: image_offset " + std::to_string(p.image_offset) + " outside [0, " +
                    std::to_string(text) + "] or negative image_tokens");
    if (p.length() < 1) throw error("generate: empty prompt");
    for (std::int32_t t : p.tokens)
        if (t < 0 || t >= m_model.vocab_size)
            throw error("generate: token id " + std::to_string(t) + " outside the vocabulary [0, " +
                        std::to_string(m_model.vocab_size) + ")");
}

void cuda_executor_impl::enqueue_layer(std::int64_t l, std::int64_t rows, bool decode) {
    const launch_options o = lo_small();  // the early trigger is honoured by RMSNorm and attention only
    cudaStream_t st = m_context.stream();
    const gpu_layer& layer = m_layers[static_cast<std::size_t>(l)];
    const std::int64_t H = m_model.hidden_size, I = m_model.intermediate_size;
    const double eps = m_model.rms_norm_eps;
    auto* x = m_x.as<__half>();
    auto* h = m_h.as<__half>();
    auto* out = m_o.as<__half>();
    // Branches only in decode steps: the prefill's GEMMs are long enough to fill the GPU on their own.
    const bool branches = decode && m_parallel;
    device_linear* const kv[2] = {layer.linear[1].get(), layer.linear[2].get()};
    void* const qkv_out[3] = {m_q.get(), m_k.get(), m_v.get()};
    // Folded: q/k/v form rms_norm(x) themselves (x must be up to date: no block output pending).
    const bool qkv_folded = m_fuse && !m_delta_pending && fold(layer.fused_q) &&
                            layer.fused_q->forward_group_normed(
                                kv, 2, fused_linear::normed_input{x, layer.input_norm.get(), eps}, rows, qkv_out, st);
    const bool skip_norm = decode && (m_ablate & k_ablate_norm) != 0;  // measurement only (ablate_from_env)
    if (!qkv_folded) {
        if (!skip_norm)
            launch_rms_norm(x, m_delta_pending ? out : nullptr, layer.input_norm.as<__half>(), eps, rows, H, h, o);
        m_delta_pending = false;
        if (!(m_fuse && layer.fused_q != nullptr && layer.fused_q->forward_group(kv, 2, h, rows, qkv_out, st))) {
            if (branches) fork(2);
            layer.linear[0]->forward(h, rows, m_q.get(), st);
            layer.linear[1]->forward(h, rows, m_k.get(), branches ? m_side[0] : st);
            layer.linear[2]->forward(h, rows, m_v.get(), branches ? m_side[1] : st);
            if (branches) join(2);
        }
    }
    const attention_shape shape = attn_shape();
    if (decode && (m_ablate & k_ablate_attention) != 0) {
        // measurement only (ablate_from_env): attention left out of the step
    } else if (decode) {
        launch_attention_decode(m_q.as<__half>(), m_k.as<__half>(), m_v.as<__half>(), m_inv_freq.as<float>(),
                                m_state.pos, m_state.slot_table, rows, shape, kcache(l), vcache(l),
                                m_attn.as<__half>(), o);
    } else {
        launch_rope_append(m_q.as<__half>(), m_k.as<__half>(), m_v.as<__half>(), m_inv_freq.as<float>(), rows, 0,
                           shape.heads, shape.kv_heads, shape.head_dim, kcache(l), vcache(l), o);
        launch_attention_prefill(m_q.as<__half>(), kcache(l), vcache(l), rows, 0, shape, m_attn.as<__half>(), o);
    }
    // Folded: x += o_proj(attn) in the GEMV's epilogue; otherwise the block output waits in m_o for the next norm.
    if (fold(layer.fused_o) && layer.fused_o->forward_residual(m_attn.get(), rows, x, st)) {
        m_delta_pending = false;
    } else {
        layer.linear[3]->forward(m_attn.get(), rows, out, st);
        m_delta_pending = true;
    }
    // act lands in m_gate either way (the fused kernels write only the product; the unfused SwiGLU runs in place).
    const bool gate_folded =
        m_fuse && !m_delta_pending && fold(layer.fused_gate) &&
        layer.fused_gate->forward_swiglu_normed(
            *layer.linear[5], fused_linear::normed_input{x, layer.post_norm.get(), eps}, rows, m_gate.get(), st);
    if (!gate_folded) {
        if (!skip_norm)
            launch_rms_norm(x, m_delta_pending ? out : nullptr, layer.post_norm.as<__half>(), eps, rows, H, h, o);
        m_delta_pending = false;
        if (!(m_fuse && layer.fused_gate != nullptr &&
              layer.fused_gate->forward_swiglu(*layer.linear[5], h, rows, m_gate.get(), st))) {
            if (branches) fork(1);
            layer.linear[4]->forward(h, rows, m_gate.get(), st);
            layer.linear[5]->forward(h, rows, m_up.get(), branches ? m_side[0] : st);
            if (branches) join(1);
            launch_swiglu(m_gate.as<__half>(), m_up.as<__half>(), rows * I, m_gate.as<__half>(), o);  // in place
        }
    }
    if (fold(layer.fused_down) && layer.fused_down->forward_residual(m_gate.get(), rows, x, st)) {
        m_delta_pending = false;
    } else {
        layer.linear[6]->forward(m_gate.get(), rows, out, st);
        m_delta_pending = true;
    }
}

// The last residual add, the final norm and the LM head for rows [first, first + logit_rows) of x: logits rows
// 0 .. logit_rows - 1. Folded into the LM head when x is up to date and the backend offers it.
void cuda_executor_impl::enqueue_head(std::int64_t first, std::int64_t logit_rows) {
    const std::int64_t H = m_model.hidden_size;
    __half* x = m_x.as<__half>() + first * H;
    if (!m_delta_pending && fold(m_fused_head) &&
        m_fused_head->forward_normed(fused_linear::normed_input{x, m_final_norm.get(), m_model.rms_norm_eps},
                                     logit_rows, m_logits.get(), m_context.stream()))
        return;
    launch_rms_norm(x, m_delta_pending ? m_o.as<__half>() + first * H : nullptr, m_final_norm.as<__half>(),
                    m_model.rms_norm_eps, logit_rows, H, m_h.as<__half>() + first * H, lo_small());
    m_delta_pending = false;
    m_lm_head->forward(m_h.as<__half>() + first * H, logit_rows, m_logits.get(), m_context.stream());
}

void cuda_executor_impl::enqueue_prefill(const prompt& p, std::int64_t rows, std::int64_t logit_rows) {
    const launch_options o = lo();
    const std::int64_t H = m_model.hidden_size;
    launch_embed_prompt(m_embed.as<__half>(), m_model.vocab_size, H, m_tokens.as<std::int32_t>(), rows,
                        p.image_offset, p.image_tokens, stream_key(p.image_seed, hash_string("image")),
                        m_x.as<__half>(), o);
    m_delta_pending = false;  // x is the embedding: nothing to add before the first norm
    for (std::int64_t l = 0; l < m_model.num_layers; ++l) enqueue_layer(l, rows, false);
    // Only the rows whose logits are wanted need the last residual add, the final norm and the LM head.
    enqueue_head(rows - logit_rows, logit_rows);
}

void cuda_executor_impl::enqueue_choose(const generation_config& g, std::int64_t parent_rows) {
    const launch_options o = lo();
    const __half* logits = m_logits.as<__half>();
    if (m_beams > 1) {
        launch_choose_beam(logits, m_model.vocab_size, parent_rows, m_state, o);
    } else if (g.mode == decode_mode::sample) {
        launch_choose_sample(logits, m_model.vocab_size, sampling_params{g.temperature, g.top_k, g.top_p, g.seed},
                             m_state, o);
    } else {
        launch_choose_greedy(logits, m_model.vocab_size, m_state, o);
    }
}

void cuda_executor_impl::enqueue_decode_step(const generation_config& g) {
    const launch_options o = lo();
    const std::int64_t B = m_beams, H = m_model.hidden_size;
    launch_embed_tokens(m_embed.as<__half>(), m_model.vocab_size, H, m_state.tokens, B, m_x.as<__half>(), o);
    m_delta_pending = false;
    for (std::int64_t l = 0; l < m_model.num_layers; ++l) enqueue_layer(l, B, true);
    enqueue_head(0, B);
    enqueue_choose(g, B);
}

graph_entry& cuda_executor_impl::graph_for(const graph_key& key) {
    for (graph_entry& e : m_graphs)
        if (e.key == key) return e;
    m_graphs.push_back(graph_entry{key, false, nullptr});
    return m_graphs.back();
}

bool cuda_executor_impl::capture(graph_entry& entry, const generation_config& g) {
    cudaStream_t st = m_context.stream();
    for (int attempt = 0; attempt < 2; ++attempt) {
        cudaGraph_t graph = nullptr;
        try {
            QB_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
            try {
                enqueue_decode_step(g);
            } catch (...) {
                cudaStreamEndCapture(st, &graph);
                if (graph != nullptr) cudaGraphDestroy(graph);
                throw;
            }
            QB_CUDA_CHECK(cudaStreamEndCapture(st, &graph));
            const cudaError_t err = cudaGraphInstantiate(&entry.exec, graph, 0);
            cudaGraphDestroy(graph);
            QB_CUDA_CHECK(err);
            return true;
        } catch (const cuda_error& e) {
            // Capture is an optimization. A driver that cannot capture programmatic launches gets a second try
            // without them; after that, steps are launched kernel by kernel. Said once, on stderr.
            cudaGetLastError();
            entry.exec = nullptr;
            std::fprintf(stderr, "qbench: CUDA graph capture failed%s: %s\n",
                         m_context.pdl_enabled() ? " with PDL, retrying without" : ", decoding without graphs",
                         e.what());
            if (!m_context.pdl_enabled()) break;
            m_context.set_pdl_enabled(false);
        }
    }
    m_capture_failed = true;
    return false;
}

generation_output cuda_executor_impl::generate(const prompt& p, const generation_config& g) {
    if (g.max_new_tokens < 0) throw error("generate: max_new_tokens must be >= 0");
    if (g.beam_width < 1) throw error("generate: beam_width must be >= 1");
    if (g.beam_width > 1 && g.mode != decode_mode::beam)
        throw error("generate: beam_width " + std::to_string(g.beam_width) + " needs mode beam");
    if (g.mode == decode_mode::sample && !(g.temperature > 0)) throw error("generate: temperature must be > 0");
    check_prompt(p);
    m_fold = fold_norm_from_env();
    m_ablate = ablate_from_env();
    m_early_trigger = early_trigger_from_env();
    const bool beam = g.mode == decode_mode::beam && g.beam_width > 1;
    if (beam && g.beam_width > k_max_beam)
        throw unsupported_error("beam width " + std::to_string(g.beam_width) + " is above the " +
                                std::to_string(k_max_beam) + " the CUDA executor supports");
    const std::int64_t B = beam ? g.beam_width : 1;
    const std::int64_t P = p.length(), N = g.max_new_tokens;
    ensure_buffers({std::max(P, B), B, P + N, B, N, static_cast<std::int64_t>(p.tokens.size())});
    m_beams = B;
    m_state = decode_state{m_pos.as<std::int32_t>(),        m_step.as<std::int32_t>(),
                           m_next.as<std::int32_t>(),       m_hist_tokens.as<std::int32_t>(),
                           m_hist_parents.as<std::int32_t>(), m_scores.as<double>(),
                           m_table.as<std::int32_t>(),      m_table_tmp.as<std::int32_t>(),
                           m_row_max.as<float>(),           m_row_logsum.as<double>(),
                           m_cand_logit.as<float>(),        m_cand_token.as<std::int32_t>(),
                           B,                               m_caps.len};
    {
        auto* base = static_cast<unsigned char*>(m_greedy.get());
        const std::size_t n = static_cast<std::size_t>(B) * k_greedy_blocks;
        m_state.greedy_arrived = reinterpret_cast<unsigned*>(base);
        m_state.greedy_sum = reinterpret_cast<double*>(base + 16);
        m_state.greedy_max = reinterpret_cast<float*>(base + 16 + n * 8);
        m_state.greedy_idx = reinterpret_cast<std::int32_t*>(base + 16 + n * 12);
    }
    cudaStream_t st = m_context.stream();
    upload_tokens(p.tokens);
    // State before the choice from the prefill logits: position P - 1, step 0, scores [0, -1e9, ...], all beams
    // reading slot 0 (the prompt's keys and values).
    const std::int32_t init[2] = {static_cast<std::int32_t>(P - 1), 0};
    std::vector<double> scores(static_cast<std::size_t>(B), -1e9);
    scores[0] = 0.0;
    QB_CUDA_CHECK(cudaMemcpyAsync(m_pos.get(), &init[0], 4, cudaMemcpyHostToDevice, st));
    QB_CUDA_CHECK(cudaMemcpyAsync(m_step.get(), &init[1], 4, cudaMemcpyHostToDevice, st));
    QB_CUDA_CHECK(cudaMemcpyAsync(m_scores.get(), scores.data(), scores.size() * 8, cudaMemcpyHostToDevice, st));
    QB_CUDA_CHECK(cudaMemsetAsync(m_table.get(), 0, m_table.size(), st));
    QB_CUDA_CHECK(cudaStreamSynchronize(st));

    m_timing = {};
    m_graphs_used = false;
    cudaEvent_t prefill_start = event(0), prefill_end = event(1);
    QB_CUDA_CHECK(cudaEventRecord(prefill_start, st));
    enqueue_prefill(p, P, 1);
    QB_CUDA_CHECK(cudaEventRecord(prefill_end, st));
    generation_output out;
    if (N == 0) {
        QB_CUDA_CHECK(cudaEventSynchronize(prefill_end));
        float ms = 0;
        QB_CUDA_CHECK(cudaEventElapsedTime(&ms, prefill_start, prefill_end));
        m_timing.prefill_ms = ms;
        out.beams = {{}};
        out.beam_scores = {0.0};
        return out;
    }
    enqueue_choose(g, 1);

    const bool graphs = m_graphs_enabled && m_capturable && !m_capture_failed;
    const graph_key key{B, beam ? decode_mode::beam : g.mode, g.temperature, g.top_p, g.top_k, g.seed,
                        m_context.pdl_enabled(), m_fold, m_ablate, m_early_trigger};
    for (std::int64_t s = 1; s < N; ++s) {
        QB_CUDA_CHECK(cudaEventRecord(event(static_cast<std::size_t>(s + 1)), st));
        if (graphs && !m_capture_failed) {
            graph_entry& entry = graph_for(key);
            if (entry.exec == nullptr && entry.warmed) capture(entry, g);
            if (entry.exec != nullptr) {
                QB_CUDA_CHECK(cudaGraphLaunch(entry.exec, st));
                m_graphs_used = true;
                continue;
            }
            entry.warmed = true;
        }
        enqueue_decode_step(g);
    }
    QB_CUDA_CHECK(cudaEventRecord(event(static_cast<std::size_t>(N + 1)), st));

    std::vector<std::int32_t> tokens(static_cast<std::size_t>(N * B)), parents(tokens.size());
    QB_CUDA_CHECK(cudaMemcpyAsync(tokens.data(), m_hist_tokens.get(), tokens.size() * 4, cudaMemcpyDeviceToHost, st));
    QB_CUDA_CHECK(cudaMemcpyAsync(parents.data(), m_hist_parents.get(), parents.size() * 4, cudaMemcpyDeviceToHost, st));
    QB_CUDA_CHECK(cudaMemcpyAsync(scores.data(), m_scores.get(), scores.size() * 8, cudaMemcpyDeviceToHost, st));
    QB_CUDA_CHECK(cudaStreamSynchronize(st));

    float ms = 0;
    QB_CUDA_CHECK(cudaEventElapsedTime(&ms, prefill_start, prefill_end));
    m_timing.prefill_ms = ms;
    for (std::int64_t s = 1; s < N; ++s) {
        QB_CUDA_CHECK(cudaEventElapsedTime(&ms, event(static_cast<std::size_t>(s + 1)),
                                           event(static_cast<std::size_t>(s + 2))));
        m_timing.step_ms.push_back(ms);
    }

    // Each final beam's tokens, by walking the parent pointers back from the last step.
    for (std::int64_t j = 0; j < B; ++j) {
        std::vector<std::int32_t> seq(static_cast<std::size_t>(N));
        std::int64_t b = j;
        for (std::int64_t s = N - 1; s >= 0; --s) {
            seq[static_cast<std::size_t>(s)] = tokens[static_cast<std::size_t>(s * B + b)];
            b = parents[static_cast<std::size_t>(s * B + b)];
        }
        out.beams.push_back(std::move(seq));
        out.beam_scores.push_back(scores[static_cast<std::size_t>(j)]);
    }
    out.tokens = out.beams[0];
    return out;
}

std::vector<std::vector<float>> cuda_executor_impl::teacher_forced_logits(const prompt& p,
                                                                          const std::vector<std::int32_t>& forced) {
    if (forced.empty()) return {};
    check_prompt(p);
    m_fold = fold_norm_from_env();
    m_ablate = 0;  // teacher forcing is for quality figures: never ablated
    m_early_trigger = early_trigger_from_env();
    const auto n = static_cast<std::int64_t>(forced.size());
    // forced.back() predicts nothing: feed the prompt and forced[0, n - 1), keep the last n rows of logits.
    std::vector<std::int32_t> tokens = p.tokens;
    tokens.insert(tokens.end(), forced.begin(), forced.end() - 1);
    for (std::int32_t t : forced)
        if (t < 0 || t >= m_model.vocab_size) throw error("teacher_forced_logits: token id " + std::to_string(t) + " outside the vocabulary");
    const std::int64_t rows = p.length() + n - 1;
    ensure_buffers({rows, 1, rows, n, 1, static_cast<std::int64_t>(tokens.size())});
    upload_tokens(tokens);
    enqueue_prefill(p, rows, n);
    const std::int64_t V = m_model.vocab_size;
    std::vector<std::uint16_t> bits(static_cast<std::size_t>(n * V));
    QB_CUDA_CHECK(cudaMemcpyAsync(bits.data(), m_logits.get(), bits.size() * 2, cudaMemcpyDeviceToHost,
                                  m_context.stream()));
    QB_CUDA_CHECK(cudaStreamSynchronize(m_context.stream()));
    std::vector<std::vector<float>> out(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
        out[static_cast<std::size_t>(i)].resize(static_cast<std::size_t>(V));
        for (std::int64_t v = 0; v < V; ++v)
            out[static_cast<std::size_t>(i)][static_cast<std::size_t>(v)] = half_to_float(bits[static_cast<std::size_t>(i * V + v)]);
    }
    return out;
}

}  // namespace

std::unique_ptr<cuda_executor> make_cuda_executor(const model_config& model, const tensor_source& source,
                                                  const backend& backend, const cell_spec& cell,
                                                  device_context& context) {
    return std::make_unique<cuda_executor_impl>(model, source, backend, cell, context);
}

}  // namespace qbench
