// What `adfw data check` and `adfw data convert` do, callable from C++.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <toml++/toml.h>

#include "adfw/data/dataset.hpp"

namespace adfw {

struct DataCheckOptions {
  bool decode = true;             ///< decode every image and mask (sizes, empty masks, unreadable files)
  bool require_test_masks = true; ///< an anomalous test image without a mask is a problem
  int threads = 2;                ///< decoding threads
  int max_listed = 10;            ///< problems listed one by one; the rest are counted
};

struct DataCheckReport {
  std::string text;                   ///< the human-readable summary (what the command prints)
  std::vector<std::string> problems;  ///< every problem found, each naming its file
  bool ok() const { return problems.empty(); }
};

/// Lists every split of `d`, counts per split and defect type, and (when decoding) checks image
/// sizes, unreadable files, empty masks and masks whose size differs from their image's.
DataCheckReport check_dataset(const Dataset& d, const DataCheckOptions& o = {});

/// The data set of an experiment file: the table `dataset` or `data.dataset` (with its `type`),
/// built through the dataset registry (plugins must be loaded). Throws ConfigError naming the
/// file when there is none.
std::unique_ptr<Dataset> dataset_from_config(const toml::table& config, const std::string& file);

/// A TOML experiment file (.toml) through dataset_from_config, else a data set folder or .csv
/// manifest through open_dataset (`format` = "" detects it). Folders in the MVTec layout are
/// opened with require_masks = false so that missing masks are reported rather than thrown.
std::unique_ptr<Dataset> open_for_tools(const std::filesystem::path& arg, const std::string& format = "");

/// Writes every sample of `d` as a manifest CSV at `out`; returns the number of rows.
std::size_t convert_to_manifest(const Dataset& d, const std::filesystem::path& out);

}  // namespace adfw
