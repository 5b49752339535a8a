// adfw report: (re)writes report.html for a run folder, or a sweep's report for a sweep file,
// sweep folder or folder of run folders.
#include <iostream>
#include <sstream>

#include <boost/program_options.hpp>

#include "adfw/core/command.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/io.hpp"
#include "adfw/engine/report.hpp"
#include "adfw/engine/sweep.hpp"
#include "adfw/engine/table.hpp"
#include "cli_args.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace adfw {
namespace {

int report_cmd(const std::vector<std::string>& args) {
  std::string input, out, rows, cols, metrics, output;
  const std::string usage = "adfw report <run folder | sweep.toml | sweep folder | folder of runs> [options]";
  po::options_description d("options");
  d.add_options()("out,o", po::value(&out),
                                              "write the page here instead (default: report.html in the folder)")(
      "rows", po::value(&rows),
      "sweeps: config key of the rows (default: the sweep's [table].rows, else data.category)")(
      "cols", po::value(&cols), "sweeps: config key of the columns (default: the sweep's [table].cols)")(
      "metrics", po::value(&metrics),
      "sweeps: comma-separated metrics (default: the sweep's [table].metrics, else image_auroc,pixel_auroc,aupro)")(
      "output", po::value(&output),
      "sweeps: folder of sweep folders, for a sweep file (as given to adfw sweep --output)");
  po::options_description hidden;
  hidden.add_options()("input", po::value(&input));
  po::positional_options_description pos;
  pos.add("input", 1);
  const po::variables_map vm = cli::parse_command(
      args, d, pos, usage, hidden,
      "Writes a self-contained report.html (opens offline): for a run folder its metrics, curves, per-defect-type\n"
      "results, training curves and gallery (into the run folder); for a sweep the paper table and per-row bars\n"
      "with the spread over seeds (into the sweep folder).");
  if (vm.count("help")) return 0;
  if (input.empty()) throw ConfigError("report: give a run folder, a sweep file or a sweep folder (see --help)");
  if (!fs::exists(input)) throw ConfigError("report: '" + input + "' does not exist");

  if (fs::is_directory(input) && fs::exists(fs::path(input) / "metrics.json")) {
    const fs::path file = out.empty() ? fs::path(input) / "report.html" : fs::path(out);
    write_file_atomic(file, report::run_report_html(input));
    std::cout << "wrote " << file.string() << std::endl;
    return 0;
  }

  const table::RunSet set = table::load_runs(input, output);
  if (set.runs.empty())
    throw Error("report: '" + input +
                "' is neither a run folder (it has no metrics.json) nor a sweep file or a folder "
                "of run folders (no runs found in it)");
  table::TableOptions o;
  o.rows = !rows.empty() ? rows : !set.defaults.rows.empty() ? set.defaults.rows : "data.category";
  o.cols = vm.count("cols") ? cols : set.defaults.cols;
  std::stringstream ms(metrics);
  for (std::string m; std::getline(ms, m, ',');)
    if (!m.empty()) o.metrics.push_back(m);
  if (metrics.empty())
    o.metrics = !set.defaults.metrics.empty() ? set.defaults.metrics
                                              : std::vector<std::string>{"image_auroc", "pixel_auroc", "aupro"};
  o.where = set.defaults.where;
  o.reference = set.defaults.reference;
  // The page goes into the sweep's folder (for a sweep file, where `adfw sweep` put its runs).
  fs::path folder = input;
  if (!fs::is_directory(input)) folder = sweep::read_sweep(input, output).folder();
  const fs::path file = out.empty() ? folder / "report.html" : fs::path(out);
  write_file_atomic(file,
                    report::sweep_report_html(set, o, file.parent_path().empty() ? fs::path(".") : file.parent_path()));
  std::cout << "wrote " << file.string() << " (" << set.runs.size() << " runs)" << std::endl;
  return 0;
}

}  // namespace

ADFW_COMMAND("report", "self-contained report.html of a run folder or a sweep (metrics, curves, gallery, tables)",
             report_cmd);

}  // namespace adfw
