// Where the time of a run goes: named stages (backbone forward, nearest-neighbour search, map
// post-processing, data loading, ...) accumulate wall time while a StageTimes collection is
// active. The experiment engine collects the test-time stages and records them in metrics.json
// (timing.test_stages) and the log, so a slow stage shows without a profiler.
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace adfw {

/// Seconds and calls of each stage.
struct StageTotals {
  double seconds = 0;
  long long calls = 0;
};

/// Collects stage times between start() and stop(); outside that window ScopedStage costs one
/// branch. Process-wide, thread-safe; nested stages each count their own wall time (a stage inside
/// another is part of both).
class StageTimes {
 public:
  static void start();                                   ///< clears the totals and starts collecting
  static std::map<std::string, StageTotals> stop();      ///< stops collecting and returns the totals
  static bool active();
  static void add(const std::string& stage, double seconds);
};

/// Times the enclosing scope as `stage` (a string literal or a string that outlives the scope).
class ScopedStage {
 public:
  explicit ScopedStage(const char* stage) : stage_(stage), on_(StageTimes::active()) {
    if (on_) t0_ = std::chrono::steady_clock::now();
  }
  ~ScopedStage() {
    if (on_) StageTimes::add(stage_, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count());
  }
  ScopedStage(const ScopedStage&) = delete;
  ScopedStage& operator=(const ScopedStage&) = delete;

 private:
  const char* stage_;
  bool on_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace adfw
