#include "adfw/engine/sweep.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "adfw/core/config.hpp"
#include "adfw/core/clock.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/io.hpp"
#include "adfw/core/options.hpp"
#include "adfw/core/threads.hpp"

namespace fs = std::filesystem;

namespace adfw::sweep {

// ---------------------------------------------------------------------------------------------
// Values, ids
// ---------------------------------------------------------------------------------------------

namespace {

std::string quote_toml_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string toml_key(const std::string& k) {
  const bool bare = !k.empty() && std::all_of(k.begin(), k.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-';
  });
  return bare ? k : quote_toml_string(k);
}

std::string float_text(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  std::string s(buf, res.ptr);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

/// Parses TOML value text back into a node (for slugs and tables).
toml::table parse_value(const std::string& text) {
  try {
    return toml::parse("v = " + text);
  } catch (const toml::parse_error& e) {
    throw ConfigError("not a TOML value: " + text + " (" + std::string(e.description()) + ")");
  }
}

std::string slug_chars(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    const bool ok = std::isalnum(c) || c == '.' || c == '+' || c == '=' || c == '-';
    const char ch = ok ? static_cast<char>(c) : '-';
    if (ch == '-' && !out.empty() && out.back() == '-') continue;
    out += ch;
  }
  while (!out.empty() && out.front() == '-') out.erase(out.begin());
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

std::string slug_of(const toml::node& n) {
  if (const auto* s = n.as_string()) return slug_chars(s->get());
  if (const auto* a = n.as_array()) {
    std::string out;
    for (const auto& e : *a) out += (out.empty() ? "" : "+") + slug_of(e);
    return out;
  }
  if (const auto* t = n.as_table()) {
    std::string out;
    for (const auto& [k, v] : *t) out += (out.empty() ? "" : "+") + slug_chars(std::string(k.str())) + "=" + slug_of(v);
    return out;
  }
  return slug_chars(canonical_value(n));
}

std::string last_component(const std::string& key) {
  const auto dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

}  // namespace

std::string canonical_value(const toml::node& node) {
  if (const auto* s = node.as_string()) return quote_toml_string(s->get());
  if (const auto* i = node.as_integer()) return std::to_string(i->get());
  if (const auto* f = node.as_floating_point()) return float_text(f->get());
  if (const auto* b = node.as_boolean()) return b->get() ? "true" : "false";
  if (const auto* a = node.as_array()) {
    std::string out = "[";
    bool first = true;
    for (const auto& e : *a) {
      out += (first ? "" : ", ") + canonical_value(e);
      first = false;
    }
    return out + "]";
  }
  if (const auto* t = node.as_table()) {
    std::vector<std::pair<std::string, std::string>> items;
    for (const auto& [k, v] : *t) items.emplace_back(std::string(k.str()), canonical_value(v));
    std::sort(items.begin(), items.end());
    std::string out = "{";
    for (std::size_t i = 0; i < items.size(); ++i)
      out += (i ? ", " : "") + toml_key(items[i].first) + " = " + items[i].second;
    return out + "}";
  }
  std::ostringstream os;
  node.visit([&](auto&& v) {
    if constexpr (toml::is_value<decltype(v)>) os << v;
  });
  return os.str();
}

uint64_t fnv1a64(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string run_id(const std::vector<Assignment>& axes) {
  if (axes.empty()) return "base";
  std::vector<Assignment> sorted = axes;
  std::stable_sort(sorted.begin(), sorted.end(), [](const Assignment& a, const Assignment& b) {
    const bool sa = a.key == "seed", sb = b.key == "seed";
    if (sa != sb) return sb;  // seed last
    return a.key < b.key;
  });
  std::map<std::string, int> label_count;
  for (const auto& a : sorted) ++label_count[last_component(a.key)];
  std::string slug;
  for (const auto& a : sorted) {
    std::string label = last_component(a.key);
    if (label_count[label] > 1) label = slug_chars(a.key);
    std::string value = slug_of(*parse_value(a.value).get("v"));
    if (value.size() > 32) value.resize(32);
    if (value.empty()) value = "x";
    slug += (slug.empty() ? "" : "_") + slug_chars(label) + "-" + value;
  }
  std::vector<std::string> lines;
  for (const auto& a : axes) lines.push_back(a.key + "=" + a.value + "\n");
  std::sort(lines.begin(), lines.end());
  std::string all;
  for (const auto& l : lines) all += l;
  char hash[16];
  std::snprintf(hash, sizeof(hash), "%06llx", static_cast<unsigned long long>(fnv1a64(all) & 0xffffffULL));
  return slug + "_" + hash;
}

// ---------------------------------------------------------------------------------------------
// Reading sweep files
// ---------------------------------------------------------------------------------------------

std::string Reproduces::caption() const {
  std::string out = "Reproduces " + (table.empty() ? std::string("results") : table);
  if (!rows.empty()) out += " (rows: " + rows + ")";
  if (!paper.empty()) out += " of " + paper;
  out += ".";
  if (!note.empty()) out += " " + note;
  return out;
}

Reproduces Reproduces::from_toml(const toml::table& t, const std::string& where) {
  Reproduces r;
  for (const auto& [k, v] : t) {
    const std::string key(k.str());
    std::string* field = key == "paper" ? &r.paper : key == "table" ? &r.table : key == "rows" ? &r.rows
                         : key == "note" ? &r.note : nullptr;
    if (!field)
      throw config_error(pos_of(v), where + "." + key, "unknown key." + suggest_from(key, {"paper", "table", "rows", "note"}));
    if (!v.is_string()) throw config_error(pos_of(v), where + "." + key, "expected a string, got " + describe_node(v));
    *field = v.as_string()->get();
  }
  return r;
}

Reproduces Reproduces::from_json(const nlohmann::json& j) {
  Reproduces r;
  if (!j.is_object()) return r;
  auto get = [&](const char* k) { return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string(); };
  r.paper = get("paper");
  r.table = get("table");
  r.rows = get("rows");
  r.note = get("note");
  return r;
}

nlohmann::json Reproduces::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  if (!paper.empty()) j["paper"] = paper;
  if (!table.empty()) j["table"] = table;
  if (!rows.empty()) j["rows"] = rows;
  if (!note.empty()) j["note"] = note;
  return j;
}

namespace {

const std::vector<std::string> kTopKeys = {"name",    "description", "base",    "presets", "set",
                                           "seeds",   "grid",        "zip",     "output",  "workers",
                                           "threads", "threads_per_worker", "slurm", "table", "reproduces"};

std::string str_of(const toml::node& n, const std::string& path) {
  if (!n.is_string()) throw config_error(pos_of(n), path, "expected a string, got " + describe_node(n));
  return n.as_string()->get();
}

int64_t int_of(const toml::node& n, const std::string& path, int64_t min) {
  if (!n.is_integer()) throw config_error(pos_of(n), path, "expected an integer, got " + describe_node(n));
  const int64_t v = n.as_integer()->get();
  if (v < min) throw config_error(pos_of(n), path, "must be at least " + std::to_string(min) + ", got " + std::to_string(v));
  return v;
}

std::vector<std::string> strings_of(const toml::node& n, const std::string& path) {
  std::vector<std::string> out;
  if (n.is_string()) return {n.as_string()->get()};
  if (!n.is_array()) throw config_error(pos_of(n), path, "expected a list of strings, got " + describe_node(n));
  for (const auto& e : *n.as_array()) out.push_back(str_of(e, path));
  return out;
}

/// Every array leaf under `t` is an axis named by its dotted path.
void flatten_axes(const toml::table& t, const std::string& prefix, const std::string& where, std::vector<Axis>& out) {
  for (const auto& [k, v] : t) {
    const std::string key = join_key(prefix, std::string(k.str()));
    if (const auto* sub = v.as_table()) {
      flatten_axes(*sub, key, where, out);
    } else if (const auto* arr = v.as_array()) {
      if (arr->empty()) throw config_error(pos_of(v), where + "." + key, "an axis needs at least one value");
      Axis a{key, {}};
      for (const auto& e : *arr) a.values.push_back(canonical_value(e));
      out.push_back(std::move(a));
    } else {
      throw config_error(pos_of(v), where + "." + key,
                         "axis values must be a list, got " + describe_node(v) +
                             "; put a value shared by every run under `set` instead");
    }
  }
}

void flatten_values(const toml::table& t, const std::string& prefix, std::vector<Assignment>& out) {
  for (const auto& [k, v] : t) {
    const std::string key = join_key(prefix, std::string(k.str()));
    if (const auto* sub = v.as_table(); sub && !sub->is_inline()) flatten_values(*sub, key, out);
    else out.push_back({key, canonical_value(v)});
  }
}

/// Tables of a `[x]` or `[[x]]` entry.
std::vector<const toml::table*> blocks_of(const toml::node& n, const std::string& where) {
  std::vector<const toml::table*> out;
  if (const auto* t = n.as_table()) {
    out.push_back(t);
  } else if (const auto* a = n.as_array()) {
    for (const auto& e : *a) {
      if (!e.is_table()) throw config_error(pos_of(e), where, "expected [[" + where + "]] tables, got " + describe_node(e));
      out.push_back(e.as_table());
    }
  } else {
    throw config_error(pos_of(n), where, "expected a table of axes, got " + describe_node(n));
  }
  return out;
}

SlurmOptions read_slurm(const toml::table& t) {
  SlurmOptions s;
  const std::vector<std::string> keys = {"partition", "time", "gpus", "cpus_per_task", "mem", "account",
                                         "qos", "max_parallel", "extra", "setup", "adfw"};
  for (const auto& [k, v] : t) {
    const std::string key(k.str()), path = "slurm." + key;
    if (key == "partition") s.partition = str_of(v, path);
    else if (key == "time") s.time = str_of(v, path);
    else if (key == "gpus") s.gpus = v.is_integer() ? std::to_string(int_of(v, path, 0)) : str_of(v, path);
    else if (key == "cpus_per_task") s.cpus_per_task = static_cast<int>(int_of(v, path, 0));
    else if (key == "mem") s.mem = str_of(v, path);
    else if (key == "account") s.account = str_of(v, path);
    else if (key == "qos") s.qos = str_of(v, path);
    else if (key == "max_parallel") s.max_parallel = static_cast<int>(int_of(v, path, 0));
    else if (key == "extra") s.extra = strings_of(v, path);
    else if (key == "setup") s.setup = strings_of(v, path);
    else if (key == "adfw") s.adfw = str_of(v, path);
    else throw config_error(pos_of(v), path, "unknown key." + suggest_from(key, keys));
  }
  if (s.gpus == "0") s.gpus.clear();
  return s;
}

TableDefaults read_table_defaults(const toml::table& t) {
  TableDefaults d;
  for (const auto& [k, v] : t) {
    const std::string key(k.str()), path = "table." + key;
    if (key == "rows") d.rows = str_of(v, path);
    else if (key == "cols") d.cols = str_of(v, path);
    else if (key == "metrics") d.metrics = strings_of(v, path);
    else if (key == "reference") {
      if (!v.is_boolean()) throw config_error(pos_of(v), path, "expected true or false, got " + describe_node(v));
      d.reference = v.as_boolean()->get();
    } else if (key == "where") {
      if (!v.is_table()) throw config_error(pos_of(v), path, "expected a table of key = value filters");
      std::vector<Assignment> w;
      flatten_values(*v.as_table(), "", w);
      for (const auto& a : w) d.where.push_back(a.str());
    } else {
      throw config_error(pos_of(v), path, "unknown key." + suggest_from(key, {"rows", "cols", "metrics", "where", "reference"}));
    }
  }
  return d;
}

}  // namespace

SweepSpec read_sweep(const fs::path& file, const fs::path& output) {
  const toml::table t = parse_toml_file(file);
  SweepSpec s;
  s.file = fs::weakly_canonical(fs::absolute(file));
  const fs::path dir = s.file.parent_path();
  const std::string where = s.file.string();
  for (const auto& [k, v] : t) {
    const std::string key(k.str());
    if (std::find(kTopKeys.begin(), kTopKeys.end(), key) == kTopKeys.end())
      throw config_error(pos_of(v), key, "unknown sweep key." + suggest_from(key, kTopKeys));
  }
  s.name = t.contains("name") ? str_of(*t.get("name"), "name") : s.file.stem().string();
  // The name becomes a folder, a Slurm job name and part of #SBATCH paths: keep it plain.
  if (s.name.empty() || s.name == "." || s.name == ".." || !std::all_of(s.name.begin(), s.name.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '.' || c == '_' || c == '-' || c == '+';
      }))
    throw ConfigError(where + ": name: \"" + s.name + "\" must be a plain folder name (letters, digits, . _ - +)");
  if (t.contains("description")) s.description = str_of(*t.get("description"), "description");
  if (!t.contains("base"))
    throw ConfigError(where + ": base: missing; name the experiment to vary, e.g. base = \"../patchcore.toml\"");
  {
    const toml::node& b = *t.get("base");
    const fs::path p = dir / str_of(b, "base");
    if (!fs::is_regular_file(p))
      throw config_error(pos_of(b), "base", "experiment file " + p.string() + " not found (paths are relative to the sweep file)");
    s.base = fs::weakly_canonical(p);
  }
  if (const auto* p = t.get("presets"))
    for (const auto& name : strings_of(*p, "presets")) {
      try {
        s.presets.push_back(fs::weakly_canonical(resolve_include(name, dir, "presets")));
      } catch (const ConfigError& e) {
        throw ConfigError(pos_of(*p).str() + ": " + e.what());
      }
    }
  if (const auto* set = t.get("set")) {
    if (const auto* st = set->as_table()) {
      flatten_values(*st, "", s.fixed);
    } else {
      for (const auto& a : strings_of(*set, "set")) {
        const auto eq = a.find('=');
        if (eq == std::string::npos || eq == 0)
          throw config_error(pos_of(*set), "set", "expected \"key.path=value\", got \"" + a + "\"");
        // Typed like --set: TOML text, a bare word is a string.
        std::string value = a.substr(eq + 1);
        try {
          value = canonical_value(*toml::parse("v = " + value).get("v"));
        } catch (const toml::parse_error&) {
          value = quote_toml_string(value);
        }
        s.fixed.push_back({a.substr(0, eq), value});
      }
    }
  }
  if (const auto* g = t.get("grid"))
    for (const auto* block : blocks_of(*g, "grid")) {
      std::vector<Axis> axes;
      flatten_axes(*block, "", "grid", axes);
      std::sort(axes.begin(), axes.end(), [](const Axis& a, const Axis& b) { return a.key < b.key; });
      std::vector<AxisGroup> groups;
      for (auto& a : axes) groups.push_back({std::move(a)});
      s.grids.push_back(std::move(groups));
    }
  if (const auto* z = t.get("zip"))
    for (const auto* block : blocks_of(*z, "zip")) {
      std::vector<Axis> axes;
      flatten_axes(*block, "", "zip", axes);
      if (axes.empty()) continue;
      for (const auto& a : axes)
        if (a.values.size() != axes[0].values.size())
          throw config_error(pos_of(*z), "zip", "paired lists must have equal lengths: " + axes[0].key + " has " +
                                                    std::to_string(axes[0].values.size()) + " values, " + a.key +
                                                    " has " + std::to_string(a.values.size()));
      s.zips.push_back(std::move(axes));
    }
  if (const auto* seeds = t.get("seeds")) {
    if (!seeds->is_array() || seeds->as_array()->empty())
      throw config_error(pos_of(*seeds), "seeds", "expected a non-empty list of integers, e.g. seeds = [0, 1, 2]");
    for (const auto& e : *seeds->as_array()) s.seeds.push_back(std::to_string(int_of(e, "seeds", 0)));
  }
  // A key varied twice (or varied and fixed) would make the run's config depend on the order.
  {
    std::map<std::string, std::string> owner;
    auto claim = [&](const std::string& key, const std::string& what) {
      auto [it, fresh] = owner.emplace(key, what);
      if (!fresh && it->second != what)
        throw ConfigError(where + ": " + key + " is set both in " + it->second + " and in " + what +
                          "; give each key one place");
    };
    for (const auto& a : s.fixed) claim(a.key, "set");
    for (const auto& z : s.zips)
      for (const auto& a : z) claim(a.key, "zip");
    for (const auto& grid : s.grids) {
      std::set<std::string> seen;
      for (const auto& g : grid)
        for (const auto& a : g) {
          if (!seen.insert(a.key).second) throw ConfigError(where + ": grid: " + a.key + " appears twice in one block");
          claim(a.key, "grid");
        }
    }
    if (!s.seeds.empty()) claim("seed", "seeds");
  }
  s.output = output.empty() ? fs::path(t.contains("output") ? str_of(*t.get("output"), "output") : "runs/sweeps") : output;
  s.output = fs::absolute(s.output).lexically_normal();
  if (const auto* w = t.get("workers")) s.workers = static_cast<int>(int_of(*w, "workers", 1));
  if (const auto* w = t.get("threads")) s.threads = static_cast<int>(int_of(*w, "threads", 0));
  if (const auto* w = t.get("threads_per_worker")) s.threads_per_worker = static_cast<int>(int_of(*w, "threads_per_worker", 0));
  if (const auto* sl = t.get("slurm")) {
    if (!sl->is_table()) throw config_error(pos_of(*sl), "slurm", "expected a [slurm] table");
    s.slurm = read_slurm(*sl->as_table());
  }
  if (const auto* tb = t.get("table")) {
    if (!tb->is_table()) throw config_error(pos_of(*tb), "table", "expected a [table] table");
    s.table = read_table_defaults(*tb->as_table());
  }
  if (const auto* r = t.get("reproduces")) {
    if (!r->is_table()) throw config_error(pos_of(*r), "reproduces", "expected a table {paper = ..., table = ..., rows = ...}");
    s.reproduces = Reproduces::from_toml(*r->as_table(), "reproduces");
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Expansion and manifest
// ---------------------------------------------------------------------------------------------

namespace {

std::string experiment_name(const toml::table& t, const fs::path& base) {
  if (const auto* n = t.get_as<std::string>("name"); n && !n->get().empty()) return n->get();
  return base.stem().string();
}

std::vector<std::string> preset_strings(const SweepSpec& s) {
  std::vector<std::string> out;
  for (const auto& p : s.presets) out.push_back(p.string());
  return out;
}

}  // namespace

std::vector<SweepRun> expand(const SweepSpec& spec, const LaunchOptions& launch) {
  std::vector<std::vector<Assignment>> combos;
  std::vector<std::vector<AxisGroup>> grids = spec.grids;
  if (grids.empty()) grids.emplace_back();
  for (const auto& grid : grids) {
    std::vector<AxisGroup> groups = grid;
    for (const auto& z : spec.zips) groups.push_back(z);
    if (!spec.seeds.empty()) groups.push_back({Axis{"seed", spec.seeds}});
    // Odometer over the groups, the last group varying fastest.
    std::vector<std::size_t> pos(groups.size(), 0);
    while (true) {
      std::vector<Assignment> combo;
      for (std::size_t g = 0; g < groups.size(); ++g)
        for (const auto& axis : groups[g]) combo.push_back({axis.key, axis.values[pos[g]]});
      combos.push_back(std::move(combo));
      bool carry = true;
      for (std::size_t g = groups.size(); carry && g > 0;) {
        --g;
        if (++pos[g] < groups[g][0].values.size()) carry = false;
        else pos[g] = 0;
      }
      if (carry) break;
    }
  }

  LoadedConfig base_cfg = load_config(spec.base, preset_strings(spec));
  const std::string base_name = experiment_name(base_cfg.table, spec.base);
  const fs::path adfw = launch.adfw.empty() ? self_executable() : launch.adfw;

  std::vector<SweepRun> runs;
  std::set<std::string> ids;
  for (auto& combo : combos) {
    SweepRun r;
    r.axes = std::move(combo);
    r.id = run_id(r.axes);
    if (!ids.insert(r.id).second) continue;
    r.index = runs.size();
    std::vector<std::string> overrides;
    for (const auto& a : r.axes) overrides.push_back(a.str());  // axes first: a component swap keeps fixed values
    for (const auto& a : spec.fixed) overrides.push_back(a.str());
    bool renames = false;
    for (const auto& a : r.axes) renames |= a.key == "name";
    for (const auto& a : spec.fixed) renames |= a.key == "name";
    r.experiment = base_name;
    if (renames) {
      toml::table t = base_cfg.table;
      for (const auto& o : overrides) apply_override(t, o);
      r.experiment = experiment_name(t, spec.base);
    }
    r.dir = spec.folder() / r.experiment / r.id;
    r.command = {adfw.string()};
    for (const auto& p : launch.plugins) {
      r.command.push_back("--plugin");
      r.command.push_back(p);
    }
    r.command.insert(r.command.end(), {"--quiet", "run", spec.base.string()});
    for (const auto& p : spec.presets) {
      r.command.push_back("--preset");
      r.command.push_back(p.string());
    }
    for (const auto& o : overrides) {
      r.command.push_back("--set");
      r.command.push_back(o);
    }
    r.command.insert(r.command.end(), {"--run-id", r.id, "--output", spec.folder().string()});
    if (launch.threads > 0) {
      r.command.push_back("--threads");
      r.command.push_back(std::to_string(launch.threads));
    }
    runs.push_back(std::move(r));
  }
  return runs;
}

namespace {

std::vector<std::string> axis_keys_of(const SweepSpec& spec) {
  std::vector<std::string> keys;
  for (const auto& grid : spec.grids)
    for (const auto& g : grid)
      for (const auto& a : g)
        if (std::find(keys.begin(), keys.end(), a.key) == keys.end()) keys.push_back(a.key);
  for (const auto& z : spec.zips)
    for (const auto& a : z) keys.push_back(a.key);
  if (!spec.seeds.empty()) keys.push_back("seed");
  return keys;
}

nlohmann::json table_json(const TableDefaults& t) {
  return {{"rows", t.rows}, {"cols", t.cols}, {"metrics", t.metrics}, {"where", t.where}, {"reference", t.reference}};
}

}  // namespace

Manifest manifest_of(const SweepSpec& spec, const std::vector<SweepRun>& runs) {
  Manifest m;
  m.name = spec.name;
  m.folder = spec.folder();
  m.sweep_file = spec.file;
  m.runs = runs;
  m.axis_keys = axis_keys_of(spec);
  m.table = spec.table;
  m.reproduces = spec.reproduces;
  return m;
}

nlohmann::json manifest_json(const SweepSpec& spec, const std::vector<SweepRun>& runs) {
  nlohmann::json j;
  j["format"] = "adfw-sweep/1";
  j["name"] = spec.name;
  j["description"] = spec.description;
  j["sweep_file"] = spec.file.string();
  j["base"] = spec.base.string();
  j["presets"] = preset_strings(spec);
  j["set"] = nlohmann::json::array();
  for (const auto& a : spec.fixed) j["set"].push_back(a.str());
  j["axes"] = axis_keys_of(spec);
  j["table"] = table_json(spec.table);
  j["reproduces"] = spec.reproduces.to_json();
  j["runs"] = nlohmann::json::array();
  for (const auto& r : runs) {
    nlohmann::json axes = nlohmann::json::array();
    for (const auto& a : r.axes) axes.push_back({{"key", a.key}, {"value", a.value}});
    // Run folders are stored relative to the sweep folder, so a copied folder still reads.
    j["runs"].push_back({{"index", r.index},
                         {"id", r.id},
                         {"experiment", r.experiment},
                         {"dir", (fs::path(r.experiment) / r.id).string()},
                         {"axes", axes},
                         {"command", r.command}});
  }
  return j;
}

void write_manifest(const SweepSpec& spec, const std::vector<SweepRun>& runs) {
  write_json(spec.folder() / "sweep.json", manifest_json(spec, runs));
}

Manifest read_manifest(const fs::path& folder_or_file) {
  fs::path folder = folder_or_file, file = folder_or_file / "sweep.json";
  if (fs::is_regular_file(folder_or_file)) {
    file = folder_or_file;
    folder = fs::absolute(file).lexically_normal().parent_path();
    if (folder.filename() == "slurm") folder = folder.parent_path();
  }
  if (!fs::exists(file))
    throw ConfigError(folder.string() + " holds no sweep.json: not a sweep folder (give the sweep file, or run `adfw sweep` first)");
  const nlohmann::json j = read_json(file);
  Manifest m;
  try {
    if (j.value("format", "") != "adfw-sweep/1") throw Error("unknown format '" + j.value("format", "") + "'");
    m.name = j.at("name").get<std::string>();
    m.folder = fs::absolute(folder).lexically_normal();
    m.sweep_file = j.value("sweep_file", "");
    m.axis_keys = j.value("axes", std::vector<std::string>{});
    const auto& t = j.at("table");
    m.table.rows = t.value("rows", "");
    m.table.cols = t.value("cols", "");
    m.table.metrics = t.value("metrics", std::vector<std::string>{});
    m.table.where = t.value("where", std::vector<std::string>{});
    m.table.reference = t.value("reference", true);
    m.reproduces = Reproduces::from_json(j.value("reproduces", nlohmann::json::object()));
    for (const auto& r : j.at("runs")) {
      SweepRun run;
      run.index = r.at("index").get<std::size_t>();
      run.id = r.at("id").get<std::string>();
      run.experiment = r.at("experiment").get<std::string>();
      run.dir = m.folder / r.at("dir").get<std::string>();
      for (const auto& a : r.at("axes")) run.axes.push_back({a.at("key").get<std::string>(), a.at("value").get<std::string>()});
      run.command = r.at("command").get<std::vector<std::string>>();
      m.runs.push_back(std::move(run));
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(file.string() + ": malformed sweep manifest: " + e.what());
  } catch (const Error& e) {
    throw Error(file.string() + ": " + e.what());
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// Executing runs
// ---------------------------------------------------------------------------------------------

namespace {

/// The most telling lines at the end of a child's output: its "error:" lines, else the last lines.
std::string output_excerpt(const fs::path& log) {
  std::ifstream in(log);
  std::vector<std::string> lines, errors;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("error", 0) == 0) errors.push_back(line);
    lines.push_back(line);
  }
  const auto& pick = errors.empty() ? lines : errors;
  std::string out;
  const std::size_t from = pick.size() > 3 ? pick.size() - 3 : 0;
  for (std::size_t i = from; i < pick.size(); ++i) out += (out.empty() ? "" : "\n") + pick[i];
  if (out.size() > 2000) out = out.substr(out.size() - 2000);
  return out;
}

void append_line(const fs::path& file, const std::string& line) {
  std::ofstream out(file, std::ios::app);
  out << line << "\n";
}

}  // namespace

RunState run_state(const SweepRun& run) { return read_run_state(run.dir); }

void retire_failed(const SweepRun& run) {
  if (!fs::exists(run.dir)) return;
  const fs::path attempts = run.dir.parent_path() / ".attempts";
  fs::create_directories(attempts);
  for (int n = 1;; ++n) {
    const fs::path to = attempts / (run.id + "." + std::to_string(n));
    if (fs::exists(to)) continue;
    std::error_code ec;
    fs::rename(run.dir, to, ec);
    if (ec) throw Error("cannot move the failed run " + run.dir.string() + " aside to " + to.string() + ": " + ec.message());
    return;
  }
}

int start_run(const SweepRun& run) {
  std::vector<std::string> args = run.command;
  if (args.empty()) throw Error("run " + run.id + " has no command");
  if (read_run_state(run.dir) == RunState::running) args.push_back("--resume");
  std::error_code ec;
  fs::create_directories(run.dir, ec);
  if (ec) throw Error("cannot create run folder " + run.dir.string() + ": " + ec.message());
  const fs::path log = run.dir / "output.log";
  std::string header = "# " + utc_now_iso() + " $";
  for (const auto& a : args) header += " " + shell_quote(a);
  append_line(log, header);
  const int fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot open " + log.string() + ": " + std::strerror(errno));
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fd);
    throw Error(std::string("fork failed: ") + std::strerror(errno));
  }
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execv(argv[0], argv.data());
    const std::string msg = std::string("error: cannot execute ") + argv[0] + ": " + std::strerror(errno) + "\n";
    (void)!::write(2, msg.data(), msg.size());
    ::_exit(127);
  }
  ::close(fd);
  return pid;
}

RunState finish_run(const SweepRun& run, int wait_status) {
  const RunState state = read_run_state(run.dir);
  const bool exited_ok = WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0;
  if (exited_ok && state == RunState::done) return RunState::done;
  std::string how;
  if (WIFEXITED(wait_status))
    how = "adfw run exited with code " + std::to_string(WEXITSTATUS(wait_status));
  else if (WIFSIGNALED(wait_status))
    how = "adfw run was killed by signal " + std::to_string(WTERMSIG(wait_status)) + " (" +
          strsignal(WTERMSIG(wait_status)) + ")";
  else
    how = "adfw run ended abnormally";
  if (exited_ok) how += " without marking the run done";
  const fs::path file = run.dir / "status.json";
  nlohmann::json j = nlohmann::json::object();
  if (fs::exists(file)) {
    try {
      j = read_json(file);
    } catch (const Error&) {
    }
  }
  if (state != RunState::failed || !j.contains("error")) {
    const std::string excerpt = output_excerpt(run.dir / "output.log");
    j["error"] = how + (excerpt.empty() ? "" : ":\n" + excerpt);
  }
  j["state"] = "failed";
  j["updated"] = utc_now_iso();
  j["exit"] = how;
  write_json(file, j);
  return RunState::failed;
}

RunState execute_run(const SweepRun& run, bool rerun_failed) {
  const RunState s = run_state(run);
  if (s == RunState::done) return s;
  if (s == RunState::failed) {
    if (!rerun_failed) return s;
    retire_failed(run);
  }
  const int pid = start_run(run);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw Error(std::string("waitpid failed: ") + std::strerror(errno));
  }
  return finish_run(run, status);
}

