#include "adfw/core/config.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "adfw/build_info.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/options.hpp"

namespace fs = std::filesystem;

namespace adfw {

toml::table parse_toml_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ConfigError("cannot open config file " + file.string() + ": no such file or not readable");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return toml::parse(ss.str(), file.string());
  } catch (const toml::parse_error& e) {
    SourcePos p;
    p.file = file.string();
    p.line = static_cast<int>(e.source().begin.line);
    p.column = static_cast<int>(e.source().begin.column);
    throw config_error(p, "", "TOML syntax error: " + std::string(e.description()));
  }
}

std::vector<fs::path> config_search_path() {
  std::vector<fs::path> out;
  if (const char* env = std::getenv("ADFW_CONFIG_PATH")) {
    std::stringstream ss(env);
    std::string item;
    while (std::getline(ss, item, ':'))
      if (!item.empty()) out.emplace_back(item);
  }
  out.emplace_back(fs::current_path() / "configs");
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) out.push_back(exe.parent_path().parent_path() / "share" / "adfw" / "configs");
#ifdef ADFW_SOURCE_CONFIGS
  out.emplace_back(ADFW_SOURCE_CONFIGS);
#endif
  return out;
}

fs::path resolve_include(const std::string& name, const fs::path& from_dir, const std::string& key_path) {
  std::vector<fs::path> tried;
  auto try_path = [&](const fs::path& p) -> bool {
    tried.push_back(p);
    std::error_code ec;
    return fs::is_regular_file(p, ec);
  };
  std::vector<std::string> names = {name};
  if (fs::path(name).extension() != ".toml") names.push_back(name + ".toml");
  for (const auto& n : names) {
    const fs::path p(n);
    if (p.is_absolute()) {
      if (try_path(p)) return p;
      continue;
    }
    if (!from_dir.empty() && try_path(from_dir / p)) return fs::weakly_canonical(from_dir / p);
    for (const auto& dir : config_search_path())
      if (try_path(dir / p)) return fs::weakly_canonical(dir / p);
  }
  std::string msg = "cannot find included file '" + name + "'. Tried:";
  for (const auto& t : tried) msg += "\n  " + t.string();
  throw ConfigError(key_path + ": " + msg);
}

void merge_into(toml::table& base, toml::table&& over) {
  for (auto&& [k, v] : over) {
    toml::node* existing = base.get(k.str());
    if (existing && existing->is_table() && v.is_table()) {
      auto& bt = *existing->as_table();
      auto& ot = *v.as_table();
      const auto* btype = bt.get_as<std::string>("type");
      const auto* otype = ot.get_as<std::string>("type");
      if (btype && otype && btype->get() != otype->get()) {
        base.insert_or_assign(k, std::move(ot));  // a different component: its options start afresh
      } else {
        merge_into(bt, std::move(ot));
      }
    } else {
      base.insert_or_assign(k, std::move(v));
    }
  }
}

namespace {

void load_recursive(const fs::path& file, toml::table& out, std::vector<fs::path>& stack,
                    std::vector<fs::path>& included) {
  const fs::path canon = fs::weakly_canonical(file);
  if (std::find(stack.begin(), stack.end(), canon) != stack.end()) {
    std::string cycle;
    for (const auto& s : stack) cycle += s.string() + " -> ";
    throw ConfigError(canon.string() + ": include cycle: " + cycle + canon.string());
  }
  stack.push_back(canon);
  toml::table own = parse_toml_file(canon);
  toml::table merged;
  if (toml::node* inc = own.get("include")) {
    const SourcePos pos = pos_of(*inc);
    std::vector<std::string> names;
    if (inc->is_string()) {
      names.push_back(inc->as_string()->get());
    } else if (inc->is_array()) {
      for (auto& e : *inc->as_array()) {
        if (!e.is_string()) throw config_error(pos_of(e), "include", "expected a file name string, got " + describe_node(e));
        names.push_back(e.as_string()->get());
      }
    } else {
      throw config_error(pos, "include", "expected an array of file names, got " + describe_node(*inc));
    }
    for (const auto& n : names) {
      fs::path p;
      try {
        p = resolve_include(n, canon.parent_path());
      } catch (const ConfigError& e) {
        throw ConfigError(pos.str() + ": " + e.what());
      }
      included.push_back(p);
      toml::table sub;
      load_recursive(p, sub, stack, included);
      merge_into(merged, std::move(sub));
    }
    own.erase("include");
  }
  merge_into(merged, std::move(own));
  merge_into(out, std::move(merged));
  stack.pop_back();
}

/// Parses the right-hand side of an override as a TOML value; a bare word is a string.
toml::table parse_assignment(const std::string& key, const std::string& value, const std::string& origin) {
  try {
    return toml::parse(key + " = " + value, origin);
  } catch (const toml::parse_error&) {
  }
  toml::table t;
  try {
    // Re-parse as a quoted string so the node carries the --set origin.
    std::string quoted = "\"";
    for (char c : value) {
      if (c == '"' || c == '\\') quoted += '\\';
      quoted += c;
    }
    quoted += "\"";
    return toml::parse(key + " = " + quoted, origin);
  } catch (const toml::parse_error& e) {
    throw ConfigError(origin + ": cannot parse the value: " + std::string(e.description()));
  }
}

}  // namespace

void apply_override(toml::table& t, const std::string& assignment) {
  const auto eq = assignment.find('=');
  const std::string origin = "--set " + assignment;
  if (eq == std::string::npos || eq == 0)
    throw ConfigError(origin + ": expected key.path=value, e.g. --set data.category=bottle");
  std::string key = assignment.substr(0, eq);
  const std::string value = assignment.substr(eq + 1);
  while (!key.empty() && key.back() == ' ') key.pop_back();
  toml::table parsed = parse_assignment(key, value, origin);
  // Changing a component's type resets its options: keep only the new type.
  const std::string suffix = ".type";
  if (key.size() > suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0) {
    const std::string parent = key.substr(0, key.size() - suffix.size());
    if (auto* pt = t.at_path(parent).as_table()) {
      const auto* old_type = pt->get_as<std::string>("type");
      const auto* new_type = parsed.at_path(key).as_string();
      if (old_type && new_type && old_type->get() != new_type->get()) pt->clear();
    }
  }
  merge_into(t, std::move(parsed));
}

LoadedConfig load_config(const fs::path& file, const std::vector<std::string>& presets,
                         const std::vector<std::string>& overrides) {
  LoadedConfig out;
  out.sources.file = fs::weakly_canonical(file);
  std::vector<fs::path> stack;
  load_recursive(file, out.table, stack, out.sources.included);
  for (const auto& p : presets) {
    const fs::path path = resolve_include(p, fs::path(), "--preset " + p);
    out.sources.included.push_back(path);
    toml::table sub;
    load_recursive(path, sub, stack, out.sources.included);
    merge_into(out.table, std::move(sub));
  }
  for (const auto& o : overrides) {
    apply_override(out.table, o);
    out.sources.overrides.push_back(o);
  }
  return out;
}

std::string to_toml_string(const toml::table& t) {
  std::ostringstream os;
  os << toml::toml_formatter(t) << "\n";
  return os.str();
}

}  // namespace adfw
