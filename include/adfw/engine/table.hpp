// Paper-style result tables from run folders: rows and columns are config keys (read from each
// run's resolved config.toml), cells are mean ± sample std over the runs that share a row and a
// column (seeds), with a mean row, the best value per row in bold, the experiment's [reference]
// numbers beside ours and the difference. Rendered as Markdown, CSV, LaTeX (booktabs) or JSON.
//
// [reference] convention (experiment files; copied into metrics.json), values as fractions like
// metrics.json:
//   [reference]
//   source = "Roth et al. 2022, Table 1"        # shown under the table
//   [reference.mean]                             # the benchmark mean (our "Mean" row)
//   image_auroc = 0.991
//   [reference.categories.bottle]                # one row, looked up by the row's label
//   image_auroc = 1.0
//   [reference.reproduces]                       # optional caption, as a sweep's `reproduces`
//   paper = "Roth et al., CVPR 2022"; table = "Table 1"; rows = "PatchCore-10%"
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include "adfw/engine/run_folder.hpp"
#include "adfw/engine/sweep.hpp"

namespace adfw::table {

/// One run as the table sees it.
struct RunRecord {
  std::string id;
  std::filesystem::path dir;
  RunState state = RunState::missing;
  toml::table config;     ///< config.toml, or (for a run not started yet) its sweep axis values
  nlohmann::json metrics; ///< metrics.json of a done run; null otherwise
};

struct RunSet {
  std::vector<RunRecord> runs;
  std::vector<std::string> axis_keys;   ///< the sweep's varied keys (empty for a plain folder)
  sweep::TableDefaults defaults;        ///< the sweep file's [table]
  sweep::Reproduces reproduces;         ///< the sweep's `reproduces`
  std::string name;                     ///< sweep name, or the folder's name
};

/// Runs of a sweep file, a sweep folder (its sweep.json lists the expected runs, so runs not
/// finished yet show as missing cells) or any folder holding run folders (searched recursively;
/// dot-folders such as .attempts are skipped).
/// `output` replaces a sweep file's `output` (as `adfw sweep --output` does).
RunSet load_runs(const std::filesystem::path& input, const std::filesystem::path& output = {});

struct TableOptions {
  std::string rows = "data.category";
  std::string cols;                              ///< "" = one column per metric
  std::vector<std::string> metrics = {"image_auroc"};
  std::vector<std::string> where;                ///< key=value filters (values typed as TOML)
  bool percent = true;                           ///< metrics.json fractions shown as percentages
  int digits = -1;                               ///< decimals (-1: 1 for percentages, 3 otherwise)
  bool reference = true;                         ///< show reference columns when there are numbers
  std::string caption;                           ///< "" = from `reproduces`, else none
};

/// Values of one (row, column, metric).
struct Cell {
  std::vector<double> values;       ///< one per run, in run order
  std::vector<std::string> seeds;   ///< the runs' seeds (canonical text; "" when unknown)
  double mean = 0, std = 0;         ///< std: sample std (n - 1); 0 when n < 2
  int n = 0;                        ///< 0 = missing
  bool present() const { return n > 0; }
};

struct Row {
  std::string label;
  std::vector<std::vector<Cell>> cells;              ///< [metric][column]
  std::vector<std::optional<double>> reference;      ///< [metric]
  std::vector<std::vector<bool>> best;               ///< [metric][column]
};

struct Table {
  std::string rows_key, cols_key, caption, reference_source;
  std::vector<std::string> metrics;
  std::vector<bool> fraction;          ///< [metric] values are fractions (scaled when percent)
  std::vector<bool> higher_better;     ///< [metric]
  std::vector<std::string> columns;    ///< column labels ("" when there is no column axis)
  std::vector<Row> rows;
  std::optional<Row> mean;             ///< present when there are two or more rows
  std::vector<bool> show_reference;    ///< [metric]
  int common_n = 0;                    ///< the most frequent run count per cell
  std::vector<std::string> notes;
  int runs_used = 0, runs_missing = 0;
};

/// Groups the done runs into cells and computes means, stds, the mean row, bests and references.
/// The mean row's value is the mean of the row means (missing when any row is missing); its std
/// is over the per-seed means of the seeds every row has.
Table build_table(const RunSet& runs, const TableOptions& options);

/// "md" (Markdown), "csv", "latex" or "json".
std::string render(const Table& table, const TableOptions& options, const std::string& format);

/// Escapes LaTeX's special characters (& % $ # _ { } ~ ^ \) in text.
std::string latex_escape(const std::string& text);

/// Display text of a config value: strings bare, lists of strings joined by '+', everything else
/// as canonical TOML.
std::string value_label(const toml::node* node);

/// Whether a row or column label is a number (the whole label), and its value in `out`: numeric
/// rows are sorted by value and plotted against it.
bool parses_as_number(const std::string& label, double* out = nullptr);

}  // namespace adfw::table
