// `adfw run` and `adfw config`: execute or inspect an experiment file.
#include <iostream>

#include <boost/program_options.hpp>

#include "adfw/core/command.hpp"
#include "adfw/core/config.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/log.hpp"
#include "adfw/engine/experiment.hpp"
#include "adfw/engine/run_folder.hpp"
#include "cli_args.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace adfw {
namespace {

struct ConfigArgs {
  std::string file;
  std::vector<std::string> sets, presets;
};

void add_config_options(po::options_description& d, ConfigArgs& a) {
  d.add_options()("experiment", po::value(&a.file), "experiment TOML file (or a run folder with --resume)")(
      "set,s", po::value(&a.sets)->composing(), "override a value: --set data.category=bottle (repeatable; typed)")(
      "preset,p", po::value(&a.presets)->composing(), "merge a preset on top, e.g. --preset presets/smoke (repeatable)");
}

po::variables_map parse_args(const std::vector<std::string>& args, po::options_description& d, const std::string& usage) {
  po::positional_options_description pos;
  pos.add("experiment", 1);
  return cli::parse_command(args, d, pos, usage);
}

int run_cmd(const std::vector<std::string>& args) {
  ConfigArgs a;
  RunRequest req;
  po::options_description d("options");
  add_config_options(d, a);
  d.add_options()("run-id", po::value(&req.run_id), "name of the run folder (default: a time stamp)")(
      "resume", po::bool_switch(&req.resume), "continue an interrupted run in its folder (give the run folder or --run-id)")(
      "trace", po::bool_switch(&req.trace),
      "write <run>/trace.json: every stage (loading, synthesis, waits for batches, training steps, backbone, "
      "search, ...) per thread on a timeline; open it in https://ui.perfetto.dev or chrome://tracing")(
      "threads", po::value(&req.threads), "threads (overrides the experiment's `threads`)")(
      "output", po::value(&req.output), "folder of run folders (overrides the experiment's `output`)");
  const std::string usage = "adfw run <experiment.toml> [--set key=value]... [--preset name]... [--run-id id] [--resume] [--trace]";
  auto vm = parse_args(args, d, usage);
  if (vm.count("help")) return 0;
  if (a.file.empty()) throw ConfigError("missing experiment file\nusage: " + usage);
  fs::path file = a.file;
  if (fs::is_directory(file)) {
    // A run folder: rerun (or with --resume continue) exactly what it recorded.
    if (!fs::exists(file / "config.toml")) throw ConfigError(file.string() + " is a folder without config.toml");
    if (req.resume) {
      const fs::path canon = fs::weakly_canonical(file);
      req.run_id = canon.filename().string();
      if (req.output.empty()) req.output = canon.parent_path().parent_path().string();
    }
    file = file / "config.toml";
  }
  LoadedConfig cfg = load_config(file, a.presets, a.sets);
  nlohmann::json m = run_experiment(cfg, req);
  // The headline numbers on stdout, the rest is in the run folder.
  nlohmann::json brief = nlohmann::json::object();
  if (m.contains("metrics")) brief = m["metrics"];
  brief["run_folder"] = m.value("run_folder", "");
  std::cout << brief.dump(2) << std::endl;
  return 0;
}

int config_cmd(const std::vector<std::string>& args) {
  ConfigArgs a;
  po::options_description d("options");
  add_config_options(d, a);
  const std::string usage = "adfw config <experiment.toml> [--set key=value]... [--preset name]...";
  auto vm = parse_args(args, d, usage);
  if (vm.count("help")) return 0;
  if (a.file.empty()) throw ConfigError("missing experiment file\nusage: " + usage);
  LoadedConfig cfg = load_config(a.file, a.presets, a.sets);
  ExperimentOptions e = read_experiment(cfg);
  std::cout << "# " << a.file << " resolved (validated; every default filled in)\n" << to_toml_string(write_options(e));
  return 0;
}

}  // namespace

ADFW_COMMAND("run", "run an experiment file end to end into a run folder", run_cmd);
ADFW_COMMAND("config", "validate an experiment and print it fully resolved", config_cmd);

}  // namespace adfw
