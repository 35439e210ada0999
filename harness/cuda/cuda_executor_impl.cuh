#pragma once
// The CUDA executor's class (private to harness/cuda): its per-layer weights, the cache of captured decode steps and
// the cuda_executor_impl declaration. Its members are defined in cuda_executor.cu (construction, buffers, the layer,
// head and prefill enqueue) and cuda_executor_generate.cu (the decode step, CUDA graphs and the generation loop); the
// measurement switches it reads are in cuda_executor_switches.cuh. make_cuda_executor (qbench/engine/cuda_api.hpp)
// is the only way in.
//
// A named namespace rather than an anonymous one, so that several translation units can define the members.
#include "cuda/attention.cuh"
#include "cuda/cuda_executor_switches.cuh"
#include "cuda/decode_stack.hpp"
#include "cuda/device_context.cuh"
#include "cuda/fused_linear.hpp"
#include "cuda/launch.cuh"
#include "cuda/select.cuh"

#include "qbench/backend/device_linear.hpp"
#include "qbench/engine/cuda_api.hpp"
#include "qbench/engine/model_config.hpp"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qbench::executor_detail {

// The order of gpu_layer::linear, which enqueue_layer indexes by position.
inline constexpr std::array<linear_kind, 7> k_layer_linears{linear_kind::q_proj,    linear_kind::k_proj,
                                                            linear_kind::v_proj,    linear_kind::o_proj,
                                                            linear_kind::gate_proj, linear_kind::up_proj,
                                                            linear_kind::down_proj};

struct gpu_layer {
    device_buffer input_norm, post_norm;
    std::array<std::unique_ptr<device_linear>, 7> linear;  // k_layer_linears order
    fused_linear* fused_q = nullptr;     // q_proj's fusion capability (q, k, v in one kernel), if its backend has it
    fused_linear* fused_gate = nullptr;  // gate_proj's (gate, up and SwiGLU in one kernel)
    fused_linear* fused_o = nullptr;     // o_proj's (residual add in the epilogue)
    fused_linear* fused_down = nullptr;  // down_proj's (residual add in the epilogue)
};

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
    bool stack = false;  // the layers as the backend's persistent stack (decode_stack.hpp)
    bool norm_in_epilogue = false;  // o/down form the next RMSNorm in their launch (norm_in_epilogue_from_env)
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
        if (rows == 1 && m_stack_used) return path + "+persistent-stack";
        const fused_linear* f = m_layers.at(0).fused_q;
        const fused_linear* fo = m_layers.at(0).fused_o;
        if (norm_in_epilogue_from_env() && fo != nullptr && fo->norms_in_epilogue(rows) && !folds(fold_norm_from_env(), f))
            path += "+norm-in-epilogue";
        else if (f != nullptr && m_fuse && f->folds_norm(rows))
            path += folds(fold_norm_from_env(), f) ? "+fold-norm" + f->folded_norm_form() : "+norm-kernel";
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
    // cuda_executor_generate.cu: the decode step, its CUDA graphs and the step timing events.
    void enqueue_choose(const generation_config& g, std::int64_t parent_rows);
    void enqueue_decode_step(const generation_config& g);
    bool ensure_stack();
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
    // the top of cuda_executor.cu; refreshed at each generate): fold(f) for linear f. m_delta_pending: while enqueuing,
    // whether m_o holds a block output not yet added into m_x (the next RMSNorm kernel must add it).
    fold_choice m_fold = fold_choice::backend;
    bool fold(const fused_linear* f) const { return folds(m_fold, f); }
    bool m_early_trigger = true;  // early_trigger_from_env(), refreshed at each generate
    unsigned m_ablate = 0;  // ablate_bits, decode steps only (measurement only: ablate_from_env)
    bool m_delta_pending = false;
    // QBENCH_NORM_IN_EPILOGUE (refreshed at each generate): o/down form the next RMSNorm in their own launch where the
    // backend offers it. m_h_ready: while enqueuing, whether m_h already holds the norm the next linear reads.
    bool m_norm_epilogue = false;
    bool m_h_ready = false;
    // The backend's persistent layer stack for one-row decode steps (decode_stack.hpp), built at the first generate
    // after the buffers were sized (it holds their addresses; ensure_buffers drops it). m_use_stack: this generate's steps run it (one row, QBENCH_DECODE_STACK=1, nothing ablated);
    // m_stack_used: the last generate's did (the kernel path says so).
    std::unique_ptr<decode_stack> m_stack;
    bool m_stack_tried = false;
    bool m_use_stack = false;
    bool m_stack_used = false;
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

}  // namespace qbench::executor_detail
