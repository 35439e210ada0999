// The carveout switches' parsing (cuda/launch.cuh: preferred_carveout_from_env): a percentage sets the preference,
// anything else leaves the driver's choice. Host code only: a CPU test, it needs the CUDA headers but no GPU.
#include "cuda/launch.cuh"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <utility>

TEST_CASE("preferred_carveout_from_env takes 0..100 and leaves anything else to the driver (-1)", "[cuda][switches]") {
    const char* name = "QBENCH_TEST_CARVEOUT";
    ::unsetenv(name);
    CHECK(qbench::preferred_carveout_from_env(name) == -1);
    const std::pair<const char*, int> cases[] = {{"0", 0},    {"25", 25},  {"100", 100}, {"", -1},   {"101", -1},
                                                 {"-1", -1},  {"50x", -1}, {"x", -1},    {"1e2", -1}};
    for (const auto& [text, want] : cases) {
        ::setenv(name, text, 1);
        INFO("QBENCH_TEST_CARVEOUT='" << text << "'");
        CHECK(qbench::preferred_carveout_from_env(name) == want);
    }
    ::unsetenv(name);
}
