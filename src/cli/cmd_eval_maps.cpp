// adfw eval-maps: metrics of anomaly maps produced elsewhere, printed as JSON.
#include <iostream>

#include <boost/program_options.hpp>

#include "adfw/core/command.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/metric/eval_maps.hpp"
#include "cli_args.hpp"

namespace po = boost::program_options;

namespace {

int eval_maps_command(const std::vector<std::string>& args) {
  adfw::metric::EvalMapsOptions o;
  std::string input, masks, metrics;
  const std::string usage = "adfw eval-maps <maps.safetensors | maps folder> [--masks folder] [options]";
  po::options_description desc("options");
  desc.add_options()(
      "masks", po::value(&masks), "folder of ground-truth masks (with a folder of maps; same relative paths, "
                                  "optionally with a _mask suffix; no mask = defect-free)")(
      "fpr-limit", po::value(&o.fpr_limit)->default_value(0.3), "FPR integration limit of aupro, in (0, 1]")(
      "metrics", po::value(&metrics),
      "comma-separated metric names (default: image_auroc,image_ap,image_f1_max,pixel_auroc,pixel_ap,"
      "pixel_f1_max,aupro)")("threads", po::value(&o.threads)->default_value(0), "worker threads (0 = all cores)");
  po::options_description hidden;
  hidden.add_options()("input", po::value(&input));
  po::positional_options_description pos;
  pos.add("input", 1);
  const po::variables_map vm = adfw::cli::parse_command(
      args, desc, pos, usage, hidden, "Evaluates anomaly maps against ground truth and prints the metrics as JSON.");
  if (vm.count("help")) return 0;
  if (input.empty()) throw adfw::ConfigError("eval-maps: give a safetensors file or a folder of maps (see --help)");
  if (!(o.fpr_limit > 0 && o.fpr_limit <= 1))
    throw adfw::ConfigError("eval-maps: --fpr-limit " + std::to_string(o.fpr_limit) + " must be in (0, 1]");
  o.input = input;
  o.masks = masks;
  if (!metrics.empty()) {
    o.metrics.clear();
    std::size_t start = 0;
    while (start <= metrics.size()) {
      const std::size_t comma = std::min(metrics.find(',', start), metrics.size());
      const std::string name = metrics.substr(start, comma - start);
      if (!name.empty()) o.metrics.push_back(name);
      start = comma + 1;
    }
  }
  std::cout << adfw::metric::eval_maps(o).dump(2) << std::endl;
  return 0;
}

}  // namespace

ADFW_COMMAND("eval-maps", "evaluate anomaly maps produced elsewhere (safetensors or folder) and print JSON",
             eval_maps_command);
