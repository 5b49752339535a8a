// The run folder: runs/<experiment>/<run-id>/, the unit of reproducibility.
//   config.toml   fully resolved config (defaults included), runnable as is
//   env.json      versions, git commit, device, threads, BLAS, seed, host, command line
//   status.json   running | done | failed (+ error), for sweeps and resumption
//   log.txt       everything logged during the run
//   metrics.json, per_image.csv, train_log.csv, checkpoint files, maps/ ...
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace adfw {

enum class RunState { missing, running, done, failed };
const char* to_string(RunState s);

class RunFolder {
 public:
  /// Opens runs root/<experiment>/<run_id>. An empty run_id makes a new time-stamped id.
  /// A folder that already holds a run is an error unless `resume` (continue it) is set.
  static RunFolder open(const std::filesystem::path& root, const std::string& experiment,
                        const std::string& run_id, bool resume);
  /// An existing run folder (for `--resume <folder>`, tables and sweeps).
  static RunFolder existing(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path file(const std::string& name) const { return dir_ / name; }
  const std::string& id() const { return id_; }

  RunState state() const;
  void set_state(RunState s, const std::string& error = "") const;

 private:
  std::filesystem::path dir_;
  std::string id_;
};

/// Reads status.json of a run folder (missing when there is none).
RunState read_run_state(const std::filesystem::path& dir);

/// A fresh run id: YYYYmmdd-HHMMSS plus a short random suffix (no collisions in parallel sweeps).
std::string new_run_id();

/// Versions, build, device, threads, BLAS, seed, host and command line of this process.
nlohmann::json environment_info(const std::string& device, int threads, uint64_t seed);

/// Writes `j` as pretty JSON atomically.
void write_json(const std::filesystem::path& path, const nlohmann::json& j);
nlohmann::json read_json(const std::filesystem::path& path);

}  // namespace adfw
