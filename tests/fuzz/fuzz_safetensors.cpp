// libFuzzer target for the safetensors header parser: any input must either parse into a header that satisfies
// the format's invariants or throw a qbench::error. Any other exception, crash, sanitizer report or broken
// invariant is a finding.
#include "qbench/common/errors.hpp"
#include "qbench/io/safetensors.hpp"

#include <cstddef>
#include <cstdint>
#include <span>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    try {
        const qbench::safetensors_header h = qbench::parse_safetensors_header(bytes, size, "fuzz-input");
        // What a successful parse promises its callers: the tensors tile the data buffer exactly, each with the
        // byte count of its shape, and the buffer ends at the end of the file.
        std::uint64_t expected = 0;
        for (const auto& t : h.tensors) {
            if (t.begin != expected || t.end < t.begin) __builtin_trap();
            std::uint64_t n = qbench::dtype_size(t.type);
            for (auto d : t.shape) {
                if (d < 0) __builtin_trap();
                n *= static_cast<std::uint64_t>(d);
            }
            if (t.end - t.begin != n) __builtin_trap();
            expected = t.end;
        }
        if (h.data_start() + expected != size) __builtin_trap();
    } catch (const qbench::error&) {
        // a rejected input: the expected outcome for almost everything the fuzzer makes
    }
    return 0;
}
