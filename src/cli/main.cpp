// adfw command-line entry point: global flags, plugin loading, sub-command dispatch and the
// exit-code contract (0 success, 2 usage/config error, 1 runtime failure; messages on stderr).
#include <iostream>
#include <string>
#include <vector>

#include <c10/util/Exception.h>

#include "adfw/build_info.hpp"
#include "adfw/git_commit.hpp"
#include "adfw/core/command.hpp"
#include "adfw/core/cpu_allocator.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/log.hpp"
#include "adfw/core/plugin.hpp"
#include "adfw/core/threads.hpp"

namespace {

void print_usage(std::ostream& os) {
  os << "adfw " << ADFW_VERSION << ": visual anomaly detection research framework\n\n"
     << "usage: adfw [--plugin FILE]... [--quiet] [--verbose] <command> [args]\n\ncommands:\n";
  std::size_t width = 0;
  for (const auto& c : adfw::commands()) width = std::max(width, c.name.size());
  for (const auto& c : adfw::commands())
    os << "  " << c.name << std::string(width - c.name.size() + 2, ' ') << c.summary << "\n";
  os << "\nglobal flags:\n"
     << "  --plugin FILE   load a component plugin (also: ADFW_PLUGIN_PATH=dir1:dir2:file.so)\n"
     << "  --quiet, -q     only warnings and errors on stderr; no progress bars\n"
     << "  --verbose       debug messages\n"
     << "  --version       print version and exit\n\n"
     << "Run 'adfw <command> --help' for a command's options.\n";
}

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::vector<std::filesystem::path> plugins;
  std::vector<std::string> rest;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--plugin") {
      if (i + 1 >= args.size()) throw adfw::ConfigError("--plugin needs a file argument");
      plugins.emplace_back(args[++i]);
    } else if (a.rfind("--plugin=", 0) == 0) {
      plugins.emplace_back(a.substr(9));
    } else if (a == "--quiet" || a == "-q") {
      adfw::set_quiet(true);
    } else if (a == "--verbose") {
      adfw::set_verbose(true);
    } else {
      rest.push_back(a);
    }
  }
  if (rest.empty()) {
    print_usage(std::cerr);
    return 2;
  }
  if (rest[0] == "--version" || rest[0] == "version") {
    std::cout << "adfw " << ADFW_VERSION << " (" << ADFW_GIT_COMMIT << ")\n";
    return 0;
  }
  adfw::load_all_plugins(plugins);
  if (rest[0] == "--help" || rest[0] == "-h" || rest[0] == "help") {
    print_usage(std::cout);
    return 0;
  }
  // Longest matching command name ("data check" before "data").
  const adfw::CommandInfo* best = nullptr;
  std::size_t best_words = 0;
  for (const auto& c : adfw::commands()) {
    std::vector<std::string> words;
    std::size_t start = 0;
    while (start <= c.name.size()) {
      const auto sp = c.name.find(' ', start);
      words.push_back(c.name.substr(start, sp == std::string::npos ? std::string::npos : sp - start));
      if (sp == std::string::npos) break;
      start = sp + 1;
    }
    if (words.size() > rest.size() || words.size() <= best_words) continue;
    if (std::equal(words.begin(), words.end(), rest.begin())) {
      best = &c;
      best_words = words.size();
    }
  }
  if (!best) {
    std::vector<std::string> names;
    for (const auto& c : adfw::commands()) names.push_back(c.name);
    throw adfw::ConfigError("unknown command '" + rest[0] + "'." + adfw::suggest_from(rest[0], names) +
                            " Run 'adfw --help'.");
  }
  return best->run(std::vector<std::string>(rest.begin() + static_cast<long>(best_words), rest.end()));
}

}  // namespace

int main(int argc, char** argv) {
  adfw::ensure_passive_omp_wait(argv);
  adfw::install_cpu_allocator();
  try {
    return run(argc, argv);
  } catch (const adfw::ConfigError& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 2;
  } catch (const adfw::Error& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "error (LibTorch): " << e.what_without_backtrace() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 1;
  }
}