std::string SweepSummary::text() const {
  std::ostringstream os;
  const std::size_t total = skipped.size() + done.size() + failed.size();
  os << total << " runs: " << done.size() << " finished now, " << skipped.size() << " already done, " << failed.size()
     << " failed";
  for (const auto& f : failed) os << "\n  failed: " << f;
  return os.str();
}

namespace {

class FolderLock {
 public:
  explicit FolderLock(const fs::path& folder) {
    fs::create_directories(folder);
    const fs::path file = folder / ".sweep.lock";
    fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error("cannot open " + file.string() + ": " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      throw Error("another `adfw sweep` is running on " + folder.string() + " (" + file.string() +
                  " is locked); wait for it or stop it first");
    }
  }
  ~FolderLock() { ::close(fd_); }
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

 private:
  int fd_ = -1;
};

std::string first_line(const std::string& s) {
  const auto nl = s.find('\n');
  std::string out = nl == std::string::npos ? s : s.substr(0, nl);
  if (out.size() > 160) out = out.substr(0, 157) + "...";
  return out;
}

std::string error_of(const SweepRun& run) {
  try {
    const nlohmann::json j = read_json(run.dir / "status.json");
    return j.value("error", std::string());
  } catch (const std::exception&) {
    return {};
  }
}

}  // namespace

