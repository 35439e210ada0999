#pragma once
#include "qbench/backend/backend.hpp"

#include <memory>

namespace qbench {
/// fp16: no quantization; the seed's "bitsandbytes 16-bit" is this backend.
std::unique_ptr<backend> make_fp16_backend();
}
