#include "qbench/io/tensor_source.hpp"

#include "qbench/common/errors.hpp"
#include "qbench/io/safetensors.hpp"
#include "qbench/io/sharded_checkpoint.hpp"

#include <algorithm>
#include <cstring>
#include <system_error>

namespace qbench {

const tensor_info& tensor_source::require(std::string_view name) const {
    if (const tensor_info* info = find(name)) return *info;
    throw input_error(path().string(), "tensor '" + std::string(name) + "'",
                      "not in this checkpoint (it has " + std::to_string(names().size()) + " tensors)");
}

void tensor_source::read_into(std::string_view name, std::span<std::byte> out) const {
    const host_tensor t = read(name);
    if (out.size() != t.data.size())
        throw error("read_into: tensor '" + std::string(name) + "' has " + std::to_string(t.data.size()) +
                    " bytes but the buffer has " + std::to_string(out.size()));
    if (!out.empty()) std::memcpy(out.data(), t.data.data(), out.size());
}

namespace {

std::unique_ptr<tensor_source> open_file(const std::filesystem::path& file) {
    if (file.extension() == ".json") return std::make_unique<sharded_checkpoint>(file);
    return std::make_unique<safetensors_file>(file);
}

}  // namespace

std::unique_ptr<tensor_source> open_checkpoint(const std::filesystem::path& path) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status))
        throw input_error(path.string(), "", "no such file or directory");
    if (!std::filesystem::is_directory(status)) return open_file(path);

    // The index wins over a single file: a directory converted from single to sharded may still hold both, and
    // the index is what Hugging Face's loader follows.
    if (std::filesystem::exists(path / k_checkpoint_index_file)) return open_file(path / k_checkpoint_index_file);
    if (std::filesystem::exists(path / k_single_checkpoint_file)) return open_file(path / k_single_checkpoint_file);
    std::vector<std::filesystem::path> candidates;
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
        if (entry.path().extension() == ".safetensors" && entry.is_regular_file()) candidates.push_back(entry.path());
    }
    if (ec) throw input_error(path.string(), "", "cannot list directory: " + ec.message());
    if (candidates.size() == 1) return open_file(candidates.front());
    if (candidates.empty())
        throw input_error(path.string(), "",
                          "no safetensors checkpoint here (expected " + std::string(k_single_checkpoint_file) + ", " +
                              std::string(k_checkpoint_index_file) + " or a single *.safetensors file)");
    std::sort(candidates.begin(), candidates.end());
    throw input_error(path.string(), "",
                      std::to_string(candidates.size()) + " *.safetensors files (" +
                          candidates.front().filename().string() + ", ...) but no " +
                          std::string(k_checkpoint_index_file) + " saying how they fit together");
}

}  // namespace qbench