SweepSummary run_local(const Manifest& manifest, const LocalOptions& options) {
  FolderLock lock(manifest.folder);
  auto say = [&](const std::string& s) {
    if (options.print) options.print(s);
  };
  SweepSummary summary;
  std::vector<const SweepRun*> todo;
  for (const auto& r : manifest.runs) {
    const RunState s = run_state(r);
    if (s == RunState::done) {
      summary.skipped.push_back(r.id);
    } else if (s == RunState::failed && !options.rerun_failed) {
      summary.failed.push_back(r.id + " (failed earlier; --rerun-failed reruns it): " + first_line(error_of(r)));
    } else {
      if (s == RunState::failed) retire_failed(r);
      todo.push_back(&r);
    }
  }
  say(std::to_string(manifest.runs.size()) + " runs: " + std::to_string(summary.skipped.size()) + " already done, " +
      std::to_string(todo.size()) + " to run on " + std::to_string(options.workers) + " worker(s)");
  std::map<int, const SweepRun*> active;
  std::size_t next = 0, finished = 0;
  const int workers = std::max(1, options.workers);
  while (next < todo.size() || !active.empty()) {
    while (next < todo.size() && static_cast<int>(active.size()) < workers) {
      const SweepRun& r = *todo[next++];
      try {
        const int pid = start_run(r);
        active[pid] = &r;
        say("start  " + r.id);
      } catch (const Error& e) {
        // Nothing started: record it like any other failure and carry on.
        summary.failed.push_back(r.id + ": " + e.what());
        ++finished;
      }
    }
    if (active.empty()) continue;
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      throw Error(std::string("waitpid failed: ") + std::strerror(errno));
    }
    auto it = active.find(pid);
    if (it == active.end()) continue;
    const SweepRun& r = *it->second;
    active.erase(it);
    ++finished;
    const std::string progress = "[" + std::to_string(finished) + "/" + std::to_string(todo.size()) + "] ";
    if (finish_run(r, status) == RunState::done) {
      summary.done.push_back(r.id);
      say(progress + "done   " + r.id);
    } else {
      const std::string err = first_line(error_of(r));
      summary.failed.push_back(r.id + ": " + err);
      say(progress + "FAILED " + r.id + ": " + err + " (see " + (r.dir / "output.log").string() + ")");
    }
  }
  return summary;
}

