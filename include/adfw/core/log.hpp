// Messages go to stderr (unless quiet) and, during a run, to the run folder's log.txt.
#pragma once

#include <filesystem>
#include <string>

namespace adfw {

enum class LogLevel { debug, info, warn, error };

void log(LogLevel level, const std::string& message);
inline void log_info(const std::string& m) { log(LogLevel::info, m); }
inline void log_warn(const std::string& m) { log(LogLevel::warn, m); }
inline void log_debug(const std::string& m) { log(LogLevel::debug, m); }

/// Quiet: only warnings and errors reach stderr (the log file still gets everything).
void set_quiet(bool quiet);
bool is_quiet();
void set_verbose(bool verbose);
/// Also append every message to `file` (empty path stops it).
void set_log_file(const std::filesystem::path& file);

}  // namespace adfw
