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
// path string says which ran ("+fold-norm" / "+norm-kernel"). GPTQ layers loaded with QBENCH_GPTQ_NORM_FOLD=scaled
// prefer to fold, in a form that is not bit-identical (x * w staged, the inverse RMS applied to the outputs; path
// "+fold-norm-scaled").
//
// Norm in the epilogue (QBENCH_NORM_IN_EPILOGUE=1, read at each generate; off by default: measured slower on the H100):
// o_proj and down_proj add into x and their launch's last CTA writes h = rms_norm(x) with the next norm's weights
// (fused_linear::forward_residual_normed; GPTQ kernel v3, the bnb 4-bit team kernel), so the RMSNorm kernel between
// them and the next linears does not run; bit-identical by construction (test_gpu_gptq_stack and test_gpu_bnb_executor
// check it). m_h_ready tracks that h is already formed. Path suffix "+norm-in-epilogue".
//
// The files: cuda_executor_impl.cuh declares the class; this file loads the weights, sizes the buffers and enqueues a
// layer, the head and the prefill; cuda_executor_generate.cu enqueues the decode step, captures and replays it as a
// CUDA graph and runs the host side of generate and teacher_forced_logits; cuda_executor_switches.cu reads the
// measurement-only environment switches (QBENCH_FP16_FOLD_NORM, QBENCH_DECODE_ABLATE, QBENCH_PDL_EARLY_TRIGGER,
// QBENCH_DECODE_STACK, QBENCH_NORM_IN_EPILOGUE).
#include "cuda/attention.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/cuda_executor_impl.cuh"
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
#include "qbench/engine/cpu_model.hpp"
#include "qbench/engine/cuda_api.hpp"
#include "qbench/engine/reference_ops.hpp"
#include "qbench/io/tensor_source.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace qbench::executor_detail {

