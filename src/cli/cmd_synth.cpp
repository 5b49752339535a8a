// adfw synth preview: a contact sheet of (input, augmented, mask) triplets for a synthesizer.
#include <iostream>
#include <string>
#include <vector>

#include <boost/program_options.hpp>
#include <toml++/toml.h>

#include "adfw/core/command.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/synth/preview.hpp"
#include "adfw/synth/synthesizer.hpp"

namespace po = boost::program_options;

namespace {

// "a.b.c=value" -> t[a][b][c] = value; the value is read as TOML (numbers, bools, arrays,
// quoted strings) and otherwise taken as a bare string.
void apply_set(toml::table& t, const std::string& kv) {
  const auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0)
    throw adfw::ConfigError("--set " + kv + ": expected key=value (e.g. --set perlin.threshold=0.2)");
  const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    parsed.insert_or_assign("v", value);
  }
  toml::table* cur = &t;
  std::size_t start = 0;
  while (true) {
    const auto dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.empty()) throw adfw::ConfigError("--set " + kv + ": empty key part");
    if (dot == std::string::npos) {
      cur->insert_or_assign(part, *parsed.get("v"));
      break;
    }
    if (!cur->contains(part)) cur->insert_or_assign(part, toml::table{});
    cur = cur->get(part)->as_table();
    if (!cur) throw adfw::ConfigError("--set " + kv + ": '" + part + "' is not a table");
    start = dot + 1;
  }
}

int synth_preview(const std::vector<std::string>& args) {
  po::options_description desc(
      "usage: adfw synth preview [experiment.toml] --out grid.png [--images DIR] [--synth NAME] "
      "[--set key=value]...\n\noptions");
  std::string experiment, out, images, synth_name;
  std::vector<std::string> sets;
  adfw::PreviewOptions p;
  desc.add_options()("help,h", "show this help")(
      "experiment", po::value(&experiment), "experiment file; its [method.synthesizer] table is used")(
      "out,o", po::value(&out), "output PNG (written atomically)")(
      "images", po::value(&images), "folder of normal images to augment (searched recursively)")(
      "synth", po::value(&synth_name), "synthesizer name (overrides the experiment's type)")(
      "set", po::value(&sets)->composing(), "synthesizer option key=value (dotted keys for nested tables)")(
      "n", po::value(&p.n)->default_value(16), "number of samples")(
      "size", po::value(&p.size)->default_value(256), "image side in pixels")(
      "per-row", po::value(&p.per_row)->default_value(4), "samples per grid row")(
      "seed", po::value(&p.seed)->default_value(0), "random seed")(
      "only-anomalous", po::bool_switch(&p.only_anomalous), "redraw samples that got no anomaly");
  po::positional_options_description pos;
  pos.add("experiment", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(desc).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw adfw::ConfigError(std::string("synth preview: ") + e.what());
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  if (out.empty()) throw adfw::ConfigError("synth preview: --out is required");
  if (p.n <= 0 || p.size < 8) throw adfw::ConfigError("synth preview: --n must be positive and --size >= 8");

  toml::table options;
  std::string source = "--set";
  if (!experiment.empty()) {
    toml::table file;
    try {
      file = toml::parse_file(experiment);
    } catch (const toml::parse_error& e) {
      throw adfw::ConfigError(experiment + ": " + std::string(e.description()));
    }
    const toml::table* st = file["method"]["synthesizer"].as_table();
    if (!st)
      throw adfw::ConfigError(experiment + ": no [method.synthesizer] table (or pass --synth NAME)");
    options = *st;
    if (synth_name.empty()) {
      if (auto t = options["type"].value<std::string>()) synth_name = *t;
    }
    options.erase("type");
    source = experiment;
  }
  for (const auto& s : sets) apply_set(options, s);
  if (synth_name.empty()) throw adfw::ConfigError("synth preview: give --synth NAME or an experiment file");
  if (images.empty())
    throw adfw::ConfigError("synth preview: --images DIR is required (normal images to augment)");

  auto synth = adfw::Registry<adfw::Synthesizer>::instance().make(synth_name, options, "method.synthesizer");
  const cv::Mat grid = adfw::synth_preview_grid(*synth, adfw::list_images(images), p);
  adfw::write_image_atomic(out, grid);
  std::cout << "wrote " << out << " (" << grid.cols << "x" << grid.rows << ", " << p.n << " samples of '"
            << synth_name << "')\n";
  return 0;
}

}  // namespace

ADFW_COMMAND("synth preview", "grid of (input, augmented, mask) samples of a synthesizer", synth_preview);
