// adfw data check / adfw data convert / adfw data split
#include <filesystem>
#include <iostream>

#include <boost/program_options.hpp>

#include "adfw/core/command.hpp"
#include "adfw/core/error.hpp"
#include "adfw/data/check.hpp"
#include "adfw/data/dataset.hpp"
#include "cli_args.hpp"

namespace po = boost::program_options;

namespace {

/// A data set for writing a manifest, listed with the normal (strict) readers so that a half-listed
/// data set is never written; an experiment file opens its [data] table.
std::unique_ptr<adfw::Dataset> open_strict(const std::string& in, const std::string& format) {
  return std::filesystem::path(in).extension() == ".toml" ? adfw::open_for_tools(in) : adfw::open_dataset(in, format);
}

int data_check(const std::vector<std::string>& args) {
  const std::string usage = "adfw data check <experiment.toml | data set folder | manifest.csv> [options]";
  po::options_description opts("options");
  opts.add_options()("input", po::value<std::string>(), "config or data set root")(
      "format", po::value<std::string>()->default_value(""),
      "layout of a folder: mvtec, visa, ksdd2, manifest (default: detected)")(
      "no-decode", "only list files; do not decode images and masks")(
      "allow-missing-masks", "an anomalous test image without a mask is not a problem")(
      "threads", po::value<int>()->default_value(2), "decoding threads");
  po::positional_options_description pos;
  pos.add("input", 1);
  const auto vm = adfw::cli::parse_command(
      args, opts, pos, usage, {},
      "Prints what was found (counts per split and defect type, image sizes, masks missing, empty or\n"
      "of the wrong size) and exits with status 1 when there are problems.");
  if (vm.count("help")) return 0;
  if (!vm.count("input")) throw adfw::ConfigError("missing the experiment file or data set folder\nusage: " + usage);
  const auto dataset = adfw::open_for_tools(vm["input"].as<std::string>(), vm["format"].as<std::string>());
  adfw::DataCheckOptions o;
  o.decode = !vm.count("no-decode");
  o.require_test_masks = !vm.count("allow-missing-masks");
  o.threads = vm["threads"].as<int>();
  const auto report = adfw::check_dataset(*dataset, o);
  std::cout << report.text;
  return report.ok() ? 0 : 1;
}

int data_convert(const std::vector<std::string>& args) {
  const std::string usage =
      "adfw data convert <experiment.toml | data set folder> [--format mvtec|visa|ksdd2] --out manifest.csv";
  po::options_description opts("options");
  opts.add_options()("input", po::value<std::string>(), "config or data set root")(
      "format", po::value<std::string>()->default_value(""),
      "layout of the folder: mvtec, visa, ksdd2, manifest (default: detected)")(
      "out,o", po::value<std::string>(), "manifest CSV to write");
  po::positional_options_description pos;
  pos.add("input", 1);
  const auto vm = adfw::cli::parse_command(
      args, opts, pos, usage, {},
      "Writes a manifest (path,label,split,mask,defect_type,supervision,category) listing every split.");
  if (vm.count("help")) return 0;
  if (!vm.count("input")) throw adfw::ConfigError("missing the experiment file or data set folder\nusage: " + usage);
  if (!vm.count("out")) throw adfw::ConfigError("missing --out manifest.csv\nusage: " + usage);
  const std::string in = vm["input"].as<std::string>();
  const std::string format = vm["format"].as<std::string>();
  const auto dataset = open_strict(in, format);
  const std::size_t n = adfw::convert_to_manifest(*dataset, vm["out"].as<std::string>());
  std::cout << "wrote " << n << " rows to " << vm["out"].as<std::string>() << " (" << dataset->describe() << ")\n";
  return 0;
}

int data_split(const std::vector<std::string>& args) {
  const std::string usage =
      "adfw data split <data set folder | manifest.csv | experiment.toml> --anomalous-train 0.5 "
      "--pixel-labelled N --image-labelled M --seed S --out split.csv";
  po::options_description opts("options");
  opts.add_options()("input", po::value<std::string>(), "config or data set root")(
      "format", po::value<std::string>()->default_value(""),
      "layout of a folder: mvtec, visa, ksdd2, manifest (default: detected)")(
      "anomalous-train", po::value<double>()->default_value(0.5),
      "fraction of each defect type's anomalous test images moved into training")(
      "pixel-labelled", po::value<int>()->default_value(-1), "moved images that keep their masks (-1 = all)")(
      "image-labelled", po::value<int>()->default_value(-1),
      "further moved images that keep only the label (-1 = all the rest; the others are dropped)")(
      "seed", po::value<uint64_t>()->default_value(0), "seed of the choice")(
      "out,o", po::value<std::string>(), "manifest CSV to write");
  po::positional_options_description pos;
  pos.add("input", 1);
  const auto vm = adfw::cli::parse_command(
      args, opts, pos, usage, {},
      "Writes a manifest with a supervised split: a seeded fraction of every defect type's anomalous\n"
      "test images moves into training; the first N of them (round-robin over the types) keep their\n"
      "masks, the next M only their labels. The test set keeps the rest and is the same for every N\n"
      "of one seed and fraction. A '# protocol: ...' line before the header records what was done;\n"
      "runs on the manifest carry it into metrics.json and their logs.");
  if (vm.count("help")) return 0;
  if (!vm.count("input")) throw adfw::ConfigError("missing the data set folder\nusage: " + usage);
  if (!vm.count("out")) throw adfw::ConfigError("missing --out split.csv\nusage: " + usage);
  const std::string in = vm["input"].as<std::string>();
  const auto dataset = open_strict(in, vm["format"].as<std::string>());
  adfw::SupervisedSplitOptions o;
  o.anomalous_train = vm["anomalous-train"].as<double>();
  o.pixel_labelled = vm["pixel-labelled"].as<int>();
  o.image_labelled = vm["image-labelled"].as<int>();
  o.seed = vm["seed"].as<uint64_t>();
  const adfw::SupervisedSplit split = adfw::make_supervised_split(adfw::all_samples(*dataset), o);
  const std::string out = vm["out"].as<std::string>();
  adfw::write_manifest(out, split.samples, {split.protocol});
  std::cout << "wrote " << split.samples.size() << " rows to " << out << " (" << dataset->describe() << ")\n"
            << split.protocol << "\n";
  return 0;
}

}  // namespace

ADFW_COMMAND("data split", "make a supervised split: anomalous images into training, masks kept for N of them",
             data_split);
ADFW_COMMAND("data check", "check a data set: counts, sizes, missing/empty/mismatched masks", data_check);
ADFW_COMMAND("data convert", "write a CSV manifest from any supported data set layout", data_convert);
