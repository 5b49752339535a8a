#include "adfw/engine/experiment.hpp"

#include <algorithm>
#include <chrono>
#include <iomanip>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>

#include <sys/resource.h>

#include "adfw/backbone/backbone.hpp"
#include "adfw/core/cpu_allocator.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/io.hpp"
#include "adfw/core/log.hpp"
#include "adfw/core/progress.hpp"
#include "adfw/core/stages.hpp"
#include "adfw/core/threads.hpp"
#include "adfw/engine/evaluate.hpp"
#include "adfw/engine/report.hpp"
#include "adfw/engine/run_folder.hpp"

namespace fs = std::filesystem;

namespace adfw {

namespace {

// What this process has used so far: user and system CPU seconds over all its threads (the figure a
// CPU budget is stated in, unlike wall time, which depends on what else runs on the machine) and
// its peak resident memory. A resumed run counts only the process that finished it.
nlohmann::json process_resources() {
  rusage u{};
  if (::getrusage(RUSAGE_SELF, &u) != 0) return nlohmann::json::object();
  const auto seconds = [](const timeval& t) { return double(t.tv_sec) + 1e-6 * double(t.tv_usec); };
  return {{"cpu_user_seconds", seconds(u.ru_utime)},
          {"cpu_system_seconds", seconds(u.ru_stime)},
          {"peak_rss_mb", double(u.ru_maxrss) / 1024.0}};  // ru_maxrss is in KiB on Linux
}

}  // namespace

std::unique_ptr<Loader> FitContext::loader(const std::vector<SampleInfo>& samples, LoaderOptions options,
                                           SampleHook hook) const {
  options.num_workers = run.loader_workers;
  return std::make_unique<Loader>(samples, transforms, options, std::move(hook));
}

ExperimentOptions read_experiment(const LoadedConfig& config) {
  ExperimentOptions e;
  read_options(e, config.table, "");
  if (e.method.empty())
    throw ConfigError((config.sources.file.empty() ? std::string() : config.sources.file.string() + ": ") +
                      "method: missing [method] table with a 'type' (see adfw list method)");
  if (e.name.empty()) e.name = config.sources.file.stem().string();
  if (e.name.empty()) e.name = "experiment";
  return e;
}

torch::Device resolve_device(const std::string& name) {
  const bool cuda = torch::cuda::is_available();
  if (name == "cuda") {
    if (!cuda) throw ConfigError("device = \"cuda\" but this LibTorch build has no usable CUDA device; use \"auto\" or \"cpu\"");
    return torch::Device(torch::kCUDA);
  }
  if (name == "auto" && cuda) return torch::Device(torch::kCUDA);
  return torch::Device(torch::kCPU);
}

std::vector<SampleInfo> limit_samples(std::vector<SampleInfo> samples, int64_t n, uint64_t seed) {
  if (n <= 0 || static_cast<int64_t>(samples.size()) <= n) return samples;
  // Shuffle each label group, then take from both in proportion (at least one of each when
  // both exist) so a shrunken test set can still be scored.
  std::vector<SampleInfo> normal, anomalous;
  for (auto& s : samples) (s.label ? anomalous : normal).push_back(std::move(s));
  std::mt19937_64 rng(seed);
  std::shuffle(normal.begin(), normal.end(), rng);
  std::shuffle(anomalous.begin(), anomalous.end(), rng);
  const double total = double(normal.size() + anomalous.size());
  int64_t n_anom = anomalous.empty() ? 0 : std::max<int64_t>(1, std::llround(n * anomalous.size() / total));
  int64_t n_norm = std::min<int64_t>(normal.size(), n - n_anom);
  if (!normal.empty() && n_norm == 0) {
    n_norm = 1;
    n_anom = std::max<int64_t>(0, n - 1);
  }
  n_anom = std::min<int64_t>(anomalous.size(), n_anom);
  std::vector<SampleInfo> out(normal.begin(), normal.begin() + n_norm);
  out.insert(out.end(), anomalous.begin(), anomalous.begin() + n_anom);
  std::sort(out.begin(), out.end(), [](const SampleInfo& a, const SampleInfo& b) { return a.path < b.path; });
  return out;
}

namespace {

TransformOptions resolve_input(const ExperimentOptions& e, const Method& method) {
  TransformOptions t = e.input;
  if (t.normalize == "auto") {
    const std::string wanted = method.normalization();
    t.normalize = wanted.empty() ? "imagenet" : wanted;
  }
  return t;
}

}  // namespace

void check_input_size(const ExperimentOptions& e, const Method& method) {
  const Backbone* b = method.backbone();
  if (!b) return;
  // The images reach the method at the crop size, else at the resize size; a decoded size is only
  // known per image (the backbone's forward checks those).
  if (!e.input.center_crop.empty())
    backbone::check_input_size(*b, e.input.center_crop.height, e.input.center_crop.width, "input.center_crop",
                               "method.backbone");
  else if (!e.input.resize.empty())
    backbone::check_input_size(*b, e.input.resize.height, e.input.resize.width, "input.resize", "method.backbone");
}

namespace {

nlohmann::json run_in_folder(const ExperimentOptions& e, const std::string& resolved_config, const RunFolder& folder,
                             const RunRequest& req, int threads) {
  RunContext ctx;
  ctx.dir = folder.dir();
  ctx.seeds.experiment = static_cast<uint64_t>(e.seed);
  ctx.device = resolve_device(e.device);
  ctx.threads = threads;
  ctx.loader_workers = e.loader_workers;
  ctx.limits = e.limits;
  ctx.resume = req.resume;

  auto dataset = e.data.make();
  log_info("data: " + dataset->describe());
  std::vector<SampleInfo> train = limit_samples(dataset->samples(Split::train), e.limits.train_images,
                                                ctx.seeds.sampling());
  std::vector<SampleInfo> test = limit_samples(dataset->samples(Split::test), e.limits.test_images,
                                               derive_seed(ctx.seeds.experiment, "test_subset"));
  std::vector<SampleInfo> val = dataset->samples(Split::val);

  auto method = e.method.make();
  check_input_size(e, *method);
  FitContext fit{ctx, train, val, test, resolve_input(e, *method)};
  log_info("method: " + e.method.type() + " on " + std::to_string(train.size()) + " training images, device " +
           ctx.device.str() + ", " + std::to_string(threads) + " threads");
  // --trace: every stage of the run on a timeline, written when the run ends (also when it fails).
  struct TraceFile {
    std::filesystem::path path;
    ~TraceFile() {
      if (path.empty()) return;
      try {
        Trace::write(path);
        log_info("trace: " + path.string() + " (open in https://ui.perfetto.dev or chrome://tracing)");
      } catch (const std::exception& ex) {
        log_warn(std::string("could not write the trace: ") + ex.what());
      }
    }
  } trace_file;
  if (req.trace) {
    Trace::start();
    trace_file.path = folder.file("trace.json");
  }
  const auto t0 = std::chrono::steady_clock::now();
  // Training stages (waits for batches, steps, checkpoints, validation, and the loader workers'
  // batches and synthesis): whether loading keeps ahead of the optimiser shows in
  // timing.fit_stages.train_wait_for_batch.
  StageTimes::start();
  method->fit(fit);
  const std::map<std::string, StageTotals> fit_stages = StageTimes::stop();
  const double fit_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  nlohmann::json fit_stage_json = nlohmann::json::object();
  for (const auto& [name, t] : fit_stages)
    fit_stage_json[name] = {{"seconds", t.seconds}, {"calls", t.calls}};
  if (auto w = fit_stages.find("train_wait_for_batch"); w != fit_stages.end() && fit_seconds > 0) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(2) << "training waited " << w->second.seconds << " s for batches ("
       << std::setprecision(1) << 100.0 * w->second.seconds / fit_seconds << " % of fitting, "
       << w->second.calls << " batches)";
    log_info(os.str());
  }
  // The fitted model beside the config that built it: loading it into a method made from that
  // config (Method::load_state) gives this run's maps without fitting again.
  save_state_dict(method->state(), folder.file("model.safetensors"),
                  {{"format", "adfw-model/1"},
                   {"method", e.method.type()},
                   {"config", resolved_config},
                   {"summary", method->summary().dump()}});
  // Fitting's freed blocks are of no use to scoring, and held on they would add to the peak of
  // the phases after it, whose own allocations (some not LibTorch's) differ.
  release_cached_cpu_memory();

