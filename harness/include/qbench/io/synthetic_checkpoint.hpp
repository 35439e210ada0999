#pragma once
/// Synthetic checkpoints: the exact tensor names and shapes of a Hugging Face Llama model, filled with the values
/// of synthetic_weights.hpp, either generated on demand (make_synthetic_source) or written once to a cached
/// safetensors checkpoint (ensure_synthetic_checkpoint) so loading it costs what loading a real one costs.
///
/// Cache layout (the version suffix changes whenever the formulas or the layout change):
///   <cache_dir>/<model>-seed<seed>-v1/
///       model.safetensors                       or  model-0000k-of-0000n.safetensors + model.safetensors.index.json
///       config.json                             Hugging Face LlamaConfig fields (hf_config.hpp)
///       .qbench-complete                        written last: the model shape and seed it was made for
#include "qbench/engine/model_config.hpp"
#include "qbench/io/safetensors_writer.hpp"
#include "qbench/io/tensor_source.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace qbench {

/// Bump when the values or the file layout of synthetic checkpoints change, so stale caches are not reused.
inline constexpr int k_synthetic_checkpoint_version = 1;
/// The file that marks a cached checkpoint directory as complete.
inline constexpr std::string_view k_synthetic_complete_marker = ".qbench-complete";

/// The tensors of `model`'s checkpoint in Hugging Face order: embed_tokens, then per layer input_layernorm,
/// q/k/v/o_proj, post_attention_layernorm, gate/up/down_proj, then model.norm and lm_head; all F16.
/// Throws error when the model's sizes are not positive or heads do not divide the hidden size.
std::vector<tensor_decl> synthetic_tensor_decls(const model_config& model);

/// Fills `out` (fp16 bit patterns, numel of `shape` elements) with synthetic tensor `tensor_name` of model
/// `model_name`, splitting the work over `threads` threads (0: hardware_concurrency). The values depend only on
/// (model_name, tensor_name, seed, element index), never on the thread count.
/// Throws error for a tensor whose role is `other` or a shape that does not fit its role.
void generate_synthetic_tensor(std::string_view model_name, std::string_view tensor_name,
                               std::span<const std::int64_t> shape, std::uint64_t seed, std::span<std::uint16_t> out,
                               unsigned threads = 0);

/// A tensor_source whose read() generates each tensor on demand (nothing on disk). Its metadata is
/// {"format": "pt", "qbench_synthetic": "1", "model": <name>, "seed": <seed>}.
std::unique_ptr<tensor_source> make_synthetic_source(const model_config& model, std::uint64_t seed,
                                                     unsigned threads = 0);

/// Writes (once) the synthetic checkpoint of (model, seed) under `cache_dir` and returns its directory. Streams
/// tensor by tensor, so RAM holds at most two tensors. Safe when several processes race: one builds in a temporary
/// directory under a lock, then renames it into place; the others wait and reuse it. Throws input_error when a
/// cached directory exists but was made for a different model shape (delete it to rebuild). Shards of at most 10 GB,
/// transformers' default when the seed's Vicuna checkpoints were written (AutoGPTQ's memory plan holds one of them).
std::filesystem::path ensure_synthetic_checkpoint(const model_config& model, std::uint64_t seed,
                                                  const std::filesystem::path& cache_dir,
                                                  std::uint64_t max_shard_bytes = 10'000'000'000);

}  // namespace qbench
