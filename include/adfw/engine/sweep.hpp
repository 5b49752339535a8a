// Sweeps: one TOML file names a base experiment and the axes to vary (grid = cartesian, zip =
// paired, seeds); every combination is one run with a stable id derived from its axis values,
// living in <sweep folder>/<experiment>/<id>/. Runs execute as `adfw run` child processes, on
// local worker slots or as the tasks of one Slurm job array. The format is documented in
// docs/sweeps.md and experiments/ablations/coreset_ratio.toml.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include "adfw/engine/run_folder.hpp"

namespace adfw::sweep {

/// One `key=value` override; `value` is TOML text (strings quoted), exactly what `--set` takes.
struct Assignment {
  std::string key;
  std::string value;
  std::string str() const { return key + "=" + value; }
};

/// One varied key and its values (TOML text each).
struct Axis {
  std::string key;
  std::vector<std::string> values;
};

/// Axes that vary together: a [zip] group (equal-length lists), or a single grid axis.
using AxisGroup = std::vector<Axis>;

struct SlurmOptions {
  std::string partition;             ///< #SBATCH --partition ("" = the cluster's default)
  std::string time;                  ///< --time, e.g. "02:00:00"
  std::string gpus;                  ///< --gres=gpu:<gpus>, e.g. "1" or "a100:1" ("" = none)
  int cpus_per_task = 0;             ///< --cpus-per-task (0 = not set); also the runs' threads
  std::string mem;                   ///< --mem, e.g. "32G"
  std::string account;               ///< --account
  std::string qos;                   ///< --qos
  int max_parallel = 0;              ///< array throttle (--array=...%N); 0 = no limit
  std::vector<std::string> extra;    ///< more sbatch options, e.g. "--constraint=a100" (one per line)
  std::vector<std::string> setup;    ///< shell lines run before the task (module load, venv ...)
  std::string adfw;                  ///< adfw executable on the nodes ("" = this executable's path)
};

struct TableDefaults {
  std::string rows;                  ///< key of the row axis (default data.category)
  std::string cols;                  ///< key of the column axis ("" = one column)
  std::vector<std::string> metrics;  ///< metric names (default image_auroc)
  std::vector<std::string> where;    ///< key=value filters
  bool reference = true;             ///< show the experiment's [reference] numbers
};

/// Which published table (and which rows of it) a sweep or experiment reproduces.
struct Reproduces {
  std::string paper, table, rows, note;
  bool empty() const { return paper.empty() && table.empty() && rows.empty() && note.empty(); }
  /// "Reproduces Table 2 (rows: ...) of <paper>. <note>"
  std::string caption() const;
  static Reproduces from_toml(const toml::table& t, const std::string& where);
  static Reproduces from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
};

/// A parsed sweep file (paths absolute).
struct SweepSpec {
  std::filesystem::path file;
  std::string name;                       ///< default: the file's stem
  std::string description;
  std::filesystem::path base;             ///< the base experiment
  std::vector<std::filesystem::path> presets;
  std::vector<Assignment> fixed;          ///< `set`: the same for every run
  std::vector<std::vector<AxisGroup>> grids;  ///< one entry per [grid] / [[grid]] block
  std::vector<AxisGroup> zips;            ///< one entry per [zip] / [[zip]] block
  std::vector<std::string> seeds;         ///< `seeds`, as TOML integers ("" entries never)
  std::filesystem::path output;           ///< the sweep folder is output/name
  int workers = 1;
  int threads = 0;                        ///< total threads of a local sweep (0 = all cores)
  int threads_per_worker = 0;             ///< 0 = threads / workers
  SlurmOptions slurm;
  TableDefaults table;
  Reproduces reproduces;

