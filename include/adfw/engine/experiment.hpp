// An experiment file, as a typed options struct, and the run engine that executes it:
// data -> method.fit -> method.predict on the test split -> metrics -> run folder.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "adfw/core/config.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/data/dataset.hpp"
#include "adfw/data/transforms.hpp"
#include "adfw/method/method.hpp"
#include "adfw/metric/evaluator.hpp"

namespace adfw {

struct ExperimentOptions {
  std::string name;
  std::string description;
  int64_t seed = 0;
  int threads = 0;
  int loader_workers = 2;
  std::string device = "auto";
  std::string output = "runs";
  Slot<Dataset> data{"demo"};
  TransformOptions input;
  Slot<Method> method;
  EvalOptions eval;
  LimitsOptions limits;
  RawTable reference;

  ExperimentOptions() { input.normalize = "auto"; }

  template <class V>
  void fields(V& v) {
    v("name", name, "experiment name: the run folder is <output>/<name>/<run-id> (default: the file's stem)");
    v("description", description, "free text, copied into reports");
    v("seed", seed, "experiment seed; init, data order, augmentation and synthesis streams derive from it",
      Check::at_least(0));
    v("threads", threads, "intra-op threads for LibTorch, OpenMP and OpenBLAS (0 = all cores)", Check::at_least(0));
    v("loader_workers", loader_workers, "image decoding threads of the data loader", Check::at_least(0));
    v("device", device, "\"auto\" (CUDA when available), \"cpu\" or \"cuda\"",
      Check::one_of({"auto", "cpu", "cuda"}));
    v("output", output, "folder holding the run folders (default runs)");
    v("data", data, "the data set (see adfw list dataset)");
    v("input", input, "input pipeline: resize, crop, normalisation (\"auto\" = what the method's backbone needs)");
    v("method", method, "the method and its parts (see adfw list method)");
    v("eval", eval, "evaluation protocol");
    v("limits", limits, "caps that shrink the experiment (used by presets/smoke)");
    v("reference", reference, "published numbers to compare against, with their source (free-form)");
  }
};

/// Reads and validates an experiment; the name defaults to the file's stem.
ExperimentOptions read_experiment(const LoadedConfig& config);

/// Refuses an input size (input.center_crop, else input.resize) that the method's backbone cannot
/// take, naming the key, the value and the nearest valid sizes (a ConfigError before fitting starts).
void check_input_size(const ExperimentOptions& e, const Method& method);

/// How the command line asks for a run.
struct RunRequest {
  std::string run_id;           ///< "" = a new time-stamped id
  bool resume = false;          ///< continue the run in that folder
  int threads = -1;             ///< -1 = the experiment's setting
  std::string output;           ///< "" = the experiment's setting
  /// Write <run>/trace.json: every stage of training and testing (loader workers, waits for
  /// batches, steps, backbone, search, ...) on a timeline, in the Chrome trace format.
  bool trace = false;
};

/// Runs an experiment end to end and returns metrics.json's content.
nlohmann::json run_experiment(const LoadedConfig& config, const RunRequest& request);

/// The device named by "auto" / "cpu" / "cuda" (ConfigError when CUDA is asked for but absent).
torch::Device resolve_device(const std::string& name);

/// Deterministic subset of at most `n` samples keeping both labels represented (n = 0: all).
std::vector<SampleInfo> limit_samples(std::vector<SampleInfo> samples, int64_t n, uint64_t seed);

}  // namespace adfw
