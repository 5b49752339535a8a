// Error types. The CLI maps them to exit codes: ConfigError -> 2 (usage or
// configuration the user must fix), any other Error -> 1 (runtime failure).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace adfw {

/// A runtime failure (unreadable file, NaN loss, ...). Exit code 1.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Something the user wrote is wrong: a config value, a command-line flag, a name.
/// The message already carries file:line:col and the dotted key path. Exit code 2.
struct ConfigError : Error {
  using Error::Error;
};

/// Where a config value came from.
struct SourcePos {
  std::string file;  ///< file path, or "--set key=value" for command-line overrides
  int line = 0;      ///< 1-based; 0 when unknown
  int column = 0;    ///< 1-based; 0 when unknown
  /// "file:line:col" (or just "file" when the position is unknown, or "" when nothing is known).
  std::string str() const;
};

/// Builds the standard config error: "<pos>: <key path>: <what>".
ConfigError config_error(const SourcePos& pos, const std::string& key_path, const std::string& what);

/// Levenshtein distance, for did-you-mean suggestions.
std::size_t edit_distance(const std::string& a, const std::string& b);

/// The closest candidate to `name` if it is close enough to be a plausible typo, else "".
std::string did_you_mean(const std::string& name, const std::vector<std::string>& candidates);

/// " (did you mean 'x'?) Known: a, b, c." ready to append to an error message.
std::string suggest_from(const std::string& name, const std::vector<std::string>& candidates);

}  // namespace adfw
