#pragma once
#include "qbench/backend/backend.hpp"

#include <memory>

namespace qbench {
std::unique_ptr<backend> make_gptq_backend();
}
