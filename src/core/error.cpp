#include "adfw/core/error.hpp"

#include <algorithm>

namespace adfw {

std::string SourcePos::str() const {
  if (file.empty()) return {};
  if (line <= 0) return file;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

ConfigError config_error(const SourcePos& pos, const std::string& key_path, const std::string& what) {
  std::string msg;
  const std::string where = pos.str();
  if (!where.empty()) msg += where + ": ";
  if (!key_path.empty()) msg += key_path + ": ";
  msg += what;
  return ConfigError(msg);
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string did_you_mean(const std::string& name, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_d = static_cast<std::size_t>(-1);
  for (const auto& c : candidates) {
    const std::size_t d = edit_distance(name, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  // A typo changes a few characters; beyond a third of the name it is a different word.
  const std::size_t limit = std::max<std::size_t>(2, name.size() / 3);
  return (best_d <= limit) ? best : std::string();
}

std::string suggest_from(const std::string& name, const std::vector<std::string>& candidates) {
  std::string out;
  const std::string close = did_you_mean(name, candidates);
  if (!close.empty()) out += " (did you mean '" + close + "'?)";
  out += " Known: ";
  if (candidates.empty()) out += "(none)";
  for (std::size_t i = 0; i < candidates.size(); ++i) out += (i ? ", " : "") + candidates[i];
  out += ".";
  return out;
}

}  // namespace adfw