namespace {

using steady = std::chrono::steady_clock;

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

}  // namespace

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
    m_stack.reset();  // it holds the buffers' addresses
    m_stack_tried = false;
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
    // On our stream: it does not wait for the legacy default stream (non-blocking), where cudaMemset would run.
    QB_CUDA_CHECK(cudaMemsetAsync(m_greedy.get(), 0, m_greedy.size(), m_context.stream()));
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
    // Branches only in decode steps (the prefill's GEMMs are long enough to fill the GPU on their own), and only for
    // linears whose forwards may overlap (device_linear::concurrent_forwards).
    auto branches_for = [&](std::initializer_list<int> members) {
        if (!decode || !m_parallel) return false;
        for (int i : members)
            if (!layer.linear[static_cast<std::size_t>(i)]->concurrent_forwards(rows)) return false;
        return true;
    };
    device_linear* const kv[2] = {layer.linear[1].get(), layer.linear[2].get()};
    void* const qkv_out[3] = {m_q.get(), m_k.get(), m_v.get()};
    // Folded: q/k/v form rms_norm(x) themselves (x must be up to date: no block output pending). m_h_ready: the last
    // down_proj's launch already wrote h (QBENCH_NORM_IN_EPILOGUE).
    const bool qkv_folded = !m_h_ready && m_fuse && !m_delta_pending && fold(layer.fused_q) &&
                            layer.fused_q->forward_group_normed(
                                kv, 2, fused_linear::normed_input{x, layer.input_norm.get(), eps}, rows, qkv_out, st);
    const bool skip_norm = decode && (m_ablate & k_ablate_norm) != 0;  // measurement only (ablate_from_env)
    if (!qkv_folded) {
        if (!skip_norm && !m_h_ready)
            launch_rms_norm(x, m_delta_pending ? out : nullptr, layer.input_norm.as<__half>(), eps, rows, H, h, o);
        m_delta_pending = false;
        m_h_ready = false;
        if (!(m_fuse && layer.fused_q != nullptr && layer.fused_q->forward_group(kv, 2, h, rows, qkv_out, st))) {
            const bool branches = branches_for({0, 1, 2});
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
    // Folded: x += o_proj(attn) in the GEMV's epilogue (and, QBENCH_NORM_IN_EPILOGUE, h = the post-attention norm of x
    // by the same launch, where gate/up do not fold it); otherwise the block output waits in m_o for the next norm.
    if (m_norm_epilogue && !fold(layer.fused_gate) && layer.fused_o != nullptr &&
        layer.fused_o->forward_residual_normed(m_attn.get(), rows, x,
                                               fused_linear::normed_output{h, layer.post_norm.get(), eps}, st)) {
        m_delta_pending = false;
        m_h_ready = true;
    } else if (fold(layer.fused_o) && layer.fused_o->forward_residual(m_attn.get(), rows, x, st)) {
        m_delta_pending = false;
    } else {
        layer.linear[3]->forward(m_attn.get(), rows, out, st);
        m_delta_pending = true;
    }
    // act lands in m_gate either way (the fused kernels write only the product; the unfused SwiGLU runs in place).
    const bool gate_folded =
        !m_h_ready && m_fuse && !m_delta_pending && fold(layer.fused_gate) &&
        layer.fused_gate->forward_swiglu_normed(
            *layer.linear[5], fused_linear::normed_input{x, layer.post_norm.get(), eps}, rows, m_gate.get(), st);
    if (!gate_folded) {
        if (!skip_norm && !m_h_ready)
            launch_rms_norm(x, m_delta_pending ? out : nullptr, layer.post_norm.as<__half>(), eps, rows, H, h, o);
        m_delta_pending = false;
        m_h_ready = false;
        if (!(m_fuse && layer.fused_gate != nullptr &&
              layer.fused_gate->forward_swiglu(*layer.linear[5], h, rows, m_gate.get(), st))) {
            const bool branches = branches_for({4, 5});
            if (branches) fork(1);
            layer.linear[4]->forward(h, rows, m_gate.get(), st);
            layer.linear[5]->forward(h, rows, m_up.get(), branches ? m_side[0] : st);
            if (branches) join(1);
            launch_swiglu(m_gate.as<__half>(), m_up.as<__half>(), rows * I, m_gate.as<__half>(), o);  // in place
        }
    }
    // The next norm's weights: the next layer's input norm, or the final norm before the LM head.
    const bool last = l + 1 == m_model.num_layers;
    const fused_linear* next_reader = last ? m_fused_head : m_layers[static_cast<std::size_t>(l + 1)].fused_q;
    const void* next_norm = last ? m_final_norm.get() : m_layers[static_cast<std::size_t>(l + 1)].input_norm.get();
    if (m_norm_epilogue && !fold(next_reader) && layer.fused_down != nullptr &&
        layer.fused_down->forward_residual_normed(m_gate.get(), rows, x, fused_linear::normed_output{h, next_norm, eps}, st)) {
        m_delta_pending = false;
        m_h_ready = true;
    } else if (fold(layer.fused_down) && layer.fused_down->forward_residual(m_gate.get(), rows, x, st)) {
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
    if (m_h_ready) {  // the last down_proj's launch wrote the final norm of every row (QBENCH_NORM_IN_EPILOGUE)
        m_h_ready = false;
        m_lm_head->forward(m_h.as<__half>() + first * H, logit_rows, m_logits.get(), m_context.stream());
        return;
    }
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
    m_h_ready = false;
    for (std::int64_t l = 0; l < m_model.num_layers; ++l) enqueue_layer(l, rows, false);
    // Only the rows whose logits are wanted need the last residual add, the final norm and the LM head.
    enqueue_head(rows - logit_rows, logit_rows);
}

}  // namespace qbench::executor_detail

namespace qbench {

std::unique_ptr<cuda_executor> make_cuda_executor(const model_config& model, const tensor_source& source,
                                                  const backend& backend, const cell_spec& cell,
                                                  device_context& context) {
    return std::make_unique<executor_detail::cuda_executor_impl>(model, source, backend, cell, context);
}

}  // namespace qbench
