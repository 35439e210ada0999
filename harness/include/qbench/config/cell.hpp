#pragma once
/// One cell of an expanded matrix: everything needed to run it, and nothing about the machine it runs on.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace qbench {

/// GPTQ options (AutoGPTQ BaseQuantizeConfig names).
struct gptq_options {
    std::int64_t group_size = 128;        ///< -1 = one group per row
    bool desc_act = false;                ///< act-order
    bool static_groups = false;
    bool sym = true;
    double damp_percent = 0.01;
    std::int64_t calibration_samples = 128;
    std::int64_t calibration_seq_len = 2048;
    /// "autogptq": whole FP16 model staged in host RAM, as AutoGPTQ does; "streaming": one layer at a time.
    std::string memory_plan = "autogptq";
    /// Batch rows above which the fused kernel gives way to reconstruct-to-FP16 + cuBLAS (exllama's threshold).
    std::int64_t recons_threshold = 8;
};

/// bitsandbytes options (transformers BitsAndBytesConfig meanings).
struct bnb_options {
    std::string quant_type = "nf4";       ///< "nf4" | "fp4" (4-bit only)
    bool double_quant = false;            ///< bnb_4bit_use_double_quant
    std::int64_t blocksize = 64;          ///< 4-bit block size, power of two in [32, 4096]
    double int8_threshold = 6.0;          ///< llm_int8_threshold; 0 disables the outlier decomposition
    std::string compute_dtype = "float16";  ///< "float16" | "float32" | "bfloat16"
    /// Batch > 1 path: "dequantize" (bitsandbytes: dequantize to FP16 then cuBLAS) or "fused" (our fused kernel).
    std::string small_batch_path = "dequantize";
};

/// Generation settings of a cell.
struct generation_options {
    /// The prompt text the cell stands for (provenance; with synthetic weights the engine feeds prompt_tokens ids).
    std::string prompt = "Describe this image";
    std::int64_t prompt_tokens = 16;      ///< text tokens of the prompt ("Describe this image" + template)
    std::int64_t image_tokens = -1;       ///< image embeddings spliced into the prompt; -1 = auto from the model
    std::int64_t max_new_tokens = 32;
    std::string mode = "greedy";          ///< "greedy" | "sample"
    double temperature = 1.0;
    std::int64_t top_k = 0;               ///< 0 = off
    double top_p = 1.0;                   ///< 1 = off
    std::int64_t warmup = 1;              ///< untimed generations before the timed ones
    std::int64_t repetitions = 3;         ///< timed generations
};

struct cell_spec {
    std::string model;                    ///< model catalog name
    std::string framework;                ///< "fp16" | "gptq" | "bnb"
    std::int64_t bits = 16;
    std::int64_t beam = 1;                ///< beam width (1 = no beam search)
    std::string instance = "local";       ///< instance catalog name, or "local" for no budgets
    std::uint64_t seed = 0;               ///< 0 .. 2^63-1 in YAML and JSON (signed 64-bit integers there)
    gptq_options gptq;
    bnb_options bnb;
    generation_options generation;
};

/// The cell as JSON: every parameter that affects the result, framework options only for their framework.
nlohmann::json cell_to_json(const cell_spec& cell);
/// Inverse of cell_to_json (throws input_error with `where` on a bad object).
cell_spec cell_from_json(const nlohmann::json& j, const std::string& where);
/// A stable hash of cell_to_json (hex): equal cells have equal hashes on every machine; used by --resume.
std::string cell_hash(const cell_spec& cell);
/// Short human label: "vicuna-7b-v0 gptq 4b g128 beam1 g5.2xlarge", "tiny bnb 4b nf4 beam2 local",
/// "llama-2-7b-chat fp16 16b beam4 g4dn.2xlarge" (the format detail distinguishes cells of option axes).
std::string cell_label(const cell_spec& cell);

}  // namespace qbench
