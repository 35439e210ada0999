#include "qbench/engine/prompt.hpp"

#include "qbench/common/counter_rng.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/common/half.hpp"

#include <algorithm>
#include <string>

namespace qbench {

prompt make_prompt(const model_config& model, const generation_options& options, std::uint64_t seed) {
    if (options.prompt_tokens < 1)
        throw error("make_prompt: prompt_tokens must be at least 1 (BOS), got " + std::to_string(options.prompt_tokens));
    if (model.vocab_size <= 3)
        throw error("make_prompt: vocabulary of " + std::to_string(model.vocab_size) + " has no text ids above 2");
    const std::int64_t image_tokens = options.image_tokens < 0 ? model.minigpt4_image_tokens : options.image_tokens;

    prompt p;
    p.tokens.resize(static_cast<std::size_t>(options.prompt_tokens));
    p.tokens[0] = model.bos_token_id;
    const std::uint64_t key = stream_key(seed, hash_string("prompt"));
    const auto text_ids = static_cast<std::uint64_t>(model.vocab_size - 3);
    for (std::int64_t i = 1; i < options.prompt_tokens; ++i)
        p.tokens[i] = static_cast<std::int32_t>(3 + random_bits(key, static_cast<std::uint64_t>(i)) % text_ids);
    p.image_offset = std::max<std::int64_t>(1, options.prompt_tokens * 3 / 4);
    p.image_tokens = image_tokens;
    p.image_seed = seed;
    return p;
}

std::vector<float> image_embeddings(const prompt& p, std::int64_t hidden) {
    const std::uint64_t key = stream_key(p.image_seed, hash_string("image"));
    std::vector<float> rows(static_cast<std::size_t>(p.image_tokens * hidden));
    for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = round_to_half(normal01(key, i));
    return rows;
}

}  // namespace qbench
