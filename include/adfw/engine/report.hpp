// report.html: one self-contained page per run folder, and one per sweep. Everything the page
// shows is read from files the run (or the sweep's runs) wrote, so `adfw report` regenerates a
// report at any time; the page inlines its data, its images (data: URIs) and Chart.js
// (third_party/chartjs), and opens offline.
//
// Run report: the headline metrics (with the experiment's [reference] numbers for the run's
// category) and the protocol; image and pixel ROC and precision-recall curves and the PRO curve
// (curves.json); per-defect-type results (metrics.json, per_image.csv); training loss terms and
// learning rate per step (train_log*.csv); the gallery (gallery/index.json + its overlays).
// Sweep report: the paper table (table.hpp) and, per metric, per-row bars of the mean over seeds
// with ± std whiskers and every seed's value as a dot; links to the runs' own reports.
//
// The page marks <body data-charts-expected="N" data-charts-drawn="k">: k counts the charts that
// Chart.js has rendered, so a headless browser can check that every chart was drawn.
#pragma once

#include <filesystem>
#include <string>

#include "adfw/engine/table.hpp"

namespace adfw::report {

struct RunReportOptions {
  /// Training-log points per chart: longer logs are averaged over equal runs of steps (default 1000).
  int max_train_points = 1000;
};

/// The HTML of a run folder's report. Throws adfw::Error naming the file when metrics.json is
/// missing or a file it reads is malformed; missing optional files (curves.json, train_log.csv,
/// gallery/) leave their section out with a note saying why.
std::string run_report_html(const std::filesystem::path& run_dir, const RunReportOptions& options = {});

/// Writes <run_dir>/report.html atomically and returns its path.
std::filesystem::path write_run_report(const std::filesystem::path& run_dir, const RunReportOptions& options = {});

/// The HTML of a sweep's (or a folder of runs') report: `options` as for `adfw table`. Links to
/// the runs' reports are relative to `report_dir`, the folder the page will be written into.
std::string sweep_report_html(const table::RunSet& runs, const table::TableOptions& options,
                              const std::filesystem::path& report_dir);

}  // namespace adfw::report
