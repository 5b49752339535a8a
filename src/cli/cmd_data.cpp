// adfw data check / adfw data convert
#include <iostream>

#include <boost/program_options.hpp>

#include "adfw/core/command.hpp"
#include "adfw/core/error.hpp"
#include "adfw/data/check.hpp"

namespace po = boost::program_options;

namespace {

po::variables_map parse(const std::vector<std::string>& args, const po::options_description& opts,
                        const po::positional_options_description& pos, const std::string& usage) {
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(opts).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw adfw::ConfigError(std::string(e.what()) + "\nusage: " + usage);
  }
  return vm;
}

int data_check(const std::vector<std::string>& args) {
  const std::string usage = "adfw data check <experiment.toml | data set folder | manifest.csv> [options]";
  po::options_description opts("options");
  opts.add_options()("help,h", "show this help")("input", po::value<std::string>(), "config or data set root")(
      "format", po::value<std::string>()->default_value(""),
      "layout of a folder: mvtec, visa, ksdd2, manifest (default: detected)")(
      "no-decode", "only list files; do not decode images and masks")(
      "allow-missing-masks", "an anomalous test image without a mask is not a problem")(
      "threads", po::value<int>()->default_value(2), "decoding threads");
  po::positional_options_description pos;
  pos.add("input", 1);
  const auto vm = parse(args, opts, pos, usage);
  if (vm.count("help")) {
    std::cout << "usage: " << usage << "\n\n"
              << "Prints what was found (counts per split and defect type, image sizes, masks missing, empty or\n"
              << "of the wrong size) and exits with status 1 when there are problems.\n\n"
              << opts;
    return 0;
  }
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
  opts.add_options()("help,h", "show this help")("input", po::value<std::string>(), "config or data set root")(
      "format", po::value<std::string>()->default_value(""),
      "layout of the folder: mvtec, visa, ksdd2, manifest (default: detected)")(
      "out,o", po::value<std::string>(), "manifest CSV to write");
  po::positional_options_description pos;
  pos.add("input", 1);
  const auto vm = parse(args, opts, pos, usage);
  if (vm.count("help")) {
    std::cout << "usage: " << usage << "\n\nWrites a manifest (path,label,split,mask,defect_type,supervision,"
              << "category) listing every split.\n\n"
              << opts;
    return 0;
  }
  if (!vm.count("input")) throw adfw::ConfigError("missing the experiment file or data set folder\nusage: " + usage);
  if (!vm.count("out")) throw adfw::ConfigError("missing --out manifest.csv\nusage: " + usage);
  const std::string in = vm["input"].as<std::string>();
  const std::string format = vm["format"].as<std::string>();
  // conversion lists with the normal (strict) readers: a half-listed data set is never written
  const auto dataset = std::filesystem::path(in).extension() == ".toml" ? adfw::open_for_tools(in)
                                                                        : adfw::open_dataset(in, format);
  const std::size_t n = adfw::convert_to_manifest(*dataset, vm["out"].as<std::string>());
  std::cout << "wrote " << n << " rows to " << vm["out"].as<std::string>() << " (" << dataset->describe() << ")\n";
  return 0;
}

}  // namespace

ADFW_COMMAND("data check", "check a data set: counts, sizes, missing/empty/mismatched masks", data_check);
ADFW_COMMAND("data convert", "write a CSV manifest from any supported data set layout", data_convert);