  // Inference over the test split.
  LoaderOptions lo;
  lo.batch_size = e.eval.batch_size;
  auto loader = fit.loader(test, lo);
  loader->start_epoch(0);
  EvalInputs in;
  Progress bar("test", static_cast<int64_t>(test.size()), "img");
  const auto t1 = std::chrono::steady_clock::now();
  // Test-time stages: waiting for decoded batches, the method's predict (with the stages methods
  // time inside it: backbone, nearest_neighbour, postprocess, ...) and collecting the maps.
  StageTimes::start();
  for (;;) {
    std::optional<Batch> batch;
    {
      ScopedStage s("data");
      batch = loader->next();
    }
    if (!batch) break;
    Prediction p;
    {
      ScopedStage s("predict");
      p = method->predict(*batch, ctx);
    }
    {
      ScopedStage s("collect");
      in.add(*batch, p);
    }
    bar.step(batch->size());
  }
  const std::map<std::string, StageTotals> stages = StageTimes::stop();
  bar.finish();
  release_cached_cpu_memory();  // the evaluation's curves and maps are mostly std::vectors
  const double test_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  nlohmann::json stage_json = nlohmann::json::object();
  std::string stage_line;
  for (const auto& [name, t] : stages) {
    stage_json[name] = {{"seconds", t.seconds}, {"calls", t.calls},
                        {"ms_per_image", test.empty() ? 0.0 : 1000.0 * t.seconds / double(test.size())}};
    std::ostringstream os;
    os << std::fixed << std::setprecision(1) << (test.empty() ? 0.0 : 1000.0 * t.seconds / double(test.size()));
    stage_line += (stage_line.empty() ? "" : ", ") + name + " " + os.str();
  }
  if (!stage_line.empty()) log_info("test stages (ms per image): " + stage_line);

