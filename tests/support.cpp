#include "support.hpp"

#include <atomic>
#include <mutex>
#include <unistd.h>

#include "adfw/core/plugin.hpp"

namespace fs = std::filesystem;

namespace adfw::test {

fs::path source_root() { return fs::path(ADFW_SOURCE_DIR); }

fs::path shared_root() {
  if (const char* env = std::getenv("ADFW_SHARED"); env && *env) return fs::path(env);
  return fs::path(ADFW_SOURCE_DIR) / ".." / "shared";
}

bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

fs::path temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  const fs::path base = fs::temp_directory_path() /
                        ("adfw_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + tag);
  fs::remove_all(base);
  fs::create_directories(base);
  struct Cleanup {
    std::vector<fs::path> dirs;
    ~Cleanup() {
      std::error_code ec;
      for (auto& d : dirs) fs::remove_all(d, ec);
    }
  };
  static Cleanup cleanup;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  cleanup.dirs.push_back(base);
  return base;
}

fs::path plugin_dir() { return fs::path(ADFW_PLUGIN_BUILD_DIR); }
fs::path cli_path() { return fs::path(ADFW_CLI_BUILD_PATH); }

void load_builtin_plugins() {
  static std::once_flag once;
  std::call_once(once, [] {
    load_plugins_in(plugin_dir());
  });
}

}  // namespace adfw::test