// ---------------------------------------------------------------------------------------------
// Slurm
// ---------------------------------------------------------------------------------------------

std::string shell_quote(const std::string& arg) {
  const bool plain = !arg.empty() && std::all_of(arg.begin(), arg.end(), [](unsigned char c) {
    return std::isalnum(c) || std::strchr("@%+=:,./_-", c) != nullptr;
  });
  if (plain) return arg;
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

std::string array_spec(const std::vector<std::size_t>& indices) {
  std::vector<std::size_t> v = indices;
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  std::string out;
  for (std::size_t i = 0; i < v.size();) {
    std::size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    out += (out.empty() ? "" : ",") + std::to_string(v[i]);
    if (j > i) out += "-" + std::to_string(v[j]);
    i = j + 1;
  }
  return out;
}

fs::path write_snapshot(const SweepSpec& spec, const std::vector<SweepRun>& runs) {
  const fs::path dir = spec.folder() / "slurm";
  fs::create_directories(dir);
  for (int k = 1;; ++k) {
    const fs::path f = dir / ("manifest-" + std::to_string(k) + ".json");
    if (fs::exists(f)) continue;
    write_json(f, manifest_json(spec, runs));
    return f;
  }
}

std::string slurm_script(const Manifest& m, const SlurmOptions& s, const std::vector<std::size_t>& indices,
                         const fs::path& adfw, const std::vector<std::string>& plugins, const fs::path& manifest_file) {
  if (indices.empty()) throw Error("no runs to submit");
  std::ostringstream os;
  os << "#!/bin/bash\n"
     << "# adfw sweep '" << m.name << "': a Slurm job array; task i runs run i of " << manifest_file.filename().string() << "\n"
     << "# (`adfw sweep task` skips a run that is done and resumes an interrupted one).\n"
     << "# Written by `adfw sweep --backend slurm`; resubmit with the same command.\n";
  const std::string job = "adfw-" + m.name;
  for (const auto& p : {m.folder, manifest_file, adfw})
    if (p.string().find_first_of(" \t\n") != std::string::npos)
      throw ConfigError("Slurm: " + p.string() + " contains white space, which #SBATCH lines cannot hold; "
                        "use an output folder without spaces (sweep `output` or --output)");
  os << "#SBATCH --job-name=" << job << "\n";
  os << "#SBATCH --array=" << array_spec(indices);
  if (s.max_parallel > 0) os << "%" << s.max_parallel;
  os << "\n";
  os << "#SBATCH --output=" << (m.folder / "slurm" / "logs" / "%A_%a.out").string() << "\n";
  if (!s.partition.empty()) os << "#SBATCH --partition=" << s.partition << "\n";
  if (!s.time.empty()) os << "#SBATCH --time=" << s.time << "\n";
  if (!s.gpus.empty()) os << "#SBATCH --gres=gpu:" << s.gpus << "\n";
  if (s.cpus_per_task > 0) os << "#SBATCH --cpus-per-task=" << s.cpus_per_task << "\n";
  if (!s.mem.empty()) os << "#SBATCH --mem=" << s.mem << "\n";
  if (!s.account.empty()) os << "#SBATCH --account=" << s.account << "\n";
  if (!s.qos.empty()) os << "#SBATCH --qos=" << s.qos << "\n";
  for (const auto& e : s.extra) {
    if (e.find('\n') != std::string::npos) throw ConfigError("slurm.extra: an sbatch option may not span lines: " + e);
    os << "#SBATCH " << (e.rfind("--", 0) == 0 || e.rfind("-", 0) == 0 ? e : "--" + e) << "\n";
  }
  os << "\nset -eo pipefail\n";
  for (const auto& line : s.setup) os << line << "\n";
  os << "export OMP_WAIT_POLICY=\"${OMP_WAIT_POLICY:-PASSIVE}\"\n"
     << "threads=()\n"
     << "if [ -n \"${SLURM_CPUS_PER_TASK:-}\" ]; then threads=(--threads \"$SLURM_CPUS_PER_TASK\"); fi\n"
     << "exec " << shell_quote(adfw.string());
  for (const auto& p : plugins) os << " --plugin " << shell_quote(p);
  os << " sweep task " << shell_quote(manifest_file.string()) << " \"$SLURM_ARRAY_TASK_ID\" \"${threads[@]}\"\n";
  return os.str();
}

std::string submit_slurm(const Manifest& m, const std::string& script, const fs::path& manifest_file, bool submit) {
  const fs::path dir = m.folder / "slurm";
  fs::create_directories(dir / "logs");  // sbatch does not create the --output folder
  const fs::path file = dir / "sweep.sbatch";
  write_file_atomic(file, script);
  fs::permissions(file, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
  std::string listing = "# index  run id  command (what array task <index> runs)\n";
  for (const auto& r : m.runs) {
    listing += std::to_string(r.index) + "\t" + r.id + "\t";
    for (std::size_t i = 0; i < r.command.size(); ++i) listing += (i ? " " : "") + shell_quote(r.command[i]);
    listing += "\n";
  }
  write_file_atomic(dir / "runs.txt", listing);
  if (!submit) return {};
  const char* env = std::getenv("ADFW_SBATCH");
  const std::string sbatch = env && *env ? env : "sbatch";
  const std::string cmd = shell_quote(sbatch) + " --parsable " + shell_quote(file.string()) + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw Error("cannot run " + sbatch + ": " + std::strerror(errno));
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof(buf), p)) out += buf;
  const int rc = ::pclose(p);
  if (rc != 0)
    throw Error("sbatch failed (" + cmd + "):\n" + out +
                (WIFEXITED(rc) && WEXITSTATUS(rc) == 127 ? "\nsbatch not found: install Slurm's client or set ADFW_SBATCH" : ""));
  // --parsable prints "jobid" or "jobid;cluster" (after any warnings).
  std::string job;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    const std::string first = line.substr(0, line.find(';'));
    if (!first.empty() && std::all_of(first.begin(), first.end(), ::isdigit)) job = first;
  }
  if (job.empty()) throw Error("sbatch printed no job id:\n" + out);
  nlohmann::json jobs = nlohmann::json::array();
  if (fs::exists(dir / "jobs.json")) jobs = read_json(dir / "jobs.json");
  std::string spec;
  {
    std::istringstream ss(script);
    for (std::string line; std::getline(ss, line);)
      if (line.rfind("#SBATCH --array=", 0) == 0) spec = line.substr(16);
  }
  jobs.push_back({{"job_id", job},
                  {"array", spec},
                  {"submitted", utc_now_iso()},
                  {"manifest", manifest_file.lexically_relative(m.folder).string()}});
  write_json(dir / "jobs.json", jobs);
  return job;
}

