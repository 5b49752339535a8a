// Catch2's main, compiled once for the whole test binary (our own, on Catch2 v2 and v3 alike).
#if !ADFW_CATCH2_V3
#define CATCH_CONFIG_RUNNER
#endif
#include "catch_compat.hpp"

#include "adfw/core/cpu_allocator.hpp"
#include "adfw/core/threads.hpp"

int main(int argc, char* argv[]) {
  // Tests are small; two threads keep ctest -j2 from oversubscribing the machine.
  adfw::configure_threads(1);
  // The allocator the CLI runs with (ADFW_CPU_ALLOCATOR=system tests LibTorch's own).
  adfw::install_cpu_allocator();
  return Catch::Session().run(argc, argv);
}
