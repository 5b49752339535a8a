// Experiment files: TOML with `include = [...]` partials, presets and `--set a.b.c=value`
// overrides. Every value keeps the file:line:col it came from, so errors found later (when
// options structs read the merged table) still point at the right place.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <toml++/toml.h>

namespace adfw {

struct ConfigSources {
  std::filesystem::path file;                    ///< the experiment file ("" when built in memory)
  std::vector<std::filesystem::path> included;   ///< every file pulled in, in merge order
  std::vector<std::string> overrides;            ///< the --set assignments applied
};

struct LoadedConfig {
  toml::table table;  ///< merged result; `include` keys removed
  ConfigSources sources;
};

/// Parses one TOML file. Syntax errors become ConfigError "file:line:col: <reason>".
toml::table parse_toml_file(const std::filesystem::path& file);

/// Folders searched for `include` and `--preset` names after the including file's own folder:
/// $ADFW_CONFIG_PATH (':'-separated), ./configs, the installed share/adfw/configs, and the
/// source tree's configs/ (for builds run from the tree).
std::vector<std::filesystem::path> config_search_path();

/// Finds an included file: absolute, relative to `from_dir`, or in config_search_path()
/// (a bare name like "presets/smoke" may omit ".toml"). Throws ConfigError listing what was tried.
std::filesystem::path resolve_include(const std::string& name, const std::filesystem::path& from_dir,
                                      const std::string& key_path_for_errors = "include");

/// Loads `file` with its includes (recursively; includes first, the file's own keys win), then
/// `presets` (merged on top, in order), then `overrides` ("a.b.c=value", typed as TOML values;
/// a bare word is a string).
LoadedConfig load_config(const std::filesystem::path& file, const std::vector<std::string>& presets = {},
                         const std::vector<std::string>& overrides = {});

/// Merges `over` into `base`: tables merge recursively, everything else is replaced. A table whose
/// `type` differs from the base's is a different component and replaces the base table whole.
void merge_into(toml::table& base, toml::table&& over);

/// Applies one "a.b.c=value" assignment. Changing a `type` drops the old component's options.
void apply_override(toml::table& t, const std::string& assignment);

/// TOML text of a table (stable key order as stored).
std::string to_toml_string(const toml::table& t);

}  // namespace adfw
