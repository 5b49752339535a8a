// Loading component plugins (shared modules that register components when opened).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace adfw {

/// Opens one plugin file; its static registrations run now. Throws Error naming the file
/// (and dlerror's reason) when it cannot be loaded. Loading the same file twice is a no-op.
void load_plugin(const std::filesystem::path& file);

/// Loads every `*.so` in `dir` in name order (missing folder = nothing to load).
void load_plugins_in(const std::filesystem::path& dir);

/// The default search list: the built-in plugin folder next to the executable
/// (`<exe>/../lib/adfw/plugins`), the one next to libadfw (`<libdir>/adfw/plugins`, for programs
/// that link adfw from elsewhere), then every folder in $ADFW_PLUGIN_PATH (':'-separated;
/// entries may also be single .so files).
std::vector<std::filesystem::path> default_plugin_locations();

/// Loads the defaults and then `extra` files; afterwards reports registration problems
/// (duplicate names) as a ConfigError.
void load_all_plugins(const std::vector<std::filesystem::path>& extra = {});

/// Plugin files loaded so far.
std::vector<std::filesystem::path> loaded_plugins();

}  // namespace adfw
