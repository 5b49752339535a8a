// Sweep files: expansion (grid, zip, seeds), stable ids (hashes checked with an independent FNV-1a
// in Python), execution with a stand-in `adfw` script (resume, failures, reruns), Slurm scripts.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>

#include "adfw/core/error.hpp"
#include "adfw/core/io.hpp"
#include "adfw/engine/sweep.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace adfw;
using namespace adfw::sweep;

namespace {

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

fs::path base_experiment(const fs::path& dir) {
  write(dir / "exp.toml", "name = \"exp\"\nseed = 0\n[data]\ntype = \"demo\"\n[method]\ntype = \"patchcore\"\n");
  return dir / "exp.toml";
}

std::vector<std::string> ids_of(const std::vector<SweepRun>& runs) {
  std::vector<std::string> out;
  for (const auto& r : runs) out.push_back(r.id);
  return out;
}

LaunchOptions fake_launch(const fs::path& adfw) {
  LaunchOptions l;
  l.adfw = adfw;
  l.threads = 1;
  return l;
}

/// A stand-in for `adfw run`: writes the run folder the way the engine does (config.toml,
/// status.json, metrics.json), logs each call, fails on category "broken" (recorded by itself,
/// like the engine) and on "typo" (exit 2 before any folder exists, like a config error).
fs::path fake_adfw(const fs::path& dir) {
  const fs::path script = dir / "fake_adfw.sh";
  write(script, R"(#!/bin/bash
out=""; id=""; cat=""; seed=0; resume=0; sets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --output) out=$2; shift;;
    --run-id) id=$2; shift;;
    --resume) resume=1;;
    --set) sets+=("$2"); case "$2" in data.category=*) cat=${2#data.category=}; cat=${cat//\"/};; seed=*) seed=${2#seed=};; esac; shift;;
  esac
  shift
done
echo "$id resume=$resume" >> ")" + (dir / "calls.log").string() + R"("
if [ "$cat" = typo ]; then echo "error: data.category: unknown category 'typo'" >&2; exit 2; fi
d="$out/exp/$id"; mkdir -p "$d"
{ echo "name = \"exp\""; echo "seed = $seed"; echo "[data]"; echo "category = \"$cat\""; } > "$d/config.toml"
if [ "$cat" = broken ]; then
  echo '{"state": "failed", "error": "the data set is broken"}' > "$d/status.json"
  echo "error: the data set is broken" >&2; exit 1
fi
echo "{\"metrics\": {\"image_auroc\": 0.$((90 + seed))}}" > "$d/metrics.json"
echo '{"state": "done"}' > "$d/status.json"
echo '{"image_auroc": 0.9}'
)");
  fs::permissions(script, fs::perms::owner_all);
  return script;
}

std::vector<std::string> read_lines(const fs::path& p) {
  std::vector<std::string> out;
  std::ifstream in(p);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

}  // namespace

TEST_CASE("canonical values are TOML text that round-trips", "[sweep]") {
  auto v = [](const std::string& text) { return canonical_value(*toml::parse("v = " + text).get("v")); };
  CHECK(v("0.1") == "0.1");
  CHECK(v("1.0") == "1.0");
  CHECK(v("1e-5") == "1e-05");
  CHECK(v("-3") == "-3");
  CHECK(v("true") == "true");
  CHECK(v("\"a\\\"b\"") == "\"a\\\"b\"");
  CHECK(v("[ 'layer2','layer3' ]") == "[\"layer2\", \"layer3\"]");
  CHECK(v("{ type = 'resnet', arch = 'resnet18' }") == "{arch = \"resnet18\", type = \"resnet\"}");
}

