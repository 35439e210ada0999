#include "backends/bnb/bnb_load.hpp"

#include "backends/bnb/bnb_serialize.hpp"
#include "qbench/common/errors.hpp"
#include "qbench/io/tensor_source.hpp"

namespace qbench::bnb {

quant_4bit_params params_of(const cell_spec& cell) {
    quant_4bit_params p;
    p.type = cell.bnb.quant_type == "fp4" ? quant_type::fp4 : quant_type::nf4;
    p.blocksize = cell.bnb.blocksize;
    p.double_quant = cell.bnb.double_quant;
    return p;
}

host_tensor read_f16_weight(const linear_request& request) {
    const std::string name = request.prefix + ".weight";
    const std::string file = request.source.path().string();
    const tensor_info* info = request.source.find(name);
    if (!info) throw input_error(file, "tensor '" + name + "'", "missing from the checkpoint");
    const std::string place = "tensor '" + name + "' at byte " + std::to_string(info->file_offset);
    const std::vector<std::int64_t> expected{request.out_features, request.in_features};
    if (info->type != dtype::f16)
        throw input_error(file, place, "has dtype " + std::string(traits_of(info->type).name) +
                                           ", expected F16 (bitsandbytes quantizes the FP16 checkpoint while loading)");
    if (info->shape != expected)
        throw input_error(file, place, "has shape " + shape_to_string(info->shape) + ", expected " +
                                           shape_to_string(expected) + " ([out_features, in_features])");
    host_tensor weight = request.source.read(name);
    if (weight.type != dtype::f16 || weight.byte_size() != static_cast<std::size_t>(info->byte_size))
        throw input_error(file, place, "read back with another dtype or size than its header declares");
    return weight;
}

std::optional<quant_4bit_weight> read_prequantized_4bit(const linear_request& request) {
    if (!has_prequantized_4bit(request.source, request.prefix)) return std::nullopt;
    quant_4bit_weight w = read_4bit(request.source, request.prefix);
    const std::string file = request.source.path().string();
    const std::string place = "tensor '" + request.prefix + ".weight'";
    if (w.rows != request.out_features || w.cols != request.in_features)
        throw input_error(file, place, "quant state shape [" + std::to_string(w.rows) + ", " + std::to_string(w.cols) +
                                           "] does not match the model's [" + std::to_string(request.out_features) +
                                           ", " + std::to_string(request.in_features) + "]");
    const quant_4bit_params p = params_of(request.cell);
    if (w.type != p.type || w.blocksize != p.blocksize || w.nested != p.double_quant)
        throw input_error(file, place, "the checkpoint holds " + format_name_4bit(w.type, w.blocksize, w.nested) +
                                           " but the cell asks for " +
                                           format_name_4bit(p.type, p.blocksize, p.double_quant));
    return w;
}

std::optional<int8_weight> read_prequantized_int8(const linear_request& request) {
    if (!has_prequantized_int8(request.source, request.prefix)) return std::nullopt;
    int8_weight w = read_int8(request.source, request.prefix);
    if (w.rows != request.out_features || w.cols != request.in_features)
        throw input_error(request.source.path().string(), "tensor '" + request.prefix + ".weight'",
                          "int8 weight shape [" + std::to_string(w.rows) + ", " + std::to_string(w.cols) +
                              "] does not match the model's [" + std::to_string(request.out_features) + ", " +
                              std::to_string(request.in_features) + "]");
    return w;
}

}  // namespace qbench::bnb
