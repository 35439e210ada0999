#pragma once
/// The catalogs: models (configs/models/*.yaml) and instances (configs/instances/*.yaml), read once per command.
///
/// Catalogs are data: one entry per file, the entry's name is the single key inside the file and must equal the file
/// name without ".yaml", sources are given in the file's comments. Unknown keys and wrong types are errors with
/// file:line:column, as in matrices.
#include "qbench/engine/model_config.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace qbench {

/// An EC2-style GPU instance, as far as a benchmark can emulate it: the VRAM and host-RAM budgets a cell runs under,
/// and the figures a roofline projection and a load-time model need. 0 (or "") means "unknown" for the optional
/// figures; "local" has no budgets at all.
struct instance_profile {
    std::string name;                      ///< catalog name, e.g. "g5.2xlarge"
    std::string gpu_name;                  ///< e.g. "NVIDIA A10G"
    std::int64_t gpu_count = 0;            ///< GPUs in the instance (budgets are per GPU)
    int compute_capability = 0;            ///< major*10 + minor: 75 (T4), 86 (A10G), 89 (L4), 90 (H100)
    std::uint64_t vram_usable_bytes = 0;   ///< per GPU, as nvidia-smi reports the total (T4 15360 MiB); 0 = no budget
    std::uint64_t host_ram_bytes = 0;      ///< instance memory; 0 = no budget
    double gpu_bandwidth_gbs = 0;          ///< GPU memory bandwidth, GB/s (10^9)
    double fp16_tflops = 0;                ///< dense FP16 tensor throughput
    double disk_baseline_mbs = 0;          ///< EBS baseline throughput, MB/s at 128 KiB I/O
    double disk_burst_mbs = 0;             ///< EBS burst throughput (== baseline where the instance does not burst)
    std::int64_t vcpus = 0;
    double price_usd_per_hour = 0;         ///< on-demand, us-east-1, Linux
    std::string price_date;                ///< when the price was read (prices drift)
    std::string source;                    ///< where the figures come from

    /// False only for "local": no emulated budgets.
    bool has_budgets() const { return vram_usable_bytes > 0 || host_ram_bytes > 0; }
};

/// Name of the built-in pseudo-instance that runs with the local machine's real limits and no budgets.
inline constexpr std::string_view k_local_instance_name = "local";
/// The "local" profile (no budgets, no figures).
instance_profile local_instance();

/// All known models and instances, by name. `instances` always holds "local".
struct catalog {
    std::map<std::string, model_config> models;
    std::map<std::string, instance_profile> instances;

    /// nullptr when unknown.
    const model_config* find_model(std::string_view name) const;
    const instance_profile* find_instance(std::string_view name) const;
    std::vector<std::string> model_names() const;
    std::vector<std::string> instance_names() const;
};

/// Reads configs_dir/models/*.yaml and configs_dir/instances/*.yaml (throws input_error on the first bad file) and
/// adds "local".
catalog load_catalog(const std::filesystem::path& configs_dir);

/// Reads one model entry / one instance entry from YAML text (what load_catalog does per file; for tests and tools).
model_config parse_model_yaml(std::string_view yaml_text, const std::string& file_name);
instance_profile parse_instance_yaml(std::string_view yaml_text, const std::string& file_name);

/// $QBENCH_CONFIG_DIR if set and not empty, else the source tree's configs/ (compiled in as QBENCH_SOURCE_DIR).
std::filesystem::path default_configs_dir();

}  // namespace qbench
