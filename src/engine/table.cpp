#include "adfw/engine/table.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include "adfw/core/config.hpp"
#include "adfw/core/error.hpp"

namespace fs = std::filesystem;

namespace adfw::table {

namespace {

const toml::node* at_key(const toml::table& t, const std::string& key) {
  const toml::node* n = &t;
  std::size_t start = 0;
  while (start <= key.size()) {
    const auto dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const auto* tab = n->as_table();
    if (!tab) return nullptr;
    n = tab->get(part);
    if (!n) return nullptr;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return n;
}

nlohmann::json toml_to_json(const toml::table& t) {
  std::ostringstream os;
  os << toml::json_formatter(t);
  return nlohmann::json::parse(os.str());
}

RunRecord record_of(const std::string& id, const fs::path& dir, const std::vector<sweep::Assignment>& axes) {
  RunRecord r;
  r.id = id;
  r.dir = dir;
  r.state = read_run_state(dir);
  if (fs::exists(dir / "config.toml")) {
    try {
      r.config = parse_toml_file(dir / "config.toml");
    } catch (const ConfigError&) {
      r.state = RunState::failed;
    }
  } else {
    for (const auto& a : axes) apply_override(r.config, a.str());
  }
  if (r.state == RunState::done && fs::exists(dir / "metrics.json")) {
    try {
      r.metrics = read_json(dir / "metrics.json");
    } catch (const Error&) {
      r.metrics = nullptr;
    }
  }
  return r;
}

}  // namespace

std::string value_label(const toml::node* node) {
  if (!node) return "(unset)";
  if (const auto* s = node->as_string()) return s->get();
  // Lists of names (categories, layers) read best as "layer2+layer3", like run ids.
  if (const auto* a = node->as_array(); a && !a->empty() && a->is_homogeneous(toml::node_type::string)) {
    std::string out;
    for (const auto& e : *a) out += (out.empty() ? "" : "+") + e.as_string()->get();
    return out;
  }
  return sweep::canonical_value(*node);
}

bool parses_as_number(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return false;
  if (out) *out = v;
  return true;
}

RunSet load_runs(const fs::path& input, const fs::path& output) {
  RunSet set;
  sweep::Manifest m;
  bool have_manifest = false;
  if (fs::is_regular_file(input)) {
    const sweep::SweepSpec spec = sweep::read_sweep(input, output);
    sweep::LaunchOptions launch;
    launch.adfw = "adfw";
    m = sweep::manifest_of(spec, sweep::expand(spec, launch));
    have_manifest = true;
  } else if (fs::is_directory(input) && fs::exists(input / "sweep.json")) {
    m = sweep::read_manifest(input);
    have_manifest = true;
  } else if (!fs::is_directory(input)) {
    throw ConfigError(input.string() + ": no such sweep file or runs folder");
  }
  if (have_manifest) {
    set.axis_keys = m.axis_keys;
    set.defaults = m.table;
    set.reproduces = m.reproduces;
    set.name = m.name;
    for (const auto& r : m.runs) set.runs.push_back(record_of(r.id, r.dir, r.axes));
    return set;
  }
  set.name = fs::absolute(input).lexically_normal().filename().string();
  std::vector<fs::path> dirs;
  if (fs::exists(input / "config.toml") || fs::exists(input / "status.json")) dirs.push_back(input);
  for (auto it = fs::recursive_directory_iterator(input, fs::directory_options::skip_permission_denied);
       it != fs::recursive_directory_iterator(); ++it) {
    if (!it->is_directory()) continue;
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      it.disable_recursion_pending();
      continue;
    }
    if (fs::exists(it->path() / "config.toml") || fs::exists(it->path() / "status.json")) {
      dirs.push_back(it->path());
      it.disable_recursion_pending();  // maps/ and checkpoints below a run are not runs
    }
  }
  std::sort(dirs.begin(), dirs.end());
  for (const auto& d : dirs) set.runs.push_back(record_of(d.filename().string(), d, {}));
  return set;
}

std::string latex_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "\\&"; break;
      case '%': out += "\\%"; break;
      case '$': out += "\\$"; break;
      case '#': out += "\\#"; break;
      case '_': out += "\\_"; break;
      case '{': out += "\\{"; break;
      case '}': out += "\\}"; break;
      case '~': out += "\\textasciitilde{}"; break;
      case '^': out += "\\textasciicircum{}"; break;
      case '\\': out += "\\textbackslash{}"; break;
      default: out += c;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Aggregation
// ---------------------------------------------------------------------------------------------

namespace {

std::optional<double> metric_value(const nlohmann::json& m, const std::string& name, bool* fraction) {
  if (!m.is_object()) return std::nullopt;
  if (m.contains("metrics") && m["metrics"].is_object() && m["metrics"].contains(name)) {
    const auto& v = m["metrics"][name];
    if (!v.is_number()) return std::nullopt;
    *fraction = true;
    return v.get<double>();
  }
  // Any other number in metrics.json by its dotted path, e.g. timing.fit_seconds.
  const nlohmann::json* cur = &m;
  std::size_t start = 0;
  while (true) {
    const auto dot = name.find('.', start);
    const std::string part = name.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object() || !cur->contains(part)) return std::nullopt;
    cur = &(*cur)[part];
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (!cur->is_number()) return std::nullopt;
  return cur->get<double>();
}

bool lower_is_better(const std::string& name) {
  for (const char* w : {"seconds", "time", "memory", "bytes", "latency"})
    if (name.find(w) != std::string::npos) return true;
  return false;
}

void finish_cell(Cell& c) {
  c.n = static_cast<int>(c.values.size());
  if (c.n == 0) return;
  double s = 0;
  for (double v : c.values) s += v;
  c.mean = s / c.n;
  double ss = 0;
  for (double v : c.values) ss += (v - c.mean) * (v - c.mean);
  c.std = c.n > 1 ? std::sqrt(ss / (c.n - 1)) : 0.0;
}

nlohmann::json reference_of(const RunRecord& r) {
  if (r.metrics.is_object() && r.metrics.contains("reference") && r.metrics["reference"].is_object())
    return r.metrics["reference"];
  if (const auto* ref = r.config.get_as<toml::table>("reference"); ref && !ref->empty()) return toml_to_json(*ref);
  return nullptr;
}

std::optional<double> json_number(const nlohmann::json& j, const std::vector<std::string>& path) {
  const nlohmann::json* cur = &j;
  for (const auto& p : path) {
    if (!cur->is_object() || !cur->contains(p)) return std::nullopt;
    cur = &(*cur)[p];
  }
  if (!cur->is_number()) return std::nullopt;
  return cur->get<double>();
}

struct Where {
  std::string key, value;
};

std::vector<Where> parse_where(const std::vector<std::string>& where) {
  std::vector<Where> out;
  for (const auto& w : where) {
    const auto eq = w.find('=');
    if (eq == std::string::npos || eq == 0) throw ConfigError("--where " + w + ": expected key.path=value");
    toml::table t;
    apply_override(t, w);  // typed exactly like --set
    const toml::node* n = at_key(t, w.substr(0, eq));
    out.push_back({w.substr(0, eq), n ? sweep::canonical_value(*n) : ""});
  }
  return out;
}

// What a run had to learn from, as the experiment engine records it in metrics.json's
// "protocol" (e.g. protocol.n_pixel_labelled): tables of supervision against N read rows from there.
constexpr const char* kResultPrefix = "protocol.";

// The label of one run under a row or column key: a config key (method.coreset.ratio), a
// "protocol.<field>" of metrics.json, or several of these joined with ',' (labels joined by " · ").
// Results exist only for done runs: other runs get "" and are counted as missing.
std::string key_label(const RunRecord& r, const std::string& key) {
  if (key.find(',') != std::string::npos) {
    std::string out;
    std::size_t start = 0;
    while (start <= key.size()) {
      const std::size_t end = std::min(key.find(',', start), key.size());
      const std::string part = key.substr(start, end - start);
      if (!part.empty()) {
        const std::string l = key_label(r, part);
        if (l.empty()) return "";
        out += (out.empty() ? "" : " · ") + l;
      }
      start = end + 1;
    }
    return out;
  }
  if (key.rfind(kResultPrefix, 0) == 0) {
    if (r.state != RunState::done || !r.metrics.is_object()) return "";
    const auto p = r.metrics.find("protocol");
    const std::string field = key.substr(std::string(kResultPrefix).size());
    if (p == r.metrics.end() || !p->is_object() || !p->contains(field)) return "(unset)";
    const auto& v = (*p)[field];
    return v.is_string() ? v.get<std::string>() : v.dump();
  }
  return value_label(at_key(r.config, key));
}

std::string seed_of(const RunRecord& r) {
  const toml::node* n = r.config.get("seed");
  return n ? sweep::canonical_value(*n) : "";
}

}  // namespace

Table build_table(const RunSet& set, const TableOptions& o) {
  if (o.metrics.empty()) throw ConfigError("no metrics asked for (--metrics image_auroc,pixel_auroc,...)");
  Table t;
  t.rows_key = o.rows;
  t.cols_key = o.cols;
  t.metrics = o.metrics;
  t.caption = o.caption.empty() ? (set.reproduces.empty() ? "" : set.reproduces.caption()) : o.caption;
  const std::vector<Where> where = parse_where(o.where);

  // Runs that pass the filters; their row and column labels in order of first appearance
  // (sweep order; folder scans are sorted by path).
  std::vector<const RunRecord*> used;
  std::vector<std::string> row_labels, col_labels;
  auto note_label = [](std::vector<std::string>& v, const std::string& l) {
    if (std::find(v.begin(), v.end(), l) == v.end()) v.push_back(l);
  };
  for (const auto& r : set.runs) {
    bool keep = true;
    for (const auto& w : where) {
      const toml::node* n = at_key(r.config, w.key);
      if (!n || sweep::canonical_value(*n) != w.value) keep = false;
    }
    if (!keep) continue;
    const std::string row = o.rows.empty() ? "all" : key_label(r, o.rows);
    const std::string col = o.cols.empty() ? "" : key_label(r, o.cols);
    if (row.empty() || (!o.cols.empty() && col.empty())) {  // labelled by results it does not have yet
      ++t.runs_missing;
      continue;
    }
    note_label(row_labels, row);
    note_label(col_labels, col);
    if (r.state == RunState::done && r.metrics.is_object()) used.push_back(&r);
    else ++t.runs_missing;
  }
  // Numeric rows (N of a supervision table, a coreset ratio) go in ascending order, any other
  // labels after them in order of appearance.
  std::stable_sort(row_labels.begin(), row_labels.end(), [](const std::string& a, const std::string& b) {
    double x = 0, y = 0;
    const bool na = parses_as_number(a, &x), nb = parses_as_number(b, &y);
    if (na && nb) return x < y;
    return na && !nb;
  });
  t.runs_used = static_cast<int>(used.size());
  if (row_labels.empty()) throw Error("no runs found" + std::string(where.empty() ? "" : " matching the --where filters"));
  t.columns = col_labels;
  const std::size_t nm = o.metrics.size(), nc = col_labels.size();
  t.fraction.assign(nm, false);
  t.higher_better.assign(nm, true);
  for (std::size_t k = 0; k < nm; ++k) t.higher_better[k] = !lower_is_better(o.metrics[k]);

  // Keys the sweep varied that neither the rows, the columns, the seeds nor a filter pin are
  // averaged over: say so, since that is rarely what a table means. A key that varies only
  // between cells (rows read from the runs' protocol, one per data.path) is not averaged over.
  const auto names_key = [](const std::string& spec, const std::string& key) {
    return ("," + spec + ",").find("," + key + ",") != std::string::npos;
  };
  for (const auto& key : set.axis_keys) {
    if (names_key(o.rows, key) || names_key(o.cols, key) || key == "seed") continue;
    if (std::any_of(where.begin(), where.end(), [&](const Where& w) { return w.key == key; })) continue;
    std::set<std::string> values;
    std::map<std::string, std::set<std::string>> per_cell;
    bool mixed = false;
    for (const auto* r : used) {
      const toml::node* n = at_key(r->config, key);
      const std::string v = n ? sweep::canonical_value(*n) : "";
      values.insert(v);
      auto& cell = per_cell[(o.rows.empty() ? "" : key_label(*r, o.rows)) + '\n' +
                            (o.cols.empty() ? "" : key_label(*r, o.cols))];
      cell.insert(v);
      mixed = mixed || cell.size() > 1;
    }
    if (mixed && values.size() > 1)
      t.notes.push_back("cells average over " + key + " (" + std::to_string(values.size()) +
                        " values); pin it with --where " + key + "=... or use it as --cols");
  }

  nlohmann::json reference;
  for (const auto* r : used) {
    nlohmann::json ref = reference_of(*r);
    if (ref.is_null()) continue;
    if (reference.is_null()) reference = ref;
    else if (ref != reference) {
      t.notes.push_back("the runs carry different [reference] tables; the first one found is shown");
      break;
    }
  }
  // Weights chosen on the test set (trainer.selection = "test") make a number optimistic: every
  // table that contains one says so.
  std::size_t on_test = 0;
  for (const auto* r : used) {
    const auto p = r->metrics.find("protocol");
    if (p != r->metrics.end() && p->is_object() && p->value("selected_on_test", false)) ++on_test;
  }
  if (on_test > 0)
    t.notes.push_back(std::to_string(on_test) + " of " + std::to_string(used.size()) +
                      " run(s) chose their weights on the test set (trainer.selection = \"test\"): their numbers are "
                      "optimistic");
  // Runs on a supervised split (`adfw data split`) are tested on part of the official test set.
  std::set<std::string> split_protocols;
  for (const auto* r : used) {
    const auto p = r->metrics.find("protocol");
    if (p == r->metrics.end() || !p->is_object()) continue;
    const std::string d = p->value("data", "");
    if (d.find("protocol: adfw data split") == std::string::npos) continue;
    const auto at = d.find("test set ");  // what the runs are tested on, the same for every N of a split
    split_protocols.insert(at == std::string::npos ? d : d.substr(at));
  }
  for (const auto& sp : split_protocols) t.notes.push_back("supervised split (adfw data split): " + sp);
  if (reference.is_object()) t.reference_source = reference.value("source", "");
  if (t.caption.empty() && reference.is_object() && reference.contains("reproduces"))
    t.caption = sweep::Reproduces::from_json(reference["reproduces"]).caption();

  std::map<std::string, std::size_t> row_index, col_index;
  for (std::size_t i = 0; i < row_labels.size(); ++i) row_index[row_labels[i]] = i;
  for (std::size_t i = 0; i < nc; ++i) col_index[col_labels[i]] = i;
  t.rows.resize(row_labels.size());
  for (std::size_t i = 0; i < row_labels.size(); ++i) {
    t.rows[i].label = row_labels[i];
    t.rows[i].cells.assign(nm, std::vector<Cell>(nc));
    t.rows[i].reference.assign(nm, std::nullopt);
  }
  for (const auto* r : used) {
    const std::size_t ri = row_index[o.rows.empty() ? "all" : key_label(*r, o.rows)];
    const std::size_t ci = col_index[o.cols.empty() ? "" : key_label(*r, o.cols)];
    for (std::size_t k = 0; k < nm; ++k) {
      bool fraction = false;
      const auto v = metric_value(r->metrics, o.metrics[k], &fraction);
      if (!v) continue;
      if (fraction) t.fraction[k] = true;
      t.rows[ri].cells[k][ci].values.push_back(*v);
      t.rows[ri].cells[k][ci].seeds.push_back(seed_of(*r));
    }
  }
  std::map<int, int> n_count;
  for (auto& row : t.rows)
    for (auto& per_metric : row.cells)
      for (auto& c : per_metric) {
        finish_cell(c);
        if (c.n > 0) ++n_count[c.n];
      }
  for (const auto& [n, count] : n_count)
    if (t.common_n == 0 || count > n_count[t.common_n]) t.common_n = n;

  // The mean row.
  if (t.rows.size() > 1) {
    Row mean;
    mean.label = "Mean";
    mean.cells.assign(nm, std::vector<Cell>(nc));
    mean.reference.assign(nm, std::nullopt);
    for (std::size_t k = 0; k < nm; ++k)
      for (std::size_t c = 0; c < nc; ++c) {
        Cell& out = mean.cells[k][c];
        bool complete = true;
        double sum = 0;
        for (const auto& row : t.rows) {
          if (!row.cells[k][c].present()) complete = false;
          else sum += row.cells[k][c].mean;
        }
        if (!complete) continue;
        // Seeds every row has; a seed's value per row is the mean of that row's runs with it.
        std::set<std::string> seeds(t.rows[0].cells[k][c].seeds.begin(), t.rows[0].cells[k][c].seeds.end());
        for (const auto& row : t.rows) {
          std::set<std::string> s(row.cells[k][c].seeds.begin(), row.cells[k][c].seeds.end()), keep;
          std::set_intersection(seeds.begin(), seeds.end(), s.begin(), s.end(), std::inserter(keep, keep.begin()));
          seeds = keep;
        }
        for (const auto& seed : seeds) {
          double acc = 0;
          for (const auto& row : t.rows) {
            const Cell& cell = row.cells[k][c];
            double s = 0;
            int n = 0;
            for (std::size_t i = 0; i < cell.values.size(); ++i)
              if (cell.seeds[i] == seed) {
                s += cell.values[i];
                ++n;
              }
            acc += s / n;
          }
          out.values.push_back(acc / t.rows.size());
          out.seeds.push_back(seed);
        }
        finish_cell(out);
        if (out.n == 0) out.n = 1;  // complete rows but no seed in common: the mean without a spread
        out.mean = sum / t.rows.size();
      }
    t.mean = mean;
  }

  // References and bests.
  t.show_reference.assign(nm, false);
  auto fill = [&](Row& row, bool is_mean) {
    row.best.assign(nm, std::vector<bool>(nc, false));
    for (std::size_t k = 0; k < nm; ++k) {
      if (reference.is_object()) {
        row.reference[k] = is_mean ? json_number(reference, {"mean", o.metrics[k]})
                                   : json_number(reference, {"categories", row.label, o.metrics[k]});
        if (row.reference[k] && o.reference) t.show_reference[k] = true;
      }
      if (nc < 2) continue;
      std::optional<double> best;
      for (std::size_t c = 0; c < nc; ++c) {
        const Cell& cell = row.cells[k][c];
        if (!cell.present()) continue;
        if (!best || (t.higher_better[k] ? cell.mean > *best : cell.mean < *best)) best = cell.mean;
      }
      if (!best) continue;
      // Ties at the printed precision are all bold, as a reader would judge them.
      const int digits = o.digits >= 0 ? o.digits : (o.percent && t.fraction[k] ? 1 : 3);
      const double scale = (o.percent && t.fraction[k] ? 100.0 : 1.0) * std::pow(10.0, digits);
      for (std::size_t c = 0; c < nc; ++c) {
        const Cell& cell = row.cells[k][c];
        row.best[k][c] = cell.present() && std::llround(cell.mean * scale) == std::llround(*best * scale);
      }
    }
  };
  for (auto& row : t.rows) fill(row, false);
  if (t.mean) fill(*t.mean, true);
  if (t.runs_missing > 0)
    t.notes.push_back(std::to_string(t.runs_missing) + " run(s) not done: their cells show as missing (—), never as 0");
  return t;
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

namespace {

enum class Fmt { md, csv, latex };

struct Layout {
  struct Col {
    std::size_t metric;
    int kind;  // 0 = value column c, 1 = reference, 2 = difference
    std::size_t col;
  };
  std::vector<Col> cols;
};

Layout layout_of(const Table& t) {
  Layout l;
  for (std::size_t k = 0; k < t.metrics.size(); ++k) {
    for (std::size_t c = 0; c < t.columns.size(); ++c) l.cols.push_back({k, 0, c});
    if (t.show_reference[k]) {
      l.cols.push_back({k, 1, 0});
      l.cols.push_back({k, 2, 0});
    }
  }
  return l;
}

std::string fmt_number(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  std::string s = buf;
  if (s == "-0" || s.rfind("-0.", 0) == 0) {
    // "-0.0" after rounding is zero.
    if (std::strtod(s.c_str(), nullptr) == 0.0) s = s.substr(1);
  }
  return s;
}

struct Scale {
  double factor;
  int digits;
};

Scale scale_of(const Table& t, const TableOptions& o, std::size_t k) {
  const bool pct = o.percent && t.fraction[k];
  return {pct ? 100.0 : 1.0, o.digits >= 0 ? o.digits : (pct ? 1 : 3)};
}

std::string header_text(const Table& t, const Layout::Col& c, Fmt f) {
  const std::string& metric = t.metrics[c.metric];
  const bool with_cols = !t.cols_key.empty();
  const auto dot = t.cols_key.rfind('.');
  const std::string col_key = dot == std::string::npos ? t.cols_key : t.cols_key.substr(dot + 1);
  if (f == Fmt::latex) {
    // The metric sits in a \multicolumn header row above when there is a column axis.
    if (c.kind == 0) return latex_escape(with_cols ? col_key + "=" + t.columns[c.col] : t.metrics.size() > 1 ? "ours" : metric);
    return c.kind == 1 ? "ref" : (t.columns.size() > 1 ? "$\\Delta$ best" : "$\\Delta$");
  }
  if (c.kind == 0) {
    if (!with_cols) return metric;
    return (t.metrics.size() > 1 ? metric + " " : "") + col_key + "=" + t.columns[c.col];
  }
  return metric + " " + (c.kind == 1 ? "ref" : (t.columns.size() > 1 ? "Δ best" : "Δ"));
}

std::string cell_text(const Table& t, const TableOptions& o, const Row& row, const Layout::Col& c, Fmt f) {
  const Scale s = scale_of(t, o, c.metric);
  const std::string missing = f == Fmt::latex ? "---" : "—";
  const std::string pm = f == Fmt::latex ? " $\\pm$ " : " ± ";
  if (c.kind == 0) {
    const Cell& cell = row.cells[c.metric][c.col];
    if (!cell.present()) return missing;
    std::string text = fmt_number(cell.mean * s.factor, s.digits);
    if (cell.values.size() > 1) text += pm + fmt_number(cell.std * s.factor, s.digits);
    if (cell.n != t.common_n) text += " (n=" + std::to_string(cell.n) + ")";
    if (row.best.size() > c.metric && row.best[c.metric][c.col]) {
      if (f == Fmt::md) text = "**" + text + "**";
      if (f == Fmt::latex) text = "\\textbf{" + text + "}";
    }
    return text;
  }
  const auto& ref = row.reference[c.metric];
  if (!ref) return missing;
  if (c.kind == 1) return fmt_number(*ref * s.factor, s.digits);
  // Difference: ours (the best column when there are several) minus the reference.
  std::optional<double> ours;
  for (std::size_t col = 0; col < t.columns.size(); ++col) {
    const Cell& cell = row.cells[c.metric][col];
    if (!cell.present()) continue;
    if (!ours || (t.higher_better[c.metric] ? cell.mean > *ours : cell.mean < *ours)) ours = cell.mean;
  }
  if (!ours) return missing;
  std::string d = fmt_number((*ours - *ref) * s.factor, s.digits);
  if (d[0] != '-' && std::strtod(d.c_str(), nullptr) != 0.0) d = "+" + d;
  return f == Fmt::latex ? "$" + d + "$" : d;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::vector<std::string> describe(const Table& t, const TableOptions& o) {
  std::vector<std::string> lines;
  std::string what = "Values: ";
  for (std::size_t k = 0; k < t.metrics.size(); ++k)
    what += (k ? ", " : "") + t.metrics[k] + (o.percent && t.fraction[k] ? " (%)" : "");
  what += t.common_n > 1 ? "; mean ± sample std (n−1) over n=" + std::to_string(t.common_n) + " runs (seeds) per cell"
                         : "; one run per cell";
  if (t.columns.size() > 1) what += "; best per row in bold";
  what += "; — = no finished run";
  lines.push_back(what);
  if (t.mean) lines.push_back("Mean: the mean of the row values; ± over the per-seed means of the seeds every row has");
  if (!t.reference_source.empty() && std::any_of(t.show_reference.begin(), t.show_reference.end(), [](bool b) { return b; }))
    lines.push_back("ref: " + t.reference_source + (t.columns.size() > 1 ? "; Δ = best of ours − ref" : "; Δ = ours − ref"));
  for (const auto& n : t.notes) lines.push_back(n);
  return lines;
}

std::string render_grid(const Table& t, const TableOptions& o, Fmt f) {
  const Layout l = layout_of(t);
  const std::string row_head = t.rows_key.empty() ? "" : t.rows_key.substr(t.rows_key.rfind('.') == std::string::npos ? 0 : t.rows_key.rfind('.') + 1);
  std::vector<const Row*> rows;
  for (const auto& r : t.rows) rows.push_back(&r);
  std::ostringstream os;
  if (f == Fmt::csv) {
    os << csv_field(row_head);
    for (const auto& c : l.cols) os << "," << csv_field(header_text(t, c, f));
    os << "\n";
    if (t.mean) rows.push_back(&*t.mean);
    for (const auto* r : rows) {
      os << csv_field(r->label);
      for (const auto& c : l.cols) os << "," << csv_field(cell_text(t, o, *r, c, f));
      os << "\n";
    }
    return os.str();
  }
  if (f == Fmt::md) {
    if (!t.caption.empty()) os << "**" << t.caption << "**\n\n";
    os << "| " << row_head;
    for (const auto& c : l.cols) os << " | " << header_text(t, c, f);
    os << " |\n|---";
    for (std::size_t i = 0; i < l.cols.size(); ++i) os << "|---:";
    os << "|\n";
    auto line = [&](const Row& r, bool bold_label) {
      os << "| " << (bold_label ? "**" + r.label + "**" : r.label);
      for (const auto& c : l.cols) os << " | " << cell_text(t, o, r, c, f);
      os << " |\n";
    };
    for (const auto* r : rows) line(*r, false);
    if (t.mean) line(*t.mean, true);
    os << "\n";
    for (const auto& d : describe(t, o)) os << "- " << d << "\n";
    return os.str();
  }
  // LaTeX, booktabs.
  const std::size_t ncols = 1 + l.cols.size();
  os << "% requires \\usepackage{booktabs}\n\\begin{table}[t]\n\\centering\n";
  if (!t.caption.empty()) os << "\\caption{" << latex_escape(t.caption) << "}\n";
  os << "\\begin{tabular}{l" << std::string(ncols - 1, 'r') << "}\n\\toprule\n";
  const bool metric_row = t.metrics.size() > 1 || !t.cols_key.empty();
  if (metric_row) {
    std::size_t start = 2;
    std::string rules;
    for (std::size_t k = 0; k < t.metrics.size(); ++k) {
      std::size_t span = 0;
      for (const auto& c : l.cols) span += c.metric == k;
      os << " & \\multicolumn{" << span << "}{c}{" << latex_escape(t.metrics[k]) << "}";
      rules += "\\cmidrule(lr){" + std::to_string(start) + "-" + std::to_string(start + span - 1) + "}";
      start += span;
    }
    os << " \\\\\n" << rules << "\n";
  }
  os << latex_escape(row_head);
  for (const auto& c : l.cols) {
    std::string h = header_text(t, c, f);
    if (!metric_row && c.kind != 0) h = latex_escape(t.metrics[c.metric]) + " " + h;
    os << " & " << h;
  }
  os << " \\\\\n\\midrule\n";
  for (const auto* r : rows) {
    os << latex_escape(r->label);
    for (const auto& c : l.cols) os << " & " << cell_text(t, o, *r, c, f);
    os << " \\\\\n";
  }
  if (t.mean) {
    os << "\\midrule\nMean";
    for (const auto& c : l.cols) os << " & " << cell_text(t, o, *t.mean, c, f);
    os << " \\\\\n";
  }
  os << "\\bottomrule\n\\end{tabular}\n";
  for (const auto& d : describe(t, o)) os << "% " << d << "\n";
  os << "\\end{table}\n";
  return os.str();
}

nlohmann::json cell_json(const Cell& c) {
  if (!c.present()) return nullptr;
  nlohmann::json j = {{"mean", c.mean}, {"n", c.n}, {"values", c.values}, {"seeds", c.seeds}};
  j["std"] = c.values.size() > 1 ? nlohmann::json(c.std) : nlohmann::json(nullptr);
  return j;
}

nlohmann::json row_json(const Table& t, const Row& r) {
  nlohmann::json j;
  j["label"] = r.label;
  j["cells"] = nlohmann::json::object();
  j["reference"] = nlohmann::json::object();
  j["best"] = nlohmann::json::object();
  for (std::size_t k = 0; k < t.metrics.size(); ++k) {
    nlohmann::json per = nlohmann::json::object(), best = nlohmann::json::array();
    for (std::size_t c = 0; c < t.columns.size(); ++c) {
      per[t.columns[c]] = cell_json(r.cells[k][c]);
      if (r.best.size() > k && r.best[k][c]) best.push_back(t.columns[c]);
    }
    j["cells"][t.metrics[k]] = per;
    j["best"][t.metrics[k]] = best;
    j["reference"][t.metrics[k]] = r.reference[k] ? nlohmann::json(*r.reference[k]) : nlohmann::json(nullptr);
  }
  return j;
}

}  // namespace

std::string render(const Table& t, const TableOptions& o, const std::string& format) {
  if (format == "md" || format == "markdown") return render_grid(t, o, Fmt::md);
  if (format == "csv") return render_grid(t, o, Fmt::csv);
  if (format == "latex" || format == "tex") return render_grid(t, o, Fmt::latex);
  if (format == "json") {
    nlohmann::json j;
    j["caption"] = t.caption;
    j["rows_key"] = t.rows_key;
    j["cols_key"] = t.cols_key;
    j["metrics"] = t.metrics;
    j["columns"] = t.columns;
    j["values"] = "fractions as in metrics.json (not scaled); std is the sample std (n - 1)";
    j["rows"] = nlohmann::json::array();
    for (const auto& r : t.rows) j["rows"].push_back(row_json(t, r));
    j["mean"] = t.mean ? row_json(t, *t.mean) : nlohmann::json(nullptr);
    j["reference_source"] = t.reference_source;
    j["runs_used"] = t.runs_used;
    j["runs_missing"] = t.runs_missing;
    j["notes"] = t.notes;
    return j.dump(2) + "\n";
  }
  throw ConfigError("unknown table format '" + format + "'; use md, csv, latex or json");
}

}  // namespace adfw::table