TEST_CASE("run ids: readable slug plus a hash of the sorted assignments", "[sweep]") {
  // Hashes: FNV-1a 64 computed independently (Python) over the sorted "key=value\n" lines.
  CHECK(fnv1a64("") == 0xcbf29ce484222325ULL);
  CHECK(fnv1a64("data.category=\"bottle\"\nseed=1\n") == 0xeb6f2d5a7225fc59ULL);
  CHECK(run_id({{"data.category", "\"bottle\""}, {"seed", "1"}}) == "category-bottle_seed-1_25fc59");
  // Order of the assignments does not matter; seed is always last in the slug.
  CHECK(run_id({{"seed", "1"}, {"data.category", "\"bottle\""}}) == "category-bottle_seed-1_25fc59");
  CHECK(run_id({{"method.backbone.layers", "[\"layer2\", \"layer3\"]"}, {"method.backbone.arch", "\"wide_resnet50_2\""}}) ==
        "arch-wide-resnet50-2_layers-layer2+layer3_ded477");
  // Two axes with the same last component are told apart by their full keys.
  const std::string id = run_id({{"a.ratio", "0.5"}, {"b.ratio", "0.25"}});
  CHECK(id.rfind("a.ratio-0.5_b.ratio-0.25_", 0) == 0);
  CHECK(run_id({}) == "base");
  // '_' separates the parts, so inside values it becomes '-'. Values with odd characters are
  // sanitised, long ones truncated; the hash keeps them apart.
  const std::string odd = run_id({{"data.root", "\"/data/My Set (v2)\""}});
  CHECK(odd.rfind("root-data-My-Set-v2_", 0) == 0);
  CHECK(run_id({{"x", "\"a b\""}}) != run_id({{"x", "\"a/b\""}}));
}

TEST_CASE("grid x seeds expand in key order with stable ids", "[sweep]") {
  const fs::path dir = adfw::test::temp_dir("sweep_grid");
  base_experiment(dir);
  write(dir / "abl.toml", R"(
name = "abl"
base = "exp.toml"
seeds = [0, 1]
set = { "method.backbone.weights" = "random" }
output = "out"
[grid]
"method.coreset.ratio" = [0.1, 0.01]
data.category = ["bottle", "cable"]
)");
  const SweepSpec spec = read_sweep(dir / "abl.toml", dir / "out");
  const auto runs = expand(spec, fake_launch("/bin/true"));
  REQUIRE(runs.size() == 8);
  // data.category < method.coreset.ratio: category outermost, seeds innermost.
  CHECK(runs[0].id == "category-bottle_ratio-0.1_seed-0_8d79b9");
  CHECK(runs[1].id.rfind("category-bottle_ratio-0.1_seed-1_", 0) == 0);
  CHECK(runs[2].id.rfind("category-bottle_ratio-0.01_seed-0_", 0) == 0);
  CHECK(runs[7].id == "category-cable_ratio-0.01_seed-1_011b43");
  CHECK(runs[7].index == 7);
  CHECK(runs[0].experiment == "exp");
  CHECK(runs[0].dir == dir / "out" / "abl" / "exp" / runs[0].id);
  // The command: axes, then the fixed values, then the run id and the sweep folder.
  const auto& c = runs[0].command;
  const std::vector<std::string> expected = {"/bin/true",
                                             "--quiet",
                                             "run",
                                             (dir / "exp.toml").string(),
                                             "--set",
                                             "data.category=\"bottle\"",
                                             "--set",
                                             "method.coreset.ratio=0.1",
                                             "--set",
                                             "seed=0",
                                             "--set",
                                             "method.backbone.weights=\"random\"",
                                             "--run-id",
                                             runs[0].id,
                                             "--output",
                                             (dir / "out" / "abl").string(),
                                             "--threads",
                                             "1"};
  CHECK(c == expected);
  // Expanding again gives the same ids (reruns find their folders).
  CHECK(ids_of(expand(read_sweep(dir / "abl.toml", dir / "out"), fake_launch("/bin/true"))) == ids_of(runs));
}