namespace {

/// Run id -> Slurm state ("PENDING", "RUNNING", ...) from squeue, for the recorded jobs (each
/// job's array indices are read against the manifest it was submitted with).
std::map<std::string, std::string> slurm_states(const Manifest& m, bool* answered) {
  std::map<std::string, std::string> out;
  *answered = false;
  const fs::path jobs_file = m.folder / "slurm" / "jobs.json";
  if (!fs::exists(jobs_file)) return out;
  std::string ids;
  std::map<std::string, std::vector<std::string>> index_to_id;  // job -> run id per array index
  for (const auto& j : read_json(jobs_file)) {
    const std::string job = j.value("job_id", std::string());
    if (job.empty()) continue;
    ids += (ids.empty() ? "" : ",") + job;
    std::vector<std::string>& map = index_to_id[job];
    const fs::path mf = m.folder / j.value("manifest", std::string());
    if (!j.value("manifest", std::string()).empty() && fs::exists(mf)) {
      try {
        for (const auto& r : read_json(mf).at("runs")) map.push_back(r.at("id").get<std::string>());
      } catch (const std::exception&) {
        map.clear();
      }
    }
    if (map.empty())
      for (const auto& r : m.runs) map.push_back(r.id);
  }
  if (ids.empty()) return out;
  const char* env = std::getenv("ADFW_SQUEUE");
  const std::string squeue = env && *env ? env : "squeue";
  const std::string cmd = shell_quote(squeue) + " -h -r -j " + shell_quote(ids) + " -o '%F %K %T' 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  std::string text;
  char buf[512];
  while (std::fgets(buf, sizeof(buf), p)) text += buf;
  const int rc = ::pclose(p);
  if (rc != 0) return out;
  *answered = true;
  std::istringstream lines(text);
  std::string job, task, state;
  while (lines >> job >> task >> state) {
    std::size_t idx = 0;
    auto r = std::from_chars(task.data(), task.data() + task.size(), idx);
    const auto it = index_to_id.find(job);
    if (r.ec == std::errc() && it != index_to_id.end() && idx < it->second.size()) out[it->second[idx]] = state;
  }
  return out;
}

std::string headline(const SweepRun& run) {
  try {
    const nlohmann::json m = read_json(run.dir / "metrics.json");
    const nlohmann::json& vals = m.contains("metrics") ? m["metrics"] : m;
    for (const char* k : {"image_auroc", "pixel_auroc", "aupro"})
      if (vals.contains(k) && vals[k].is_number()) {
        char buf[64];
        std::snprintf(buf, sizeof(buf), "%s %.4f", k, vals[k].get<double>());
        return buf;
      }
  } catch (const std::exception&) {
  }
  return {};
}

}  // namespace

