// The one Catch2 v2 main for all CPU test executables (compiled once as an object library).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
