// Catch2's main, compiled once for the whole test binary.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "adfw/core/threads.hpp"

int main(int argc, char* argv[]) {
  // Tests are small; two threads keep ctest -j2 from oversubscribing the machine.
  adfw::configure_threads(1);
  return Catch::Session().run(argc, argv);
}