TEST_CASE("zip pairs values, [[grid]] blocks are a union without duplicates", "[sweep]") {
  const fs::path dir = adfw::test::temp_dir("sweep_zip");
  base_experiment(dir);
  write(dir / "z.toml", R"(
base = "exp.toml"
[zip]
method.backbone.arch = ["resnet18", "wide_resnet50_2"]
method.backbone.layers = [["layer2"], ["layer2", "layer3"]]
)");
  auto runs = expand(read_sweep(dir / "z.toml"), fake_launch("/bin/true"));
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].id == "arch-resnet18_layers-layer2_4e6b28");
  CHECK(runs[1].id == "arch-wide-resnet50-2_layers-layer2+layer3_ded477");
  CHECK(runs[1].axes[1].str() == "method.backbone.layers=[\"layer2\", \"layer3\"]");

  write(dir / "g.toml", R"(
base = "exp.toml"
seeds = [3]
[[grid]]
data.category = ["bottle", "cable"]
[[grid]]
data.category = ["cable", "screw"]
)");
  runs = expand(read_sweep(dir / "g.toml"), fake_launch("/bin/true"));
  REQUIRE(runs.size() == 3);  // cable once
  CHECK(runs[0].id.rfind("category-bottle_seed-3_", 0) == 0);
  CHECK(runs[1].id.rfind("category-cable_seed-3_", 0) == 0);
  CHECK(runs[2].id.rfind("category-screw_seed-3_", 0) == 0);
  CHECK(runs[2].index == 2);

  // zip x grid x seeds: 2 * 2 * 2.
  write(dir / "zg.toml", R"(
base = "exp.toml"
seeds = [0, 1]
[grid]
data.category = ["bottle", "cable"]
[zip]
method.backbone.arch = ["resnet18", "wide_resnet50_2"]
method.backbone.layers = [["layer2"], ["layer2", "layer3"]]
)");
  runs = expand(read_sweep(dir / "zg.toml"), fake_launch("/bin/true"));
  REQUIRE(runs.size() == 8);
  const std::vector<std::string> all_ids = ids_of(runs);
  const std::set<std::string> ids(all_ids.begin(), all_ids.end());
  CHECK(ids.size() == 8);
  CHECK(runs[0].axes.size() == 4);
}

