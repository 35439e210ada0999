// What the persistent GPTQ decode stack refuses, and why (gptq_stack_refusal, gptq_chain.cuh): the executor falls back
// to the launched layers with that reason, so each refusal must name what it is about. A CPU test (label cpu): the
// check reads shapes only, never the weights behind the pointers.
#include "backends/gptq/gptq_chain.cuh"

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

using namespace qbench::gptq;

namespace {

// Stands for device weights: the refusal check compares pointers with null and never reads through them.
const std::uint32_t k_fake_words[4] = {};

chain_linear linear(int n, int k) { return chain_linear{k_fake_words, k_fake_words, n, k / 128}; }

// A Llama layer of hidden H, intermediate I, heads x 128 (kv_heads x 128 for k and v).
stack_layer llama_layer(int H, int I, int heads, int kv_heads) {
    stack_layer l;
    l.q = linear(heads * 128, H);
    l.k = linear(kv_heads * 128, H);
    l.v = linear(kv_heads * 128, H);
    l.o = linear(H, heads * 128);
    l.gate = linear(I, H);
    l.up = linear(I, H);
    l.down = linear(H, I);
    return l;
}

stack_shape shape_of(int bits, int H, int heads, int kv_heads, int head_dim = 128) {
    stack_shape s;
    s.bits = bits;
    s.hidden = H;
    s.heads = heads;
    s.kv_heads = kv_heads;
    s.head_dim = head_dim;
    return s;
}

}  // namespace

TEST_CASE("the GPTQ decode stack takes Llama layers of v3 widths and head_dim 128", "[gptq][stack]") {
    const std::vector<stack_layer> vicuna(2, llama_layer(4096, 11008, 32, 32));
    for (int bits : {2, 3, 4, 8}) CHECK(gptq_stack_refusal(shape_of(bits, 4096, 32, 32), vicuna).empty());
    const std::vector<stack_layer> grouped(3, llama_layer(1024, 2816, 8, 4));
    CHECK(gptq_stack_refusal(shape_of(4, 1024, 8, 4), grouped).empty());
}

TEST_CASE("the GPTQ decode stack refuses, by name, what it cannot run", "[gptq][stack]") {
    const std::vector<stack_layer> vicuna(2, llama_layer(4096, 11008, 32, 32));
    CHECK(gptq_stack_refusal(shape_of(4, 4096, 32, 32), {}) == "no layers");
    CHECK(gptq_stack_refusal(shape_of(5, 4096, 32, 32), vicuna).find("5-bit") != std::string::npos);
    CHECK(gptq_stack_refusal(shape_of(4, 4096, 64, 64, 64), vicuna).find("head_dim 64") != std::string::npos);
    CHECK(gptq_stack_refusal(shape_of(4, 4096, 32, 5), vicuna).find("grouped") != std::string::npos);
    CHECK(gptq_stack_refusal(shape_of(4, 4000, 32, 32), vicuna).find("hidden size 4000") != std::string::npos);

    std::vector<stack_layer> bad = vicuna;
    bad[1].up = linear(11008 + 16, 4096);  // gate and up differ
    CHECK(gptq_stack_refusal(shape_of(4, 4096, 32, 32), bad).find("Llama layer") != std::string::npos);
    bad = vicuna;
    bad[0].down.n = 4096 + 8;  // not whole mtiles
    CHECK(gptq_stack_refusal(shape_of(4, 4096, 32, 32), bad).find("mtiles") != std::string::npos);
    bad = vicuna;
    bad[1].o.qweight = nullptr;  // a layer without weights
    CHECK(gptq_stack_refusal(shape_of(4, 4096, 32, 32), bad).find("v3 layout") != std::string::npos);
    bad = vicuna;
    bad[0].down = linear(4096, 128 * 97);  // K past what a CTA stages
    CHECK(gptq_stack_refusal(shape_of(4, 4096, 32, 32), bad).find("k-blocks") != std::string::npos);
}