  nlohmann::json protocol;
  protocol["split"] = "test";
  protocol["test_images"] = test.size();
  protocol["train_images"] = train.size();
  // A manifest from `adfw data split` names its protocol (a test set smaller than the official one).
  protocol["data"] = dataset->describe();
  // What training could learn about anomalies (mixed supervision, e.g. KSDD2's N positives or a
  // split of `adfw data split`): N = pixel-labelled anomalous training images. Tables plot metrics
  // against protocol.n_pixel_labelled ("unsupervised" when training has no anomalous image).
  int64_t pixel_labelled = 0, image_labelled = 0;
  for (const auto& s : train)
    if (s.label) ++(s.supervision == Supervision::pixel_mask ? pixel_labelled : image_labelled);
  protocol["train_anomalous_pixel_labelled"] = pixel_labelled;
  protocol["train_anomalous_image_labelled"] = image_labelled;
  protocol["supervision"] = pixel_labelled + image_labelled == 0 ? "unsupervised"
                            : image_labelled == 0                ? "fully supervised"
                            : pixel_labelled == 0                ? "weakly supervised"
                                                                 : "mixed supervision";
  if (pixel_labelled + image_labelled == 0) protocol["n_pixel_labelled"] = "unsupervised";
  else protocol["n_pixel_labelled"] = pixel_labelled;
  const nlohmann::json msum = method->summary();
  protocol["checkpoint"] = msum.value("checkpoint", "final model (no checkpoint selection)");
  if (msum.value("selected_on_test", false)) {
    protocol["selected_on_test"] = true;
    log_warn("the weights were selected on the test set (trainer.selection = \"test\"): the metrics are "
             "optimistic and flagged as such");
  }
  protocol["threshold_source"] =
      "none fitted: AUROC/AP/AUPRO are threshold-free; F1-max is the best over all thresholds on the test set "
      "(an oracle figure, as in the literature)";
  protocol["fpr_limit"] = e.eval.fpr_limit;
  protocol["seed"] = e.seed;
  nlohmann::json timing = {{"fit_seconds", fit_seconds},
                           {"test_seconds", test_seconds},
                           {"test_images_per_second", test_seconds > 0 ? test.size() / test_seconds : 0.0},
                           {"test_stages", stage_json},
                           {"fit_stages", fit_stage_json}};
  const auto eval_start = std::chrono::steady_clock::now();
  nlohmann::json metrics = evaluate_and_report(in, e.eval, folder.dir(), protocol);
  timing["evaluation_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - eval_start).count();
  // After the evaluation, so that the figures cover the whole run; the report writes after this.
  const nlohmann::json resources = process_resources();
  for (const auto& [k, v] : resources.items()) timing[k] = v;
  if (!resources.empty()) {
    std::ostringstream os;
    os << std::fixed << std::setprecision(1) << "CPU " << (timing["cpu_user_seconds"].get<double>() +
                                                            timing["cpu_system_seconds"].get<double>()) / 60.0
       << " min (user + system), peak RSS " << std::setprecision(2) << timing["peak_rss_mb"].get<double>() / 1024.0
       << " GiB";
    log_info(os.str());
  }
  metrics["method"] = method->summary();
  metrics["timing"] = timing;
  metrics["experiment"] = e.name;
  metrics["run_id"] = folder.id();
  metrics["run_folder"] = folder.dir().string();
  if (!e.reference.table.empty()) {
    std::ostringstream os;
    os << toml::json_formatter(e.reference.table);
    metrics["reference"] = nlohmann::json::parse(os.str());
  }
  write_json(folder.file("metrics.json"), metrics);
  // The report only reads the files above; a failure to write it leaves the run's results intact
  // (`adfw report <run folder>` writes it again).
  try {
    report::write_run_report(folder.dir());
  } catch (const std::exception& ex) {
    log_warn(std::string("report.html not written: ") + ex.what());
  }
  return metrics;
}

}  // namespace

nlohmann::json run_experiment(const LoadedConfig& config, const RunRequest& req) {
  ExperimentOptions e = read_experiment(config);
  const int threads = configure_threads(req.threads >= 0 ? req.threads : e.threads);
  const std::string output = req.output.empty() ? e.output : req.output;
  RunFolder folder = RunFolder::open(output, e.name, req.run_id, req.resume);
  set_log_file(folder.file("log.txt"));
  // The resolved config (every default filled in) is what ran: `adfw run <folder>/config.toml`
  // repeats the run as is.
  const std::string resolved = "# resolved by adfw: every option of this run, defaults included\n" +
                               to_toml_string(write_options(e));
  write_file_atomic(folder.file("config.toml"), resolved);
  write_json(folder.file("env.json"), environment_info(resolve_device(e.device).str(), threads, e.seed));
  folder.set_state(RunState::running);
  log_info("run folder: " + folder.dir().string());
  try {
    nlohmann::json m = run_in_folder(e, resolved, folder, req, threads);
    folder.set_state(RunState::done);
    set_log_file({});
    return m;
  } catch (const std::exception& ex) {
    folder.set_state(RunState::failed, ex.what());
    log(LogLevel::error, std::string("run failed: ") + ex.what());
    set_log_file({});
    throw;
  }
}

}  // namespace adfw
