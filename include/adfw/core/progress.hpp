// A progress bar with rate and ETA for long loops. Silent when stderr is not a terminal or
// when the log is quiet, so logs and CI output stay clean.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace adfw {

class Progress {
 public:
  /// `total` steps (0 = unknown); `unit` names what is counted ("img", "step").
  Progress(std::string label, int64_t total, std::string unit = "it");
  ~Progress();
  /// Advances by `n` and shows `status` (e.g. "loss 0.123") after the bar.
  void step(int64_t n = 1, const std::string& status = "");
  /// Ends the line; called by the destructor if not called before.
  void finish();
  int64_t done() const { return done_; }
  double elapsed_seconds() const;

 private:
  void render(bool final);
  std::string label_, unit_, status_;
  int64_t total_ = 0, done_ = 0;
  bool enabled_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_render_;
};

/// "1h02m", "3m05s", "12.3s".
std::string format_duration(double seconds);

}  // namespace adfw
