#include "adfw/core/plugin.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "adfw/build_info.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/registry.hpp"

namespace fs = std::filesystem;

namespace adfw {
namespace {
std::mutex& plugin_mutex() {
  static std::mutex m;
  return m;
}
std::vector<fs::path>& loaded() {
  static auto* v = new std::vector<fs::path>();
  return *v;
}
/// The folder of the shared library this function is in (libadfw), for programs that link adfw
/// from elsewhere: the built-in plugins sit in <libdir>/adfw/plugins (build tree and install).
fs::path library_dir() {
  // The mapping of /proc/self/maps that holds this function's code names the file it came from
  // (dladdr may give the bare soname when the library was found through a run path).
  const auto here = reinterpret_cast<std::uintptr_t>(&library_dir);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::uintptr_t begin = 0, end = 0;
    char dash = 0;
    std::istringstream in(line);
    if (!(in >> std::hex >> begin >> dash >> end) || here < begin || here >= end) continue;
    const std::size_t slash = line.find('/');
    if (slash == std::string::npos) return {};
    std::error_code ec;
    const fs::path lib = fs::canonical(line.substr(slash), ec);
    return ec ? fs::path() : lib.parent_path();
  }
  return {};
}
fs::path exe_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe.parent_path();
}
}  // namespace

void load_plugin(const fs::path& file) {
  std::lock_guard<std::mutex> lock(plugin_mutex());
  if (!fs::exists(file)) throw ConfigError("plugin file not found: " + file.string());
  const fs::path canon = fs::canonical(file);
  auto& done = loaded();
  if (std::find(done.begin(), done.end(), canon) != done.end()) return;
  set_current_origin(canon.filename().string());
  // RTLD_GLOBAL so a plugin may use symbols of a plugin loaded before it.
  void* handle = dlopen(canon.c_str(), RTLD_NOW | RTLD_GLOBAL);
  set_current_origin("adfw");
  if (!handle) {
    const char* why = dlerror();
    throw Error("cannot load plugin " + canon.string() + ": " + (why ? why : "unknown reason") +
                ". Was it built against this adfw version (" ADFW_VERSION ")?");
  }
  done.push_back(canon);  // never dlclose: registered factories point into the module
}

void load_plugins_in(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".so") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    // A search path, first folder wins: a plugin whose file name is already loaded from an earlier
    // folder (the set of a second adfw build or installation) is skipped, not registered twice.
    bool shadowed = false;
    for (const auto& l : loaded_plugins()) shadowed = shadowed || l.filename() == f.filename();
    if (!shadowed) load_plugin(f);
  }
}

std::vector<fs::path> default_plugin_locations() {
  std::vector<fs::path> out;
  // The plugins built with the libadfw this process runs come first (they share its ABI), then
  // those below the executable's prefix; the two are one folder unless the executable was copied.
  // ADFW_PLUGIN_SUBDIR is "lib/adfw/plugins" below the prefix; libadfw itself lives in <prefix>/lib.
  if (const fs::path lib = library_dir(); !lib.empty())
    out.push_back(lib / fs::path(ADFW_PLUGIN_SUBDIR).lexically_relative("lib"));
  if (const fs::path here = exe_dir(); !here.empty()) {
    const fs::path below = here.parent_path() / ADFW_PLUGIN_SUBDIR;
    if (std::find(out.begin(), out.end(), below) == out.end()) out.push_back(below);
  }
  if (const char* env = std::getenv("ADFW_PLUGIN_PATH")) {
    std::stringstream ss(env);
    std::string item;
    while (std::getline(ss, item, ':'))
      if (!item.empty()) out.emplace_back(item);
  }
  return out;
}

void load_all_plugins(const std::vector<fs::path>& extra) {
  for (const auto& p : default_plugin_locations()) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) load_plugins_in(p);
    else if (fs::is_regular_file(p, ec)) load_plugin(p);
  }
  for (const auto& p : extra) load_plugin(p);
  const auto errors = registration_errors();
  if (!errors.empty()) {
    std::string msg = "component registration failed:";
    for (const auto& e : errors) msg += "\n  " + e;
    throw ConfigError(msg);
  }
}

std::vector<fs::path> loaded_plugins() {
  std::lock_guard<std::mutex> lock(plugin_mutex());
  return loaded();
}

}  // namespace adfw
