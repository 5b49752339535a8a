// `adfw table`: paper-style tables from a sweep (file or folder) or any folder of run folders.
#include <iostream>
#include <sstream>

#include <boost/program_options.hpp>

#include "adfw/core/command.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/io.hpp"
#include "adfw/engine/table.hpp"
#include "cli_args.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace adfw {
namespace {

std::vector<std::string> split_list(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const auto& item : items) {
    std::stringstream ss(item);
    for (std::string s; std::getline(ss, s, ',');) {
      while (!s.empty() && s.front() == ' ') s.erase(s.begin());
      while (!s.empty() && s.back() == ' ') s.pop_back();
      if (!s.empty()) out.push_back(s);
    }
  }
  return out;
}

int table_cmd(const std::vector<std::string>& args) {
  std::string input, rows, cols, format, out, caption, output;
  std::vector<std::string> metrics, where;
  bool raw = false, no_reference = false;
  int digits = -1;
  po::options_description d("options");
  d.add_options()("input", po::value(&input), "sweep file, sweep folder or folder of run folders")(
      "rows", po::value(&rows), "key of the rows: a config key, a protocol.<field> of the runs' metrics.json (e.g. "
      "protocol.n_pixel_labelled), or several joined by ',' (default: the sweep's [table].rows, else data.category)")(
      "cols", po::value(&cols), "key of the columns, as --rows, e.g. method.coreset.ratio (default: none)")(
      "metrics", po::value(&metrics)->composing(), "comma-separated metrics (default image_auroc); dotted paths "
                                                   "into metrics.json work too, e.g. timing.fit_seconds")(
      "where", po::value(&where)->composing(), "only runs with key=value (repeatable; typed like --set)")(
      "format,f", po::value(&format), "md (default), csv, latex or json")(
      "out", po::value(&out), "write to this file instead of stdout")(
      "raw", po::bool_switch(&raw), "values as stored (fractions), not percentages")(
      "digits", po::value(&digits), "decimals (default 1 for percentages, 3 otherwise)")(
      "no-reference", po::bool_switch(&no_reference), "leave out the [reference] columns")(
      "caption", po::value(&caption), "table caption (default: the `reproduces` declaration)")(
      "output", po::value(&output), "folder of sweep folders, for a sweep file (as given to adfw sweep --output)");
  po::positional_options_description pos;
  pos.add("input", 1);
  const std::string usage =
      "adfw table <sweep.toml | sweep folder | runs folder> [--rows key] [--cols key] [--metrics a,b] "
      "[--format md|csv|latex|json] [--out file]";
  const po::variables_map vm = cli::parse_command(args, d, pos, usage);
  if (vm.count("help")) return 0;
  if (input.empty()) throw ConfigError("missing sweep file or runs folder\nusage: " + usage);
  if (format.empty() && !out.empty()) {
    const std::string ext = fs::path(out).extension().string();
    format = ext == ".csv" ? "csv" : ext == ".tex" ? "latex" : ext == ".json" ? "json" : "md";
  }
  if (format.empty()) format = "md";
  if (format != "md" && format != "markdown" && format != "csv" && format != "latex" && format != "tex" && format != "json")
    throw ConfigError("--format: expected md, csv, latex or json, got '" + format + "'");
  if (digits > 12) throw ConfigError("--digits: at most 12");

  const table::RunSet set = table::load_runs(input, output);
  table::TableOptions o;
  o.rows = !rows.empty() ? rows : !set.defaults.rows.empty() ? set.defaults.rows : "data.category";
  o.cols = vm.count("cols") ? cols : set.defaults.cols;
  o.metrics = split_list(metrics);
  if (o.metrics.empty()) o.metrics = set.defaults.metrics.empty() ? std::vector<std::string>{"image_auroc"} : set.defaults.metrics;
  o.where = where.empty() ? set.defaults.where : where;
  o.percent = !raw;
  o.digits = digits;
  o.reference = !no_reference && set.defaults.reference;
  o.caption = caption;
  const table::Table t = table::build_table(set, o);
  const std::string text = table::render(t, o, format);
  const bool embeds_caption = format == "md" || format == "markdown" || format == "latex" || format == "tex" || format == "json";
  if (out.empty()) {
    // CSV has no place for a caption: it goes to stderr so the data stays clean.
    if (!embeds_caption && !t.caption.empty()) std::cerr << t.caption << std::endl;
    std::cout << text;
  } else {
    write_file_atomic(out, text);
    if (!t.caption.empty()) std::cout << t.caption << "\n";
    std::cout << "wrote " << out << " (" << t.rows.size() << " rows, " << t.runs_used << " runs"
              << (t.runs_missing ? ", " + std::to_string(t.runs_missing) + " not done" : "") << ")" << std::endl;
  }
  return 0;
}

}  // namespace

ADFW_COMMAND("table", "paper-style tables (mean ± std over seeds, reference, LaTeX/Markdown/CSV/JSON) from runs",
             table_cmd);

}  // namespace adfw
