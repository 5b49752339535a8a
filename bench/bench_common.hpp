// What every adfw benchmark program shares, so that its figures can be trusted and repeated:
//   - the process runs with OMP_WAIT_POLICY=PASSIVE unless the caller set a policy (re-executed
//     before OpenMP starts, as the CLI does), and LibTorch/OpenBLAS get an explicit thread count:
//     ADFW_BENCH_THREADS, or the program's own default;
//   - the JSON/console context records that thread count, the wait policy, the BLAS library
//     actually loaded, the LibTorch version and the cores available, so a figure is never quoted
//     without its conditions;
//   - `->Apply(adfw::bench::measured)` (or `measured_long`) gives a benchmark an untimed warm-up
//     (first-call allocations, oneDNN primitive creation and page faults are not the steady state
//     a user repeats) and several repetitions, reported as mean, median, standard deviation,
//     coefficient of variation, min and max.
// Quote the median and the spread (cv, or min-max) from the aggregate rows.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include <torch/version.h>

#include "adfw/core/cpu_allocator.hpp"
#include "adfw/core/plugin.hpp"
#include "adfw/core/threads.hpp"

namespace adfw::bench {

/// Loads the installed plugins (methods and their parts) once per program, for benchmarks that
/// build a method; Google Benchmark calls each benchmark function several times.
inline void load_plugins_once() {
  static const bool loaded = [] {
    adfw::load_all_plugins();
    return true;
  }();
  (void)loaded;
}

/// The intra-op thread count of this process: ADFW_BENCH_THREADS when set, else `fallback`.
inline int& thread_setting() {
  static int n = 0;
  return n;
}

/// Threads every benchmark of the program configures (see thread_setting()).
inline int threads() { return thread_setting() > 0 ? thread_setting() : 1; }

/// Sets LibTorch and OpenBLAS to threads() and returns it; call at the top of a benchmark.
inline int use_threads() { return adfw::configure_threads(threads()); }

/// The repetitions behind every figure (do not combine with ->Iterations(), which Google Benchmark
/// refuses with a warm-up; each repetition runs for at least --benchmark_min_time): an untimed warm-up of at least `warmup_s` seconds (at least
/// one call), then `repetitions` timed repetitions, shown as aggregates (each repetition stays in the
/// JSON output).
inline void measure(benchmark::internal::Benchmark* b, double warmup_s, int repetitions) {
  b->MinWarmUpTime(warmup_s)
      ->Repetitions(repetitions)
      ->DisplayAggregatesOnly(true)
      ->ComputeStatistics("min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); })
      ->ComputeStatistics("max", [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); });
}

/// For `->Apply(adfw::bench::measured)`: 1 s warm-up, 5 repetitions.
inline void measured(benchmark::internal::Benchmark* b) { measure(b, 1.0, 5); }

/// For benchmarks whose one iteration takes seconds (`->Apply(adfw::bench::measured_long)`): one
/// warm-up call, 3 repetitions.
inline void measured_long(benchmark::internal::Benchmark* b) { measure(b, 0.01, 3); }

/// The body of every benchmark program's main().
inline int run_main(int argc, char** argv, int default_threads) {
  adfw::ensure_passive_omp_wait(argv);
  adfw::install_cpu_allocator();
  const char* env_threads = std::getenv("ADFW_BENCH_THREADS");
  thread_setting() = env_threads ? std::max(1, std::atoi(env_threads)) : default_threads;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const char* wait = std::getenv("OMP_WAIT_POLICY");
  benchmark::AddCustomContext("intra_op_threads", std::to_string(threads()) +
                                                      (env_threads ? " (ADFW_BENCH_THREADS)" : " (default)"));
  benchmark::AddCustomContext("OMP_WAIT_POLICY", wait ? wait : "(unset)");
  benchmark::AddCustomContext("blas", adfw::blas_library());
  benchmark::AddCustomContext("cpu_allocator", adfw::cpu_allocator_name());
  benchmark::AddCustomContext("libtorch", TORCH_VERSION);
  benchmark::AddCustomContext("cores_available", std::to_string(adfw::available_cores()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

}  // namespace adfw::bench

/// main() of a benchmark program whose benchmarks use `default_threads` intra-op threads unless
/// ADFW_BENCH_THREADS says otherwise.
#define ADFW_BENCH_MAIN(default_threads) \
  int main(int argc, char** argv) { return adfw::bench::run_main(argc, argv, default_threads); }
