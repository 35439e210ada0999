#pragma once
#include "qbench/backend/backend.hpp"

#include <memory>

namespace qbench {
std::unique_ptr<backend> make_bnb_backend();
}
