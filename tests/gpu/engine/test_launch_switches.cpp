// The integer switches' parsing (cuda/launch.cuh: int_switch_from_env, preferred_carveout_from_env): a number in
// range sets the value, anything else leaves the default. Host code only: a CPU test, it needs the CUDA headers only.
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

TEST_CASE("int_switch_from_env takes whole numbers within its range only (-1 otherwise)", "[cuda][switches]") {
    const char* name = "QBENCH_TEST_INT_SWITCH";
    ::unsetenv(name);
    CHECK(qbench::int_switch_from_env(name, 0, 1024) == -1);
    const std::pair<const char*, int> cases[] = {{"0", 0},     {"16", 16},   {"1024", 1024}, {"1025", -1}, {"", -1},
                                                 {"-3", -1},   {"16k", -1},  {" 16", 16},    {"0x10", -1}};
    for (const auto& [text, want] : cases) {
        ::setenv(name, text, 1);
        INFO("QBENCH_TEST_INT_SWITCH='" << text << "'");
        CHECK(qbench::int_switch_from_env(name, 0, 1024) == want);
    }
    ::setenv(name, "3", 1);
    CHECK(qbench::int_switch_from_env(name, 4, 8) == -1);  // below the range
    ::unsetenv(name);
}
