// describe_cells: the expanded cells as a table a person can check before spending GPU hours on them.
#include "qbench/config/matrix.hpp"

#include <algorithm>
#include <array>

namespace qbench {
namespace {

constexpr std::size_t k_column_count = 9;
using row = std::array<std::string, k_column_count>;

// What distinguishes cells of the same framework and bits: the weight format's options.
std::string format_options(const cell_spec& c) {
    std::string s;
    if (c.framework == "gptq") {
        s = c.gptq.group_size < 0 ? "g-1" : "g" + std::to_string(c.gptq.group_size);
        if (c.gptq.desc_act) s += " act";
        if (!c.gptq.sym) s += " asym";
        s += " cal " + std::to_string(c.gptq.calibration_samples) + "x" + std::to_string(c.gptq.calibration_seq_len);
        if (c.gptq.memory_plan != "autogptq") s += " " + c.gptq.memory_plan;
    } else if (c.framework == "bnb") {
        if (c.bits == 8) {
            s = "int8 t" + nlohmann::json(c.bnb.int8_threshold).dump();
        } else if (c.bits == 4) {
            s = c.bnb.quant_type + " bs" + std::to_string(c.bnb.blocksize);
            if (c.bnb.double_quant) s += " dq";
            if (c.bnb.compute_dtype != "float16") s += " " + c.bnb.compute_dtype;
        }
        if (c.bnb.small_batch_path != "dequantize") s += " " + c.bnb.small_batch_path;
    }
    return s.empty() ? "-" : s;
}

std::string token_summary(const cell_spec& c) {
    const generation_options& g = c.generation;
    std::string s = std::to_string(g.image_tokens) + "+" + std::to_string(g.prompt_tokens) + "->" +
                    std::to_string(g.max_new_tokens) + " " + g.mode + " x" + std::to_string(g.repetitions);
    return s;
}

}  // namespace

std::string describe_cells(const std::vector<cell_spec>& cells) {
    std::vector<row> rows;
    rows.push_back({"#", "model", "framework", "bits", "beam", "instance", "format", "img+prompt->new", "hash"});
    for (std::size_t i = 0; i < cells.size(); ++i) {
        const cell_spec& c = cells[i];
        rows.push_back({std::to_string(i + 1), c.model, c.framework, std::to_string(c.bits), std::to_string(c.beam),
                        c.instance, format_options(c), token_summary(c), cell_hash(c)});
    }
    std::array<std::size_t, k_column_count> width{};
    for (const row& r : rows)
        for (std::size_t k = 0; k < k_column_count; ++k) width[k] = std::max(width[k], r[k].size());
    // Numbers right-aligned, text left-aligned.
    constexpr std::array<bool, k_column_count> right = {true, false, false, true, true, false, false, false, false};
    std::string out;
    for (const row& r : rows) {
        std::string line;
        for (std::size_t k = 0; k < k_column_count; ++k) {
            const std::string pad(width[k] - r[k].size(), ' ');
            if (k) line += "  ";
            line += right[k] ? pad + r[k] : r[k] + (k + 1 < k_column_count ? pad : "");
        }
        out += line + "\n";
    }
    out += std::to_string(cells.size()) + (cells.size() == 1 ? " cell\n" : " cells\n");
    return out;
}

}  // namespace qbench
