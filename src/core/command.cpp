#include "adfw/core/command.hpp"

#include <algorithm>

namespace adfw {
namespace {
std::vector<CommandInfo>& table() {
  static auto* t = new std::vector<CommandInfo>();
  return *t;
}
}  // namespace

bool register_command(CommandInfo info) {
  auto& t = table();
  t.push_back(std::move(info));
  std::sort(t.begin(), t.end(), [](const CommandInfo& a, const CommandInfo& b) { return a.name < b.name; });
  return true;
}

const std::vector<CommandInfo>& commands() { return table(); }

}  // namespace adfw
