// libFuzzer entry: the bytes as a results document. The reader must answer every input with a document or a
// qbench::error (input_error naming the place); anything else escaping, a crash or a sanitizer report is a bug.
// An accepted document must also survive the writer: serialized and parsed again, it gives the same cells.
#include "qbench/common/errors.hpp"
#include "qbench/results/results_file.hpp"
#include "qbench/results/table.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    qbench::results_document doc;
    try {
        doc = qbench::parse_results(text, "fuzz.json");
    } catch (const qbench::error&) {
        return 0;
    }
    (void)qbench::format_cells_table(doc.cells);
    // Round trip: what the reader accepted, the writer must write and the reader accept again, unchanged.
    const std::string written = qbench::dump_results_json(qbench::results_to_json(doc));
    const qbench::results_document again = qbench::parse_results(written, "fuzz-roundtrip.json");
    if (again.cells.size() != doc.cells.size()) std::abort();
    for (std::size_t i = 0; i < doc.cells.size(); ++i)
        if (again.cells[i].config_hash != doc.cells[i].config_hash || again.cells[i].metrics != doc.cells[i].metrics)
            std::abort();
    return 0;
}
