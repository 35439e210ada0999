// The CUDA executor's measurement switches (cuda_executor_switches.cuh): each reads its environment variable afresh
// at every call, so a change between two generate calls takes effect.
#include "cuda/cuda_executor_switches.cuh"

#include <cstdlib>
#include <string>

namespace qbench::executor_detail {

fold_choice fold_norm_from_env() {
    const char* env = std::getenv("QBENCH_FP16_FOLD_NORM");
    if (env == nullptr || *env == '\0') return fold_choice::backend;
    return std::atoi(env) != 0 ? fold_choice::on : fold_choice::off;
}
bool folds(fold_choice choice, const fused_linear* f) {
    return f != nullptr && (choice == fold_choice::on || (choice == fold_choice::backend && f->prefers_folded_norm()));
}

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

bool early_trigger_from_env() {
    const char* env = std::getenv("QBENCH_PDL_EARLY_TRIGGER");
    return env == nullptr || std::atoi(env) != 0;
}

bool norm_in_epilogue_from_env() {
    const char* env = std::getenv("QBENCH_NORM_IN_EPILOGUE");
    return env != nullptr && std::atoi(env) != 0;
}

bool decode_stack_from_env() {
    const char* env = std::getenv("QBENCH_DECODE_STACK");
    return env != nullptr && std::atoi(env) != 0;
}

}  // namespace qbench::executor_detail
