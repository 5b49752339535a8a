#include "adfw/core/progress.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>

#include "adfw/core/log.hpp"

namespace adfw {

std::string format_duration(double s) {
  char buf[32];
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) std::snprintf(buf, sizeof(buf), "%.1fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof(buf), "%dm%02ds", int(s) / 60, int(s) % 60);
  else std::snprintf(buf, sizeof(buf), "%dh%02dm", int(s) / 3600, (int(s) % 3600) / 60);
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total) {
  enabled_ = ::isatty(STDERR_FILENO) && !is_quiet();
  start_ = last_render_ = std::chrono::steady_clock::now();
}

Progress::~Progress() { finish(); }

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::step(int64_t n, const std::string& status) {
  done_ += n;
  if (!status.empty()) status_ = status;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  // Redrawing more than ~10 times a second costs more than it tells.
  if (std::chrono::duration<double>(now - last_render_).count() < 0.1 && done_ != total_) return;
  last_render_ = now;
  render(false);
}

void Progress::render(bool final) {
  const double el = elapsed_seconds();
  const double rate = el > 0 ? done_ / el : 0.0;
  std::string line = "\r" + label_ + " ";
  if (total_ > 0) {
    const int width = 24;
    const double frac = std::min(1.0, double(done_) / double(total_));
    const int filled = int(frac * width);
    line += "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] ";
    line += std::to_string(done_) + "/" + std::to_string(total_);
  } else {
    line += std::to_string(done_);
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), " %.2f %s/s", rate, unit_.c_str());
  line += buf;
  if (total_ > 0 && !final && rate > 0) line += " ETA " + format_duration((total_ - done_) / rate);
  if (final) line += " in " + format_duration(el);
  if (!status_.empty()) line += "  " + status_;
  line += "\x1b[K";
  std::cerr << line << std::flush;
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (enabled_) {
    render(true);
    std::cerr << "\n";
  }
}

}  // namespace adfw
