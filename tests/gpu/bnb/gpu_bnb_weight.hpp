#pragma once
// The device copy of a reference 4-bit weight (bnb_quant_ref) and its view for the launchers, shared by the bnb GPU
// tests that call the kernels directly (no backend, no accounting allocator).
#include "backends/bnb/bnb_format.hpp"
#include "backends/bnb/bnb_kernels.cuh"
#include "backends/bnb/bnb_quant_ref.hpp"
#include "gpu_bnb_util.hpp"

#include <cstdint>
#include <cstring>
#include <vector>

namespace qbench::bnb::test {

struct device_4bit {
    dev<std::uint8_t> packed, codes;
    dev<float> absmax, nested_absmax, nested_code;
    device_4bit_view view;

    // A double-quantized weight gets its own copy of the nested map; map_scale != 1 stores a different map (as a
    // checkpoint may), so a group must use each member's own.
    explicit device_4bit(const quant_4bit_weight& w, float map_scale = 1.0f)
        : packed(w.packed), codes(w.nested ? w.nested_state.codes : std::vector<std::uint8_t>{}),
          absmax(w.absmax), nested_absmax(w.nested ? w.nested_state.absmax : std::vector<float>{}) {
        if (w.nested) {
            std::vector<float> map(w.nested_state.code.begin(), w.nested_state.code.end());
            for (float& v : map) v *= map_scale;
            nested_code = dev<float>(map);
        }
        view.packed = packed.get();
        view.rows = w.rows;
        view.cols = w.cols;
        view.blocksize_log2 = log2_exact(w.blocksize);
        view.absmax = w.nested ? nullptr : absmax.get();
        view.absmax_codes = codes.get();
        view.nested_absmax = nested_absmax.get();
        view.nested_code = nested_code.get();
        view.nested_blocksize = static_cast<int>(w.nested_state.blocksize);
        view.nested_offset = w.nested_state.offset;
        std::memcpy(view.code, w.code.data(), sizeof(view.code));
    }
};

}  // namespace qbench::bnb::test
