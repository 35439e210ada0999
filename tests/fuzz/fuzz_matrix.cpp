// libFuzzer target: arbitrary bytes as matrix YAML against a small in-code catalog. Bad input must end in a
// qbench::error (input_error) and nothing else: no crash, no other exception, no sanitizer report. Whatever parses
// must also survive the rest of what `qbench validate` and `qbench run` do with it: filters, the table, and the
// cell JSON round trip the runner uses to hand cells to child processes (checked to be exact).
#include "qbench/common/errors.hpp"
#include "qbench/config/matrix.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace {

qbench::catalog make_catalog() {
    qbench::catalog c;
    qbench::model_config tiny;
    tiny.name = "tiny";
    tiny.hidden_size = 256;
    tiny.intermediate_size = 688;
    tiny.num_layers = 2;
    tiny.num_heads = 8;
    tiny.num_kv_heads = 4;
    tiny.vocab_size = 512;
    tiny.max_position = 512;
    tiny.minigpt4_image_tokens = 8;
    c.models[tiny.name] = tiny;
    qbench::model_config v7 = tiny;
    v7.name = "vicuna-7b-v0";
    v7.max_position = 2048;
    v7.minigpt4_image_tokens = 32;
    c.models[v7.name] = v7;
    c.instances["local"] = qbench::local_instance();
    qbench::instance_profile g5;
    g5.name = "g5.2xlarge";
    g5.vram_usable_bytes = 23028ull << 20;
    g5.host_ram_bytes = 32ull << 30;
    c.instances[g5.name] = g5;
    return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const qbench::catalog catalogs = make_catalog();
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        const qbench::matrix m = qbench::parse_matrix(text, "fuzz.yaml", catalogs);
        (void)qbench::describe_cells(m.cells);
        (void)qbench::apply_filters(m.cells, {"bits=4,8", "framework=gptq,bnb"});
        for (const qbench::cell_spec& cell : m.cells) {
            const nlohmann::json j = qbench::cell_to_json(cell);
            const qbench::cell_spec back = qbench::cell_from_json(nlohmann::json::parse(j.dump()), "fuzz-cell");
            if (qbench::cell_to_json(back) != j || qbench::cell_hash(back) != qbench::cell_hash(cell)) {
                std::fprintf(stderr, "cell JSON round trip changed the cell: %s\n", j.dump().c_str());
                std::abort();
            }
            (void)qbench::cell_label(cell);
        }
    } catch (const qbench::error&) {
        // Expected for bad input: a message with file:line:column.
    }
    return 0;
}
