// The decode stack's builder (gptq_chain.cuh): a Llama layer stack as the persistent kernel's phase table, five phases
// a layer, and its write-once activations.
#include "backends/gptq/gptq_a_layout.hpp"
#include "backends/gptq/gptq_chain.cuh"
#include "backends/gptq/gptq_chain_table.cuh"
#include "qbench/common/errors.hpp"

#include <string>
#include <vector>

namespace qbench::gptq {

std::string gptq_stack_refusal(const stack_shape& s, const std::vector<stack_layer>& layers) {
    if (layers.empty()) return "no layers";
    if (!a_with_bits(s.bits, [](auto) {})) return std::to_string(s.bits) + "-bit layers";
    if (s.head_dim != k_attention_head_dim) return "head_dim " + std::to_string(s.head_dim) + " (the stack's attention is compiled for 128)";
    if (s.kv_heads <= 0 || s.heads % s.kv_heads != 0) return "heads not grouped evenly";
    if (s.hidden % static_cast<int>(k_block_rows) != 0 || s.hidden / 8 > 32 * 32)
        return "hidden size " + std::to_string(s.hidden) + " (the folded norm needs a multiple of 128, at most 8192)";
    for (const stack_layer& l : layers) {
        for (const chain_linear* c : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down})
            if (!linear_refusal(*c).empty())
                return "a linear outside the v3 layout's whole k-blocks and mtiles";
        if (l.gate.n != l.up.n || l.q.n != s.heads * s.head_dim || l.k.n != s.kv_heads * s.head_dim || l.v.n != l.k.n ||
            l.o.n != s.hidden || l.down.n != s.hidden)
            return "linears whose shapes are not a Llama layer's";
    }
    return {};
}

gptq_decode_stack::gptq_decode_stack(device_context& context, const stack_shape& s, const std::vector<stack_layer>& layers) {
    if (const std::string why = gptq_stack_refusal(s, layers); !why.empty()) throw unsupported_error("gptq decode stack: " + why);
    const int H = s.hidden;
    // The write-once buffers of each layer (words): q | k | v, the attention output, the stream after o, the SwiGLU
    // product, and (but for the last layer, which writes x itself) the stream after down.
    std::size_t words = 0;
    std::vector<std::size_t> at;
    for (std::size_t l = 0; l < layers.size(); ++l) {
        const stack_layer& L = layers[l];
        at.push_back(words);
        words += static_cast<std::size_t>(L.q.n + L.k.n + L.v.n + H + H + L.gate.n) / 2;
        if (l + 1 < layers.size()) words += static_cast<std::size_t>(H) / 2;
    }
    m_acts = context.allocate(words * 4, "gptq decode stack activations");
    auto* acts = m_acts.as<std::uint32_t>();
    auto* x = reinterpret_cast<std::uint32_t*>(s.x);
    phase_list list;
    list.max_len = s.max_len;
    const std::uint32_t* stream_in = x;
    for (std::size_t l = 0; l < layers.size(); ++l) {
        const stack_layer& L = layers[l];
        std::uint32_t* q = acts + at[l];
        std::uint32_t* k = q + L.q.n / 2;
        std::uint32_t* v = k + L.k.n / 2;
        std::uint32_t* attn = v + L.v.n / 2;
        std::uint32_t* xa = attn + H / 2;
        std::uint32_t* act = xa + H / 2;
        std::uint32_t* stream_out = l + 1 < layers.size() ? act + L.gate.n / 2 : x;

        chain_phase qkv = linear_phase({{L.q, q}, {L.k, k}, {L.v, v}});
        qkv.input = k_input_norm, qkv.x = stream_in, qkv.norm_weight = L.input_norm, qkv.eps = s.eps;
        qkv.prefetch_rows = 1;  // the attention's rows (below), asked of L2 while q/k/v streams
        qkv.k_cache = L.k_cache, qkv.v_cache = L.v_cache, qkv.pos = s.pos, qkv.slot_table = s.slot_table;
        qkv.max_len = s.max_len, qkv.heads = s.heads, qkv.kv_heads = s.kv_heads;
        chain_phase att;
        att.attention = 1;
        att.q = q, att.k = k, att.v = v, att.out = attn;
        att.k_cache = L.k_cache, att.v_cache = L.v_cache, att.inv_freq = s.inv_freq, att.pos = s.pos, att.slot_table = s.slot_table;
        att.max_len = s.max_len, att.heads = s.heads, att.kv_heads = s.kv_heads, att.scale = s.scale;
        chain_phase o = linear_phase({{L.o, xa}});
        o.x = attn, o.residual = 1, o.res = stream_in;
        chain_phase gu = linear_phase({{L.gate, act}, {L.up, nullptr}});
        gu.paired = 1, gu.mtiles = L.gate.n / static_cast<int>(k_a_tile_cols);
        gu.input = k_input_norm, gu.x = xa, gu.norm_weight = L.post_norm, gu.eps = s.eps;
        chain_phase down = linear_phase({{L.down, stream_out}});
        down.x = act, down.residual = 1, down.res = xa;
        for (const chain_phase& e : {qkv, att, o, gu, down}) {
            list.phases.push_back(e);
            if (e.attention == 0) note_sizes(list, e);
        }
        stream_in = stream_out;
    }
    m_plan = plan_phases(list, s.bits);
    m_plan.y_words = words;
    m_scratch = context.allocate(m_plan.scratch_bytes, "gptq decode stack table");
    upload_table(list.phases, m_scratch.get(), context.stream());
}

void gptq_decode_stack::enqueue(cudaStream_t stream, const chain_tuning& tuning) {
    launch_phases(m_plan, m_acts.as<std::uint32_t>(), m_plan.y_words, m_scratch.get(), stream, tuning);
}

}  // namespace qbench::gptq
