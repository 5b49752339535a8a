// `adfw sweep`: run every combination of a sweep file on local workers or as a Slurm job array;
// `adfw sweep status`: what is pending/queued/running/done/failed; `adfw sweep task`: one run
// of a sweep folder (what each Slurm array task executes).
#include <iomanip>
#include <map>
#include <iostream>

#include <boost/program_options.hpp>

#include "adfw/core/command.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/threads.hpp"
#include "adfw/engine/sweep.hpp"
#include "cli_args.hpp"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace adfw {
namespace {

std::string overrides_text(const sweep::SweepRun& r) {
  std::string s;
  for (const auto& a : r.axes) s += (s.empty() ? "" : " ") + a.str();
  return s.empty() ? "(the base experiment as is)" : s;
}

/// The words of `adfw sweep status`: a run not started is pending.
const char* state_word(RunState s) { return s == RunState::missing ? "pending" : to_string(s); }

int sweep_cmd(const std::vector<std::string>& args) {
  std::string file, backend = "local", output;
  bool dry_run = false, rerun_failed = false, no_submit = false;
  int workers = 0, threads = -1, threads_per_worker = 0;
  sweep::SlurmOptions cli_slurm;
  std::vector<std::string> sbatch_args;
  po::options_description d("options");
  d.add_options()("sweep", po::value(&file), "sweep file (TOML)")(
      "dry-run,n", po::bool_switch(&dry_run), "list the runs (id, state, overrides) and exit")(
      "backend", po::value(&backend), "local (worker processes here) or slurm (one job array)")(
      "workers,j", po::value(&workers), "parallel local runs (default: the file's `workers`, else 1)")(
      "threads", po::value(&threads), "threads of the whole local sweep, split over the workers (default all cores)")(
      "threads-per-worker", po::value(&threads_per_worker), "threads of each run (overrides the split)")(
      "rerun-failed", po::bool_switch(&rerun_failed), "run failed runs again (their old folders move to .attempts/)")(
      "output,o", po::value(&output), "folder of sweep folders (default: the file's `output`, else runs/sweeps)")(
      "partition", po::value(&cli_slurm.partition), "slurm: partition")("time", po::value(&cli_slurm.time),
                                                                          "slurm: time limit per run, e.g. 02:00:00")(
      "gpus", po::value(&cli_slurm.gpus), "slurm: GPUs per run (--gres=gpu:N; N or type:N)")(
      "cpus-per-task", po::value(&cli_slurm.cpus_per_task), "slurm: CPUs per run (also its threads)")(
      "mem", po::value(&cli_slurm.mem), "slurm: memory per run, e.g. 32G")("account", po::value(&cli_slurm.account),
                                                                           "slurm: account")(
      "qos", po::value(&cli_slurm.qos), "slurm: quality of service")(
      "max-parallel", po::value(&cli_slurm.max_parallel), "slurm: at most N array tasks at once")(
      "sbatch-arg", po::value(&sbatch_args)->composing(), "slurm: extra sbatch option, e.g. --sbatch-arg=--constraint=a100")(
      "no-submit", po::bool_switch(&no_submit), "slurm: write the script and manifest but do not call sbatch");
  po::positional_options_description pos;
  pos.add("sweep", 1);
  const std::string usage =
      "adfw sweep <sweep.toml> [--dry-run] [--workers N] [--threads N] [--rerun-failed] [--backend local|slurm]";
  auto vm = cli::parse_command(args, d, pos, usage);
  if (vm.count("help")) return 0;
  if (file.empty()) throw ConfigError("missing sweep file\nusage: " + usage);
  if (backend != "local" && backend != "slurm") throw ConfigError("--backend: expected local or slurm, got '" + backend + "'");

  sweep::SweepSpec spec = sweep::read_sweep(file, output);
  if (workers > 0) spec.workers = workers;
  sweep::SlurmOptions slurm = spec.slurm;
  if (!cli_slurm.partition.empty()) slurm.partition = cli_slurm.partition;
  if (!cli_slurm.time.empty()) slurm.time = cli_slurm.time;
  if (!cli_slurm.gpus.empty()) slurm.gpus = cli_slurm.gpus == "0" ? "" : cli_slurm.gpus;
  if (cli_slurm.cpus_per_task > 0) slurm.cpus_per_task = cli_slurm.cpus_per_task;
  if (!cli_slurm.mem.empty()) slurm.mem = cli_slurm.mem;
  if (!cli_slurm.account.empty()) slurm.account = cli_slurm.account;
  if (!cli_slurm.qos.empty()) slurm.qos = cli_slurm.qos;
  if (cli_slurm.max_parallel > 0) slurm.max_parallel = cli_slurm.max_parallel;
  for (const auto& a : sbatch_args) slurm.extra.push_back(a);

  sweep::LaunchOptions launch;
  launch.plugins = sweep::self_plugins();
  if (backend == "slurm") {
    if (!slurm.adfw.empty()) launch.adfw = slurm.adfw;
    launch.threads = slurm.cpus_per_task > 0 ? slurm.cpus_per_task
                     : threads_per_worker > 0 ? threads_per_worker
                                              : spec.threads_per_worker;
  } else {
    const int total = threads >= 0 ? (threads > 0 ? threads : available_cores())
                                   : (spec.threads > 0 ? spec.threads : available_cores());
    launch.threads = threads_per_worker > 0       ? threads_per_worker
                     : spec.threads_per_worker > 0 ? spec.threads_per_worker
                                                   : std::max(1, total / std::max(1, spec.workers));
  }
  const std::vector<sweep::SweepRun> runs = sweep::expand(spec, launch);
  const sweep::Manifest manifest = sweep::manifest_of(spec, runs);

  if (dry_run) {
    std::cout << runs.size() << " runs of sweep '" << spec.name << "' in " << spec.folder().string() << "\n";
    std::size_t w = 0;
    for (const auto& r : runs) w = std::max(w, r.id.size());
    for (const auto& r : runs)
      std::cout << std::setw(4) << r.index << "  " << std::left << std::setw(static_cast<int>(w)) << r.id << "  "
                << std::setw(8) << state_word(sweep::run_state(r)) << std::right << "  " << overrides_text(r) << "\n";
    return 0;
  }
  sweep::write_manifest(spec, runs);

  if (backend == "local") {
    sweep::LocalOptions lo;
    lo.workers = spec.workers;
    lo.rerun_failed = rerun_failed;
    lo.print = [](const std::string& s) { std::cerr << s << std::endl; };
    std::cerr << "sweep '" << spec.name << "': " << spec.folder().string() << " (" << launch.threads
              << " threads per run)" << std::endl;
    const sweep::SweepSummary summary = sweep::run_local(manifest, lo);
    std::cout << summary.text() << std::endl;
    return summary.failed.empty() ? 0 : 1;
  }

  // Slurm: one array over the runs that still need to run and are not already in the queue.
  std::vector<std::size_t> todo;
  const auto status = sweep::sweep_status(manifest, true);
  for (const auto& s : status) {
    const auto& r = runs[s.index];
    if (s.state == "done") continue;
    if (s.state == "failed") {
      if (!rerun_failed) continue;
      sweep::retire_failed(r);
    }
    if ((s.state == "queued" || s.state == "running") && s.detail.rfind("slurm", 0) == 0) continue;
    todo.push_back(s.index);
  }
  std::size_t failed = 0;
  for (const auto& s : status) failed += s.state == "failed";
  if (todo.empty()) {
    std::cout << "nothing to submit: " << runs.size() << " runs, all done, queued or failed"
              << (failed && !rerun_failed ? " (--rerun-failed reruns the failed ones)" : "") << std::endl;
    return failed && !rerun_failed ? 1 : 0;
  }
  const fs::path adfw = launch.adfw.empty() ? sweep::self_executable() : launch.adfw;
  const fs::path snapshot = sweep::write_snapshot(spec, runs);
  const std::string script = sweep::slurm_script(manifest, slurm, todo, adfw, launch.plugins, snapshot);
  const std::string job = sweep::submit_slurm(manifest, script, snapshot, !no_submit);
  const fs::path script_file = spec.folder() / "slurm" / "sweep.sbatch";
  if (no_submit) {
    std::cout << "wrote " << script_file.string() << " (" << todo.size() << " of " << runs.size()
              << " runs); submit with: sbatch " << script_file.string() << std::endl;
  } else {
    std::cout << "submitted Slurm job " << job << ": array " << sweep::array_spec(todo) << " (" << todo.size() << " of "
              << runs.size() << " runs)\nfollow it with: adfw sweep status " << spec.folder().string() << std::endl;
  }
  return 0;
}

sweep::Manifest manifest_for(const std::string& input, const std::string& output) {
  if (fs::is_directory(input)) return sweep::read_manifest(input);
  const sweep::SweepSpec spec = sweep::read_sweep(input, output);
  if (fs::exists(spec.folder() / "sweep.json")) return sweep::read_manifest(spec.folder());
  sweep::LaunchOptions launch;
  launch.adfw = "adfw";
  return sweep::manifest_of(spec, sweep::expand(spec, launch));
}

int status_cmd(const std::vector<std::string>& args) {
  std::string input, output;
  bool json = false, no_squeue = false;
  po::options_description d("options");
  d.add_options()("sweep", po::value(&input), "sweep file or sweep folder")(
      "json", po::bool_switch(&json), "print JSON: {counts, runs: [{index, id, state, detail}]}")(
      "no-squeue", po::bool_switch(&no_squeue), "do not ask Slurm's squeue about submitted jobs")(
      "output,o", po::value(&output), "folder of sweep folders, for a sweep file (as given to adfw sweep --output)");
  po::positional_options_description pos;
  pos.add("sweep", 1);
  const std::string usage = "adfw sweep status <sweep.toml | sweep folder> [--json]";
  auto vm = cli::parse_command(args, d, pos, usage);
  if (vm.count("help")) return 0;
  if (input.empty()) throw ConfigError("missing sweep file or folder\nusage: " + usage);
  const sweep::Manifest m = manifest_for(input, output);
  const auto lines = sweep::sweep_status(m, !no_squeue);
  std::map<std::string, int> counts;
  for (const auto& l : lines) ++counts[l.state];
  if (json) {
    nlohmann::json j;
    j["name"] = m.name;
    j["folder"] = m.folder.string();
    j["counts"] = counts;
    j["runs"] = nlohmann::json::array();
    for (const auto& l : lines) j["runs"].push_back({{"index", l.index}, {"id", l.id}, {"state", l.state}, {"detail", l.detail}});
    std::cout << j.dump(2) << std::endl;
    return 0;
  }
  std::size_t w = 2;
  for (const auto& l : lines) w = std::max(w, l.id.size());
  std::cout << "sweep '" << m.name << "' (" << m.folder.string() << ")\n";
  for (const auto& l : lines)
    std::cout << std::setw(4) << l.index << "  " << std::left << std::setw(static_cast<int>(w)) << l.id << "  "
              << std::setw(8) << l.state << std::right << (l.detail.empty() ? "" : "  " + l.detail) << "\n";
  std::cout << lines.size() << " runs:";
  for (const char* s : {"done", "running", "queued", "pending", "failed"})
    if (counts.count(s)) std::cout << " " << counts[s] << " " << s;
  std::cout << std::endl;
  return 0;
}

int task_cmd(const std::vector<std::string>& args) {
  std::string folder;
  long long index = -1;
  int threads = 0;
  bool rerun_failed = false;
  po::options_description d("options");
  d.add_options()("folder", po::value(&folder), "sweep folder (holding sweep.json)")(
      "index", po::value(&index), "run index (the Slurm array task id)")(
      "threads", po::value(&threads), "threads of the run (replaces the manifest's)")(
      "rerun-failed", po::bool_switch(&rerun_failed), "run it again when it failed before");
  po::positional_options_description pos;
  pos.add("folder", 1).add("index", 1);
  const std::string usage = "adfw sweep task <sweep folder | manifest.json> <index> [--threads N] [--rerun-failed]";
  auto vm = cli::parse_command(args, d, pos, usage);
  if (vm.count("help")) return 0;
  if (folder.empty() || index < 0) throw ConfigError("missing sweep folder or run index\nusage: " + usage);
  sweep::Manifest m = sweep::read_manifest(folder);
  if (static_cast<std::size_t>(index) >= m.runs.size())
    throw ConfigError("run index " + std::to_string(index) + " out of range: the sweep has " +
                      std::to_string(m.runs.size()) + " runs");
  sweep::SweepRun run = m.runs[static_cast<std::size_t>(index)];
  if (threads > 0) {
    auto& c = run.command;
    for (std::size_t i = 0; i + 1 < c.size(); ++i)
      if (c[i] == "--threads") c.erase(c.begin() + static_cast<long>(i), c.begin() + static_cast<long>(i) + 2);
    c.push_back("--threads");
    c.push_back(std::to_string(threads));
  }
  const RunState before = sweep::run_state(run);
  std::cout << "run " << run.index << " " << run.id << " (" << run.dir.string() << ")" << std::endl;
  if (before == RunState::done) {
    std::cout << "already done" << std::endl;
    return 0;
  }
  const RunState after = sweep::execute_run(run, rerun_failed);
  if (after == RunState::done) {
    std::cout << "done" << std::endl;
    return 0;
  }
  std::string err;
  try {
    err = read_json(run.dir / "status.json").value("error", "");
  } catch (const std::exception&) {
  }
  std::cout << "failed" << (before == RunState::failed && !rerun_failed ? " earlier (--rerun-failed reruns it)" : "")
            << ": " << err << std::endl;
  return 1;
}

}  // namespace

ADFW_COMMAND("sweep", "run a sweep file's runs (grid, zip, seeds) locally or as a Slurm job array", sweep_cmd);
ADFW_COMMAND("sweep status", "pending / queued / running / done / failed of each run of a sweep", status_cmd);
ADFW_COMMAND("sweep task", "execute one run of a sweep folder (what each Slurm array task runs)", task_cmd);

}  // namespace adfw