TEST_CASE("sweep files: mistakes are config errors that say what to do", "[sweep]") {
  const fs::path dir = adfw::test::temp_dir("sweep_errors");
  base_experiment(dir);
  auto error_of = [&](const std::string& text) -> std::string {
    write(dir / "bad.toml", text);
    try {
      read_sweep(dir / "bad.toml");
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "(no error)";
  };
  CHECK_THAT(error_of("base = \"exp.toml\"\nseedz = [1]\n"),
             Catch::Contains("unknown sweep key") && Catch::Contains("did you mean 'seeds'"));
  CHECK_THAT(error_of("base = \"missing.toml\"\n"), Catch::Contains("missing.toml not found"));
  CHECK_THAT(error_of("seeds = [1]\n"), Catch::Contains("base: missing"));
  CHECK_THAT(error_of("base = \"exp.toml\"\n[grid]\ndata.category = \"bottle\"\n"),
             Catch::Contains("grid.data.category") && Catch::Contains("must be a list") && Catch::Contains("`set`"));
  CHECK_THAT(error_of("base = \"exp.toml\"\n[zip]\na = [1, 2]\nb = [1]\n"), Catch::Contains("equal lengths"));
  CHECK_THAT(error_of("base = \"exp.toml\"\nset = { a = 1 }\n[grid]\na = [1, 2]\n"),
             Catch::Contains("a is set both in set and in grid"));
  CHECK_THAT(error_of("base = \"exp.toml\"\n[slurm]\npartiton = \"gpu\"\n"),
             Catch::Contains("slurm.partiton") && Catch::Contains("did you mean 'partition'"));
  CHECK_THAT(error_of("base = \"exp.toml\"\n[grid]\na = []\n"), Catch::Contains("at least one value"));
  CHECK_THAT(error_of("name = \"my sweep\"\nbase = \"exp.toml\"\n"), Catch::Contains("plain folder name"));
}

TEST_CASE("local sweep: resumes, skips done runs, records failures and finishes the rest", "[sweep]") {
  const fs::path dir = adfw::test::temp_dir("sweep_local");
  base_experiment(dir);
  const fs::path adfw = fake_adfw(dir);
  write(dir / "s.toml", R"(
name = "s"
base = "exp.toml"
seeds = [0, 1]
[grid]
data.category = ["bottle", "broken", "typo", "cable"]
)");
  const SweepSpec spec = read_sweep(dir / "s.toml", dir / "out");
  const auto runs = expand(spec, fake_launch(adfw));
  REQUIRE(runs.size() == 8);
  write_manifest(spec, runs);
  const Manifest m = read_manifest(spec.folder());
  REQUIRE(m.runs.size() == 8);
  CHECK(m.runs[3].dir == runs[3].dir);
  CHECK(m.axis_keys == std::vector<std::string>{"data.category", "seed"});

  // Runs 0 and 1 (bottle) already done by an earlier sweep; run 6 (cable, seed 0) was interrupted.
  for (int i : {0, 1}) {
    write(runs[i].dir / "status.json", "{\"state\": \"done\"}");
    write(runs[i].dir / "metrics.json", "{\"metrics\": {\"image_auroc\": 0.5}}");
  }
  write(runs[6].dir / "config.toml", "name = \"exp\"\n");
  REQUIRE(run_state(runs[6]) == RunState::running);

  LocalOptions lo;
  lo.workers = 3;
  SweepSummary s = run_local(m, lo);
  CHECK(s.skipped == std::vector<std::string>{runs[0].id, runs[1].id});
  CHECK(s.done.size() == 2);     // cable seeds 0 and 1
  CHECK(s.failed.size() == 4);   // broken x2 (recorded by the run), typo x2 (recorded by the sweep)
  auto calls = read_lines(dir / "calls.log");
  std::sort(calls.begin(), calls.end());
  std::vector<std::string> expected = {runs[2].id + " resume=0", runs[3].id + " resume=0", runs[4].id + " resume=0",
                                       runs[5].id + " resume=0", runs[6].id + " resume=1", runs[7].id + " resume=0"};
  std::sort(expected.begin(), expected.end());
  CHECK(calls == expected);
  for (int i : {2, 3, 4, 5}) CHECK(run_state(runs[i]) == RunState::failed);
  CHECK(run_state(runs[6]) == RunState::done);
  CHECK(run_state(runs[7]) == RunState::done);
  // The run's own error is kept; the sweep adds how the process ended.
  const auto broken = read_json(runs[2].dir / "status.json");
  CHECK(broken["error"] == "the data set is broken");
  CHECK(broken["exit"] == "adfw run exited with code 1");
  // A config error never opens the run folder: the sweep records it, with the child's message.
  const auto typo = read_json(runs[4].dir / "status.json");
  CHECK(typo["state"] == "failed");
  CHECK_THAT(typo["error"].get<std::string>(),
             Catch::Contains("exited with code 2") && Catch::Contains("unknown category 'typo'"));
  CHECK(fs::exists(runs[4].dir / "output.log"));

  // Again: nothing runs; the failed ones are reported, not rerun.
  s = run_local(m, lo);
  CHECK(s.skipped.size() == 4);
  CHECK(s.done.empty());
  CHECK(s.failed.size() == 4);
  CHECK_THAT(s.failed[0], Catch::Contains("--rerun-failed"));
  CHECK(read_lines(dir / "calls.log").size() == 6);

  // --rerun-failed: the failed runs start afresh; their old folders are kept under .attempts.
  lo.rerun_failed = true;
  s = run_local(m, lo);
  CHECK(s.failed.size() == 4);
  CHECK(read_lines(dir / "calls.log").size() == 10);
  CHECK(fs::exists(runs[2].dir.parent_path() / ".attempts" / (runs[2].id + ".1") / "status.json"));

  // Status lines come from the folders.
  const auto status = sweep_status(m, false);
  REQUIRE(status.size() == 8);
  CHECK(status[0].state == "done");
  CHECK(status[2].state == "failed");
  CHECK(status[2].detail == "the data set is broken");
  CHECK(status[7].state == "done");
  CHECK(status[7].detail == "image_auroc 0.9100");
}

TEST_CASE("a sweep folder is locked against a second local sweep", "[sweep]") {
  const fs::path dir = adfw::test::temp_dir("sweep_lock");
  base_experiment(dir);
  const fs::path script = dir / "exit3.sh";
  write(script, "#!/bin/bash\nexit 3\n");
  fs::permissions(script, fs::perms::owner_all);
  write(dir / "s.toml", "base = \"exp.toml\"\nseeds = [0]\n");
  const SweepSpec spec = read_sweep(dir / "s.toml", dir / "out");
  const Manifest m = manifest_of(spec, expand(spec, fake_launch(script)));
  fs::create_directories(spec.folder());
  const int fd2 = ::open((spec.folder() / ".sweep.lock").c_str(), O_RDWR | O_CREAT, 0644);
  REQUIRE(fd2 >= 0);
  REQUIRE(::flock(fd2, LOCK_EX | LOCK_NB) == 0);
  CHECK_THROWS_WITH(run_local(m, LocalOptions{}), Catch::Contains("another `adfw sweep` is running"));
  ::close(fd2);
  const auto s = run_local(m, LocalOptions{});
  REQUIRE(s.failed.size() == 1);
  CHECK_THAT(s.failed[0], Catch::Contains("exited with code 3"));
}

TEST_CASE("slurm: array spec, sbatch script, submission and queue states", "[sweep]") {
  CHECK(array_spec({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8");
  CHECK(array_spec({4}) == "4");
  CHECK(array_spec({3, 1, 2, 2}) == "1-3");
  CHECK(shell_quote("plain/path-1.toml") == "plain/path-1.toml");
  CHECK(shell_quote("data.category=\"a b\"") == "'data.category=\"a b\"'");
  CHECK(shell_quote("it's") == "'it'\\''s'");

  const fs::path dir = adfw::test::temp_dir("sweep_slurm");
  base_experiment(dir);
  write(dir / "s.toml", R"(
name = "cluster_run.v2"
base = "exp.toml"
seeds = [0, 1]
[grid]
data.category = ["bottle", "cable"]
[slurm]
partition = "gpu"
time = "01:30:00"
gpus = 1
cpus_per_task = 8
mem = "32G"
account = "lab"
max_parallel = 2
extra = ["--constraint=a100", "--exclude=node7"]
setup = ["module load cuda/12.1"]
)");
  const SweepSpec spec = read_sweep(dir / "s.toml", dir / "out");
  const auto runs = expand(spec, fake_launch("/opt/adfw/bin/adfw"));
  write_manifest(spec, runs);
  const Manifest m = read_manifest(spec.folder());
  const fs::path snapshot = write_snapshot(spec, runs);
  CHECK(snapshot == spec.folder() / "slurm" / "manifest-1.json");
  CHECK(write_snapshot(spec, runs) == spec.folder() / "slurm" / "manifest-2.json");
  // A snapshot reads like the sweep folder's manifest.
  CHECK(read_manifest(snapshot).runs[3].dir == m.runs[3].dir);
  const std::string script = slurm_script(m, spec.slurm, {0, 1, 3}, "/opt/adfw/bin/adfw", {}, snapshot);
  auto has = [&](const std::string& line) { return script.find(line + "\n") != std::string::npos; };
  CHECK(script.rfind("#!/bin/bash\n", 0) == 0);
  CHECK(has("#SBATCH --array=0-1,3%2"));
  CHECK(has("#SBATCH --job-name=adfw-cluster_run.v2"));
  CHECK(has("#SBATCH --partition=gpu"));
  CHECK(has("#SBATCH --time=01:30:00"));
  CHECK(has("#SBATCH --gres=gpu:1"));
  CHECK(has("#SBATCH --cpus-per-task=8"));
  CHECK(has("#SBATCH --mem=32G"));
  CHECK(has("#SBATCH --account=lab"));
  CHECK(has("#SBATCH --constraint=a100"));
  CHECK(has("#SBATCH --exclude=node7"));
  CHECK(has("#SBATCH --output=" + (spec.folder() / "slurm" / "logs" / "%A_%a.out").string()));
  CHECK(has("module load cuda/12.1"));
  CHECK(has("exec /opt/adfw/bin/adfw sweep task " + snapshot.string() + " \"$SLURM_ARRAY_TASK_ID\" \"${threads[@]}\""));
  // #SBATCH lines must come before the first command, or sbatch ignores them.
  CHECK(script.find("#SBATCH") < script.find("set -eo pipefail"));
  CHECK(script.rfind("#SBATCH") < script.find("set -eo pipefail"));

  // Submission through a stand-in sbatch that prints what --parsable prints.
  const fs::path sbatch = dir / "sbatch.sh";
  write(sbatch, "#!/bin/bash\n[ \"$1\" = --parsable ] || exit 9\nhead -1 \"$2\" | grep -q bash || exit 8\necho '4242;cluster'\n");
  fs::permissions(sbatch, fs::perms::owner_all);
  ::setenv("ADFW_SBATCH", sbatch.c_str(), 1);
  const std::string job = submit_slurm(m, script, snapshot, true);
  ::unsetenv("ADFW_SBATCH");
  CHECK(job == "4242");
  const auto jobs = read_json(spec.folder() / "slurm" / "jobs.json");
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0]["job_id"] == "4242");
  CHECK(jobs[0]["array"] == "0-1,3%2");
  CHECK(jobs[0]["manifest"] == "slurm/manifest-1.json");
  CHECK(fs::is_directory(spec.folder() / "slurm" / "logs"));
  const auto listing = read_lines(spec.folder() / "slurm" / "runs.txt");
  REQUIRE(listing.size() == 5);
  CHECK(listing[1].rfind("0\t" + runs[0].id + "\t/opt/adfw/bin/adfw --quiet run ", 0) == 0);
  CHECK_THAT(listing[1], Catch::Contains("--set 'data.category=\"bottle\"'"));

  // Queue states from a stand-in squeue (job, array task, state).
  const fs::path squeue = dir / "squeue.sh";
  write(squeue, "#!/bin/bash\necho '4242 1 PENDING'\necho '4242 3 RUNNING'\n");
  fs::permissions(squeue, fs::perms::owner_all);
  write(runs[2].dir / "status.json", "{\"state\": \"failed\", \"error\": \"out of memory\"}");
  ::setenv("ADFW_SQUEUE", squeue.c_str(), 1);
  const auto status = sweep_status(m, true);
  ::unsetenv("ADFW_SQUEUE");
  CHECK(status[0].state == "pending");
  CHECK(status[1].state == "queued");
  CHECK(status[1].detail == "slurm PENDING");
  CHECK(status[2].state == "failed");
  CHECK(status[3].state == "running");

  // A failing sbatch is an error that shows its output.
  write(sbatch, "#!/bin/bash\necho 'sbatch: error: invalid partition specified: gpu' >&2\nexit 1\n");
  ::setenv("ADFW_SBATCH", sbatch.c_str(), 1);
  CHECK_THROWS_WITH(submit_slurm(m, script, snapshot, true), Catch::Contains("invalid partition specified"));
  ::unsetenv("ADFW_SBATCH");
}

TEST_CASE("adfw sweep + adfw table over the real CLI: a bad override fails alone", "[sweep]") {
  // Two PaDiM variants under the smoke preset on the demo data; "layer9" is no ResNet tap, so
  // that run fails with a config error while the other one finishes and is tabled.
  const fs::path src = adfw::test::source_root();
  const fs::path dir = adfw::test::temp_dir("sweep_cli");
  write(dir / "cli.toml", "name = \"cli\"\nbase = \"" + (src / "experiments" / "padim.toml").string() +
                              "\"\npresets = [\"" + (src / "configs" / "presets" / "smoke.toml").string() +
                              "\"]\nseeds = [0]\n"
                              "set = { \"method.backbone.weights\" = \"random\", \"method.backbone.arch\" = \"resnet18\", "
                              "\"method.dims\" = 16 }\n"
                              "[grid]\n\"method.backbone.layers\" = [[\"layer1\", \"layer2\"], [\"layer9\"]]\n"
                              "[table]\nrows = \"method.backbone.layers\"\nmetrics = [\"image_auroc\", \"pixel_auroc\"]\n");
  const std::string adfw = adfw::test::cli_path().string();
  auto sh = [&](const std::string& cmd, const fs::path& out) {
    const int rc = std::system((cmd + " > " + out.string() + " 2>&1").c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  };
  const std::string sweep = adfw + " sweep " + (dir / "cli.toml").string() + " --output " + (dir / "out").string();
  REQUIRE(sh(sweep + " --dry-run", dir / "dry.txt") == 0);
  const auto dry = read_lines(dir / "dry.txt");
  REQUIRE(dry.size() == 3);
  CHECK_THAT(dry[1], Catch::Contains("layers-layer1+layer2_") && Catch::Contains("pending") &&
                         Catch::Contains("method.backbone.layers=[\"layer1\", \"layer2\"]"));
  CHECK(sh(sweep + " -j 2 --threads 2", dir / "sweep.txt") == 1);
  INFO(adfw::read_file(dir / "sweep.txt"));
  const Manifest m = read_manifest(dir / "out" / "cli");
  REQUIRE(m.runs.size() == 2);
  CHECK(run_state(m.runs[0]) == RunState::done);
  CHECK(fs::exists(m.runs[0].dir / "metrics.json"));
  CHECK(fs::exists(m.runs[0].dir / "config.toml"));
  REQUIRE(run_state(m.runs[1]) == RunState::failed);
  CHECK_THAT(read_json(m.runs[1].dir / "status.json")["error"].get<std::string>(),
             Catch::Contains("exited with code 2") && Catch::Contains("layer9"));
  CHECK_THAT(adfw::read_file(dir / "sweep.txt"), Catch::Contains("2 runs: 1 finished now, 0 already done, 1 failed"));

  // Again: the done run is skipped, the failed one reported, nothing reruns.
  CHECK(sh(sweep, dir / "again.txt") == 1);
  CHECK_THAT(adfw::read_file(dir / "again.txt"), Catch::Contains("2 runs: 0 finished now, 1 already done, 1 failed"));

  REQUIRE(sh(adfw + " table " + (dir / "out" / "cli").string(), dir / "table.md") == 0);
  const std::string table = adfw::read_file(dir / "table.md");
  INFO(table);
  // padim.toml's [reference] (MVTec AD means) reaches the table through metrics.json; the Mean
  // row is missing because the layer9 row is.
  CHECK_THAT(table, Catch::Contains("| layers | image_auroc | image_auroc ref | image_auroc Δ | pixel_auroc | "
                                    "pixel_auroc ref | pixel_auroc Δ |"));
  CHECK(std::regex_search(table, std::regex(R"(\| layer1\+layer2 \| [0-9]+\.[0-9] \| — \| — \| [0-9]+\.[0-9] \| — \| — \|)")));
  CHECK_THAT(table, Catch::Contains("| layer9 | — | — | — | — | — | — |"));
  CHECK_THAT(table, Catch::Contains("| **Mean** | — | 95.5 | — | — | 97.3 | — |"));
  REQUIRE(sh(adfw + " sweep status " + (dir / "out" / "cli").string(), dir / "status.txt") == 0);
  CHECK_THAT(adfw::read_file(dir / "status.txt"), Catch::Contains("2 runs: 1 done 1 failed"));
  // Usage errors exit with 2.
  CHECK(sh(adfw + " sweep " + (dir / "cli.toml").string() + " --backend cloud", dir / "bad.txt") == 2);
}

TEST_CASE("the example sweeps in experiments/ablations read and expand", "[sweep]") {
  const fs::path src = adfw::test::source_root();
  const SweepSpec coreset = read_sweep(src / "experiments" / "ablations" / "coreset_ratio.toml");
  CHECK(coreset.name == "patchcore-coreset");
  CHECK(expand(coreset, fake_launch("/bin/true")).size() == 15 * 3 * 3);
  CHECK(coreset.slurm.gpus == "1");
  CHECK(coreset.reproduces.table == "Table 6");
  const SweepSpec demo = read_sweep(src / "experiments" / "ablations" / "demo_layers.toml");
  const auto runs = expand(demo, fake_launch("/bin/true"));
  REQUIRE(runs.size() == 8);
  CHECK(runs[0].experiment == "padim");
  CHECK_FALSE(demo.table.reference);
}
