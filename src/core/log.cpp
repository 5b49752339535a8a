#include "adfw/core/log.hpp"

#include <fstream>
#include <iostream>
#include <mutex>

#include "adfw/core/clock.hpp"

namespace adfw {
namespace {
struct LogState {
  std::mutex mu;
  bool quiet = false;
  bool verbose = false;
  std::ofstream file;
};
LogState& state() {
  static auto* s = new LogState();
  return *s;
}
const char* tag(LogLevel l) {
  switch (l) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warning";
    case LogLevel::error: return "error";
  }
  return "";
}
std::string timestamp() { return format_now("%Y-%m-%d %H:%M:%S", false); }
}  // namespace

void log(LogLevel level, const std::string& message) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  const bool show = level >= LogLevel::warn || (level == LogLevel::info && !s.quiet) ||
                    (level == LogLevel::debug && s.verbose && !s.quiet);
  if (show) {
    if (level >= LogLevel::warn) std::cerr << tag(level) << ": ";
    std::cerr << message << std::endl;
  }
  if (s.file.is_open()) s.file << timestamp() << " [" << tag(level) << "] " << message << std::endl;
}

void set_quiet(bool quiet) { state().quiet = quiet; }
bool is_quiet() { return state().quiet; }
void set_verbose(bool verbose) { state().verbose = verbose; }

void set_log_file(const std::filesystem::path& file) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.file.is_open()) s.file.close();
  if (!file.empty()) s.file.open(file, std::ios::app);
}

}  // namespace adfw
