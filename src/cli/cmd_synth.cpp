// adfw synth preview: a contact sheet of (input, augmented, mask) triplets for a synthesizer.
#include <iostream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <toml++/toml.h>

#include "adfw/core/command.hpp"
#include "adfw/core/config.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/data/check.hpp"
#include "adfw/data/dataset.hpp"
#include "adfw/synth/preview.hpp"
#include "adfw/synth/synthesizer.hpp"
#include "cli_args.hpp"

namespace po = boost::program_options;

namespace {

int synth_preview(const std::vector<std::string>& args) {
  const std::string usage =
      "adfw synth preview [experiment.toml] --out grid.png [--images DIR] [--synth NAME] [--set key=value]...";
  po::options_description desc("options");
  std::string experiment, out, images, synth_name;
  std::vector<std::string> sets;
  adfw::PreviewOptions p;
  desc.add_options()(
      "experiment", po::value(&experiment), "experiment file; its [method.synthesizer] table is used")(
      "out,o", po::value(&out), "output PNG (written atomically)")(
      "images", po::value(&images),
      "folder of normal images to augment (default: the experiment's normal training images)")(
      "synth", po::value(&synth_name), "synthesizer name (overrides the experiment's type)")(
      "set", po::value(&sets)->composing(),
      "synthesizer option key=value, relative to the synthesizer table (e.g. perlin.threshold=0.2)")(
      "n", po::value(&p.n)->default_value(16), "number of samples")(
      "size", po::value(&p.size)->default_value(256), "image side in pixels")(
      "per-row", po::value(&p.per_row)->default_value(4), "samples per grid row")(
      "seed", po::value(&p.seed)->default_value(0), "random seed")(
      "only-anomalous", po::bool_switch(&p.only_anomalous), "redraw samples that got no anomaly");
  po::positional_options_description pos;
  pos.add("experiment", 1);
  const po::variables_map vm = adfw::cli::parse_command(args, desc, pos, usage);
  if (vm.count("help")) return 0;
  if (out.empty()) throw adfw::ConfigError("synth preview: --out is required");
  if (p.n <= 0 || p.size < 8) throw adfw::ConfigError("synth preview: --n must be positive and --size >= 8");

  toml::table options;
  if (!experiment.empty()) {
    const adfw::LoadedConfig cfg = adfw::load_config(experiment);
    const toml::table* st = cfg.table["method"]["synthesizer"].as_table();
    if (!st) throw adfw::ConfigError(experiment + ": no [method.synthesizer] table (or pass --synth NAME)");
    options = *st;
    if (synth_name.empty()) {
      if (auto t = options["type"].value<std::string>()) synth_name = *t;
    }
  }
  if (!synth_name.empty() && options["type"].value<std::string>().value_or(synth_name) != synth_name)
    options = toml::table{};  // --synth picked another component: the file's options do not apply
  options.erase("type");
  for (const auto& s : sets) adfw::apply_override(options, s);
  if (synth_name.empty()) throw adfw::ConfigError("synth preview: give --synth NAME or an experiment file");

  std::vector<std::string> files;
  if (!images.empty()) {
    files = adfw::list_images(images);
  } else if (!experiment.empty()) {
    // The experiment's training split, normal images only.
    const auto dataset = adfw::open_for_tools(experiment);
    for (const auto& info : dataset->samples(adfw::Split::train))
      if (info.label == 0) files.push_back(info.path);
    if (files.empty()) throw adfw::ConfigError(experiment + ": the data set has no normal training images");
  } else {
    throw adfw::ConfigError("synth preview: --images DIR is required without an experiment file");
  }

  auto synth = adfw::Registry<adfw::Synthesizer>::instance().make(synth_name, options, "method.synthesizer");
  const cv::Mat grid = adfw::synth_preview_grid(*synth, files, p);
  adfw::write_image_atomic(out, grid);
  std::cout << "wrote " << out << " (" << grid.cols << "x" << grid.rows << ", " << p.n << " samples of '"
            << synth_name << "')\n";
  return 0;
}

}  // namespace

ADFW_COMMAND("synth preview", "grid of (input, augmented, mask) samples of a synthesizer", synth_preview);
