// The CUDA executor's generation: the decode step (embedding, layers, head, token choice), its capture as a CUDA
// graph keyed by what the step depends on (graph_key) and the replay, the per-step timing events, and the host side
// of generate and teacher_forced_logits. The layers and the head are enqueued by cuda_executor.cu.
#include "cuda/cuda_check.cuh"
#include "cuda/cuda_executor_impl.cuh"
#include "cuda/embedding.cuh"
#include "cuda/select.cuh"

#include "qbench/common/errors.hpp"
#include "qbench/common/half.hpp"
#include "qbench/engine/cuda_api.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace qbench::executor_detail {

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
    m_h_ready = false;
    if (m_use_stack) {
        m_stack->enqueue(m_context.stream());
    } else {
        for (std::int64_t l = 0; l < m_model.num_layers; ++l) enqueue_layer(l, B, true);
    }
    enqueue_head(0, B);
    enqueue_choose(g, B);
}

bool cuda_executor_impl::ensure_stack() {
    if (m_stack_tried) return m_stack != nullptr;
    m_stack_tried = true;
    auto* provider = dynamic_cast<decode_stack_provider*>(m_layers.at(0).linear[0].get());
    if (provider == nullptr) return false;
    const attention_shape a = attn_shape();
    decode_stack_desc d;
    d.hidden = static_cast<int>(m_model.hidden_size);
    d.heads = a.heads, d.kv_heads = a.kv_heads, d.head_dim = a.head_dim;
    d.eps = m_model.rms_norm_eps;
    d.scale = a.scale;
    d.max_len = a.max_len;
    d.inv_freq = m_inv_freq.as<float>();
    d.pos = m_pos.as<std::int32_t>();
    d.slot_table = m_table.as<std::int32_t>();  // row 0: the one row's slots
    d.x = m_x.as<__half>();
    for (std::int64_t l = 0; l < m_model.num_layers; ++l) {
        const gpu_layer& layer = m_layers[static_cast<std::size_t>(l)];
        decode_stack_layer s;
        for (std::size_t i = 0; i < layer.linear.size(); ++i) s.linear[i] = layer.linear[i].get();
        s.input_norm = layer.input_norm.as<__half>();
        s.post_norm = layer.post_norm.as<__half>();
        s.k_cache = kcache(l);
        s.v_cache = vcache(l);
        d.layers.push_back(s);
    }
    std::string why;  // the launched layers run instead, whatever the reason
    m_stack = provider->make_decode_stack(m_context, d, why);
    return m_stack != nullptr;
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

generation_output cuda_executor_impl::generate(const prompt& p, const generation_config& g) {
    if (g.max_new_tokens < 0) throw error("generate: max_new_tokens must be >= 0");
    if (g.beam_width < 1) throw error("generate: beam_width must be >= 1");
    if (g.beam_width > 1 && g.mode != decode_mode::beam)
        throw error("generate: beam_width " + std::to_string(g.beam_width) + " needs mode beam");
    if (g.mode == decode_mode::sample && !(g.temperature > 0)) throw error("generate: temperature must be > 0");
    check_prompt(p);
    m_fold = fold_norm_from_env();
    m_norm_epilogue = norm_in_epilogue_from_env();
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
    // One row: the backend's persistent stack where it has one (built here, outside any capture: it uploads its table).
    m_use_stack = B == 1 && m_ablate == 0 && decode_stack_from_env() && ensure_stack();
    m_stack_used = m_use_stack;
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
                        m_context.pdl_enabled(), m_fold, m_ablate, m_early_trigger, m_use_stack, m_norm_epilogue};
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
    m_norm_epilogue = norm_in_epilogue_from_env();
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

}  // namespace qbench::executor_detail
