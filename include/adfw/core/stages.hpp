// Where the time of a run goes: named stages (backbone forward, nearest-neighbour search, map
// post-processing, data loading, ...) accumulate wall time while a StageTimes collection is
// active. The experiment engine collects the test-time stages and records them in metrics.json
// (timing.test_stages) and the log, so a slow stage shows without a profiler. While a Trace is
// active, every stage call also becomes one event of a Chrome trace (`adfw run --trace`), which
// shows on a timeline whether loading overlaps training steps or leaves the trainer waiting.
#pragma once

#include <chrono>
#include <filesystem>
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

/// Records every stage call with its thread between start() and write(), in the Chrome trace
/// event format (chrome://tracing, https://ui.perfetto.dev): one complete event per call, one
/// timeline row per thread. Process-wide and thread-safe; at most kMaxEvents events are kept (the
/// file says how many were dropped).
class Trace {
 public:
  static constexpr std::size_t kMaxEvents = 2'000'000;
  /// Clears earlier events and starts recording; the calling thread is named "main".
  static void start();
  static bool active();
  /// Names the calling thread's row (e.g. "loader worker 2"); unnamed threads get "thread <n>".
  static void name_thread(const std::string& name);
  static void add(const char* stage, std::chrono::steady_clock::time_point begin,
                  std::chrono::steady_clock::time_point end);
  /// Stops recording and writes the trace to `file` atomically.
  static void write(const std::filesystem::path& file);
};

/// Times the enclosing scope as `stage` (a string literal or a string that outlives the scope).
class ScopedStage {
 public:
  explicit ScopedStage(const char* stage)
      : stage_(stage), times_(StageTimes::active()), trace_(Trace::active()) {
    if (times_ || trace_) t0_ = std::chrono::steady_clock::now();
  }
  ~ScopedStage() {
    if (!times_ && !trace_) return;
    const auto t1 = std::chrono::steady_clock::now();
    if (times_) StageTimes::add(stage_, std::chrono::duration<double>(t1 - t0_).count());
    if (trace_) Trace::add(stage_, t0_, t1);
  }
  ScopedStage(const ScopedStage&) = delete;
  ScopedStage& operator=(const ScopedStage&) = delete;

 private:
  const char* stage_;
  bool times_, trace_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace adfw