  std::filesystem::path folder() const { return output / name; }
};

/// Parses and validates a sweep file. `output` replaces the file's `output` when not empty.
/// Unknown keys, non-list axes, unequal zip lengths and a key varied twice are ConfigErrors.
SweepSpec read_sweep(const std::filesystem::path& file, const std::filesystem::path& output = {});

/// One run of a sweep.
struct SweepRun {
  std::size_t index = 0;               ///< position in the manifest (= Slurm array task id)
  std::string id;                      ///< stable run id, e.g. category-bottle_seed-1_8c1e0b
  std::vector<Assignment> axes;        ///< the varied values (seed included), declaration-independent order
  std::string experiment;              ///< experiment name (the folder between sweep folder and id)
  std::filesystem::path dir;           ///< <sweep folder>/<experiment>/<id>
  std::vector<std::string> command;    ///< argv of the `adfw run` that makes it (no --resume)
};

/// Every combination, in order: grid blocks one after another; within a block the axes nest in
/// key order (first key outermost), then zip groups, then seeds innermost. Duplicates (the same
/// axis values from two blocks) are kept once. Experiment names are read from the base
/// config with the run's overrides applied.
struct LaunchOptions {
  std::filesystem::path adfw;          ///< the adfw executable ("" = this process's executable)
  std::vector<std::string> plugins;    ///< --plugin files to pass on
  int threads = 0;                     ///< --threads of each run (0 = the experiment's own)
};
std::vector<SweepRun> expand(const SweepSpec& spec, const LaunchOptions& launch);

/// Canonical TOML text of a value (strings quoted and escaped, floats round-trip exactly and
/// always carry a '.', 'e', "inf" or "nan", arrays "[a, b]", tables "{k = v}" with sorted keys).
std::string canonical_value(const toml::node& node);

/// 64-bit FNV-1a.
uint64_t fnv1a64(std::string_view text);

/// The stable id of a run: "<label>-<value>" parts joined by '_' (seed last, others in key
/// order; label = last key component, or the whole key with '.' -> '-' when two axes share
/// it; values sanitised to [A-Za-z0-9.+=-], array elements joined by '+', at most 32 chars),
/// then '_' and the low 24 bits of fnv1a64 of the sorted "key=value" lines (each ending '\n')
/// as 6 hex digits. Only the varied values enter it, so editing fixed settings keeps the ids.
/// No axes: "base".
std::string run_id(const std::vector<Assignment>& axes);

/// The manifest written to <sweep folder>/sweep.json: everything a Slurm task (or a later
/// `adfw sweep status` / `adfw table`) needs without the sweep file.
nlohmann::json manifest_json(const SweepSpec& spec, const std::vector<SweepRun>& runs);
void write_manifest(const SweepSpec& spec, const std::vector<SweepRun>& runs);

struct Manifest {
  std::string name;
  std::filesystem::path folder;
  std::filesystem::path sweep_file;
  std::vector<SweepRun> runs;
  std::vector<std::string> axis_keys;  ///< every varied key, seed included
  TableDefaults table;
  Reproduces reproduces;
};
/// Reads <folder>/sweep.json, or a manifest file (sweep.json or slurm/manifest-<k>.json) given
/// directly; run folders are resolved against the sweep folder it belongs to.
Manifest read_manifest(const std::filesystem::path& folder_or_file);
Manifest manifest_of(const SweepSpec& spec, const std::vector<SweepRun>& runs);

/// The run's state from its folder.
RunState run_state(const SweepRun& run);

/// Moves a failed run folder aside to <experiment folder>/.attempts/<id>.<n> (kept for
/// post-mortems; tables ignore it) so the run starts afresh.
void retire_failed(const SweepRun& run);

/// Starts `adfw run` for `run` as a child process (stdout+stderr to <run dir>/output.log),
/// with --resume when the folder already holds an interrupted run. Returns the child's pid.
int start_run(const SweepRun& run);

/// After the child exited with wait status `wait_status`: a run that did not finish as done
/// is recorded as failed in its status.json (config errors never open the run folder, so this
/// is where they are recorded), with the exit code and the end of output.log. Returns the state.
RunState finish_run(const SweepRun& run, int wait_status);

/// Runs one run synchronously (start_run + wait + finish_run), skipping it when done and
/// retiring a failed one first when `rerun_failed`. Used by Slurm array tasks.
RunState execute_run(const SweepRun& run, bool rerun_failed);

struct LocalOptions {
  int workers = 1;
  bool rerun_failed = false;
  std::function<void(const std::string&)> print;  ///< progress lines (nullptr = none)
};

struct SweepSummary {
  std::vector<std::string> skipped;   ///< already done before this sweep
  std::vector<std::string> done;      ///< finished now
  std::vector<std::string> failed;    ///< failed now, or failed before and not rerun
  std::string text() const;
};

/// Runs every run that is not done on `workers` parallel child processes. One failure never
/// stops the others. Holds <sweep folder>/.sweep.lock so two sweeps cannot share a folder.
SweepSummary run_local(const Manifest& manifest, const LocalOptions& options);

/// Slurm: a copy of the manifest for one submission, <folder>/slurm/manifest-<k>.json, so tasks
/// still queued from an earlier submission keep their index -> run mapping when the sweep file
/// changes. Returns its path.
std::filesystem::path write_snapshot(const SweepSpec& spec, const std::vector<SweepRun>& runs);

/// The sbatch script of a job array over `indices` (runs to do): task i runs
/// `adfw sweep task <manifest_file> i`. `adfw` is the executable on the nodes.
std::string slurm_script(const Manifest& manifest, const SlurmOptions& slurm, const std::vector<std::size_t>& indices,
                         const std::filesystem::path& adfw, const std::vector<std::string>& plugins,
                         const std::filesystem::path& manifest_file);

/// "0-3,5,7-9" for sorted unique indices.
std::string array_spec(const std::vector<std::size_t>& indices);

/// Writes the script to <folder>/slurm/sweep.sbatch and runs.txt (one `index id command` per
/// line), submits with `sbatch --parsable` ($ADFW_SBATCH or `sbatch` from PATH), records the job
/// and its manifest in <folder>/slurm/jobs.json and returns the job id ("" when !submit).
std::string submit_slurm(const Manifest& manifest, const std::string& script, const std::filesystem::path& manifest_file,
                         bool submit);

/// Per-run state for `adfw sweep status`, with Slurm queue states when squeue answers.
struct RunStatusLine {
  std::size_t index;
  std::string id;
  std::string state;   ///< pending | queued | running | done | failed
  std::string detail;  ///< error excerpt, Slurm state or headline metric
};
std::vector<RunStatusLine> sweep_status(const Manifest& manifest, bool query_slurm);

/// Shell-quotes one argument ('...' when it holds anything unusual).
std::string shell_quote(const std::string& arg);

/// This process's executable, and the --plugin files given to it (so children load them too).
std::filesystem::path self_executable();
std::vector<std::string> self_plugins();

}  // namespace adfw::sweep
