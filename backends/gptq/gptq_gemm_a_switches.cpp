// The host-side switches of GPTQ kernel v3 (gptq_gemm_a.cuh): environment variables read when a layer loads, and
// the pairing policy they select. Host code only; the kernels and their launchers are in gptq_gemm_a.cu.
#include "backends/gptq/gptq_gemm_a.cuh"

#include "cuda/launch.cuh"

#include <cstdlib>
#include <string>

namespace qbench::gptq {

a_x_copy chosen_x_copy() {
    const std::string choice = string_switch_from_env("QBENCH_GPTQ_XCOPY");
    if (choice == "plain") return a_x_copy::plain;
    if (choice == "async") return a_x_copy::async;
    if (choice == "pairs") return a_x_copy::pairs;
    return a_x_copy::quads;
}

a_pairing a_pairing_from_env() {
    const std::string choice = string_switch_from_env("QBENCH_GPTQ_PAIR");
    if (choice == "1") return a_pairing::always;
    if (choice == "0") return a_pairing::never;
    if (choice == "beams") return a_pairing::beams;
    return a_pairing::by_width;
}

bool a_pairs(a_pairing policy, int bits, int rows) {
    switch (policy) {
        case a_pairing::always: return true;
        case a_pairing::beams: return rows >= 2;
        case a_pairing::by_width: return bits <= 3 || (bits == 4 && rows >= 4) || (bits == 8 && rows >= 2);
        case a_pairing::never: break;
    }
    return false;
}

bool a_pair_spread_from_env() {
    static const bool spread = [] {
        const char* v = std::getenv("QBENCH_GPTQ_PAIR_SPREAD");
        return v != nullptr && std::string(v) == "1";
    }();
    return spread;
}

int a_l2_prefetch_from_env() {
    const int kb = int_switch_from_env("QBENCH_GPTQ_L2PRE", 0, 1024);
    return kb < 0 ? 0 : kb * 1024;
}

bool a_norm_scaled_from_env() { return string_switch_from_env("QBENCH_GPTQ_NORM_FOLD") == "scaled"; }

int a_norm_probe_from_env() {
    const char* v = std::getenv("QBENCH_GPTQ_NORM_PROBE");
    return v == nullptr ? 0 : std::atoi(v) & 3;
}

}  // namespace qbench::gptq