std::vector<RunStatusLine> sweep_status(const Manifest& m, bool query_slurm) {
  bool answered = false;
  std::map<std::string, std::string> queue;
  if (query_slurm) queue = slurm_states(m, &answered);
  std::vector<RunStatusLine> out;
  for (const auto& r : m.runs) {
    RunStatusLine l{r.index, r.id, "", ""};
    const RunState s = run_state(r);
    const auto q = queue.find(r.id);
    switch (s) {
      case RunState::done:
        l.state = "done";
        l.detail = headline(r);
        break;
      case RunState::failed:
        l.state = "failed";
        l.detail = first_line(error_of(r));
        break;
      case RunState::running:
        l.state = "running";
        if (q != queue.end()) l.detail = "slurm " + q->second;
        else if (answered) l.detail = "not in the Slurm queue: interrupted? `adfw sweep` again resumes it";
        break;
      case RunState::missing:
        if (q != queue.end()) {
          l.state = q->second == "RUNNING" ? "running" : "queued";
          l.detail = "slurm " + q->second;
        } else {
          l.state = "pending";
        }
        break;
    }
    out.push_back(std::move(l));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Process helpers
// ---------------------------------------------------------------------------------------------

fs::path self_executable() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw Error("cannot find this program's path (/proc/self/exe): " + ec.message());
  return p;
}

std::vector<std::string> self_plugins() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  for (std::string a; std::getline(in, a, '\0');) args.push_back(a);
  std::vector<std::string> out;
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--plugin" && i + 1 < args.size()) out.push_back(fs::absolute(args[++i]).string());
    else if (args[i].rfind("--plugin=", 0) == 0) out.push_back(fs::absolute(args[i].substr(9)).string());
  }
  return out;
}

}  // namespace adfw::sweep
