// CLI sub-commands register themselves, so a new tool is one new file in src/cli/:
//
//   static int eval_maps(const std::vector<std::string>& args);   // args after the command name
//   ADFW_COMMAND("eval-maps", "evaluate anomaly maps produced elsewhere", eval_maps);
//
// A command returns the process exit code; it throws ConfigError for usage errors (exit 2)
// and Error for runtime failures (exit 1). Multi-word commands ("data check") are written
// with a space and matched greedily.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace adfw {

struct CommandInfo {
  std::string name;
  std::string summary;
  std::function<int(const std::vector<std::string>&)> run;
};

bool register_command(CommandInfo info);
const std::vector<CommandInfo>& commands();

}  // namespace adfw

#define ADFW_COMMAND(Name, Summary, Fn)                                                    \
  [[maybe_unused]] static const bool ADFW_CONCAT(adfw_command_, __COUNTER__) =            \
      ::adfw::register_command({Name, Summary, Fn})
#ifndef ADFW_CONCAT
#define ADFW_CONCAT_INNER(a, b) a##b
#define ADFW_CONCAT(a, b) ADFW_CONCAT_INNER(a, b)
#endif
