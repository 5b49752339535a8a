#include "adfw/train/trainer.hpp"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <numeric>
#include <sstream>

#include "adfw/core/checkpoint.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/io.hpp"
#include "adfw/core/log.hpp"
#include "adfw/core/progress.hpp"
#include "adfw/core/rng.hpp"
#include "adfw/core/stages.hpp"
#include "adfw/metric/curves.hpp"

namespace fs = std::filesystem;

namespace adfw {

double SchedulerOptions::factor(int64_t t, int64_t total) const {
  double f = 1.0;
  if (kind == "multistep") {
    for (double m : milestones)
      if (t >= static_cast<int64_t>(std::floor(m * static_cast<double>(total)))) f *= gamma;
  } else if (kind == "step") {
    f = std::pow(gamma, static_cast<double>(t / std::max<int64_t>(1, step_every)));
  } else if (kind == "cosine") {
    const double p = total > 0 ? std::min(1.0, static_cast<double>(t) / static_cast<double>(total)) : 1.0;
    f = final_factor + (1.0 - final_factor) * 0.5 * (1.0 + std::cos(M_PI * p));
  }
  if (warmup > 0 && t < warmup)
    f *= warmup_start + (1.0 - warmup_start) * static_cast<double>(t) / static_cast<double>(warmup);
  return f;
}

std::pair<int64_t, int64_t> effective_length(const TrainerOptions& o, const LimitsOptions& limits) {
  int64_t epochs = o.epochs;
  if (limits.epochs > 0) epochs = std::min(epochs, limits.epochs);
  int64_t steps = o.steps;
  if (limits.steps > 0) steps = steps > 0 ? std::min(steps, limits.steps) : limits.steps;
  return {epochs, steps};
}

nlohmann::json TrainSummary::to_json() const {
  nlohmann::json j;
  j["epochs"] = epochs;
  j["steps"] = steps;
  if (resumed_from_step >= 0) j["resumed_from_step"] = resumed_from_step;
  j["train_seconds"] = seconds;
  j["train_images_per_second"] = images_per_second;
  j["checkpoint"] = selection;
  j["selected_epoch"] = selected_epoch;
  if (selected_on_test) {
    j["selected_on_test"] = true;
    j["selected_test_image_auroc"] = selected_value;
  }
  nlohmann::json losses = nlohmann::json::object();
  for (const auto& [k, v] : final_losses) losses[k] = v;
  j["final_losses"] = losses;
  return j;
}

namespace {

// ---- optimiser ---------------------------------------------------------------------------

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const TrainerOptions& o, const std::vector<ParamGroup>& groups,
                                                        std::vector<double>& base_lr) {
  const OptimizerOptions& oo = o.optimizer;
  if (oo.betas.size() != 2)
    throw ConfigError("trainer.optimizer.betas: expected two values [beta1, beta2], got " +
                      std::to_string(oo.betas.size()));
  std::vector<std::string> names;
  for (const auto& g : groups) names.push_back(g.name);
  for (const auto& ov : o.groups)
    if (std::find(names.begin(), names.end(), ov.name) == names.end())
      throw ConfigError("trainer.groups: unknown parameter group '" + ov.name + "'." + suggest_from(ov.name, names));

  std::vector<torch::optim::OptimizerParamGroup> pgs;
  base_lr.clear();
  for (const auto& g : groups) {
    double lr = g.lr > 0 ? g.lr : oo.lr;
    double wd = g.weight_decay >= 0 ? g.weight_decay : oo.weight_decay;
    for (const auto& ov : o.groups)
      if (ov.name == g.name) {
        if (ov.lr > 0) lr = ov.lr;
        if (ov.weight_decay >= 0) wd = ov.weight_decay;
      }
    base_lr.push_back(lr);
    std::unique_ptr<torch::optim::OptimizerOptions> opts;
    if (oo.kind == "sgd") {
      opts = std::make_unique<torch::optim::SGDOptions>(
          torch::optim::SGDOptions(lr).momentum(oo.momentum).nesterov(oo.nesterov).weight_decay(wd));
    } else if (oo.kind == "adam") {
      opts = std::make_unique<torch::optim::AdamOptions>(
          torch::optim::AdamOptions(lr).betas({oo.betas[0], oo.betas[1]}).eps(oo.eps).weight_decay(wd));
    } else {
      opts = std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(lr).betas({oo.betas[0], oo.betas[1]}).eps(oo.eps).weight_decay(wd));
    }
    pgs.emplace_back(g.params, std::move(opts));
  }
  if (oo.kind == "sgd") return std::make_unique<torch::optim::SGD>(pgs, torch::optim::SGDOptions(oo.lr));
  if (oo.kind == "adam") return std::make_unique<torch::optim::Adam>(pgs, torch::optim::AdamOptions(oo.lr));
  return std::make_unique<torch::optim::AdamW>(pgs, torch::optim::AdamWOptions(oo.lr));
}

// ---- checkpoints -------------------------------------------------------------------------

StateDict gather_state(const TrainSpec& spec) {
  StateDict all;
  for (const auto& [name, m] : spec.modules)
    for (auto& [k, v] : state_dict_of(*m)) all[name + "." + k] = v.detach().to(torch::kCPU).clone();
  return all;
}

void restore_state(TrainSpec& spec, const StateDict& all, const std::string& source) {
  for (auto& [name, m] : spec.modules) {
    StateDict part;
    const std::string prefix = name + ".";
    for (const auto& [k, v] : all)
      if (k.compare(0, prefix.size(), prefix) == 0) part[k.substr(prefix.size())] = v;
    load_into(*m, part, source + " [" + name + "]");
  }
}

struct Position {
  int64_t epoch = 0;  // epoch in progress
  int64_t batch = 0;  // next batch of that epoch
  int64_t step = 0;   // optimiser steps done
  double best_value = 0;
  int64_t best_epoch = -1;
  bool has_best = false;
};

struct CheckpointFiles {
  fs::path dir;
  fs::path state() const { return dir / "state.json"; }
  fs::path model(int64_t step) const { return dir / ("model-" + std::to_string(step) + ".safetensors"); }
  fs::path optim(int64_t step) const { return dir / ("optimizer-" + std::to_string(step) + ".pt"); }
  fs::path best() const { return dir / "best.safetensors"; }
};

void write_checkpoint(const CheckpointFiles& f, TrainSpec& spec, torch::optim::Optimizer& opt, const Position& p,
                      uint64_t seed) {
  ScopedStage stage("train_checkpoint");
  fs::create_directories(f.dir);
  save_state_dict(gather_state(spec), f.model(p.step), {{"step", std::to_string(p.step)}});
  {
    torch::serialize::OutputArchive a;
    opt.save(a);
    const fs::path tmp = f.optim(p.step).string() + ".tmp";
    a.save_to(tmp.string());
    fs::rename(tmp, f.optim(p.step));
  }
  nlohmann::json s = {{"epoch", p.epoch},           {"batch", p.batch},         {"step", p.step},
                      {"seed", seed},                {"has_best", p.has_best},   {"best_value", p.best_value},
                      {"best_epoch", p.best_epoch},  {"model", f.model(p.step).filename().string()},
                      {"optimizer", f.optim(p.step).filename().string()},
                      {"rng", "every draw is seeded by (seed, step) and (seed, epoch, sample index)"}};
  write_file_atomic(f.state(), s.dump(2) + "\n");
  // Only now that state.json names the new files are the old ones unreferenced.
  for (const auto& e : fs::directory_iterator(f.dir)) {
    const std::string n = e.path().filename().string();
    const bool old_model = n.rfind("model-", 0) == 0 && e.path() != f.model(p.step);
    const bool old_optim = n.rfind("optimizer-", 0) == 0 && e.path() != f.optim(p.step);
    if (old_model || old_optim) fs::remove(e.path());
  }
}

bool read_checkpoint(const CheckpointFiles& f, TrainSpec& spec, torch::optim::Optimizer& opt, Position& p,
                     uint64_t seed) {
  if (!fs::exists(f.state())) return false;
  nlohmann::json s;
  try {
    s = nlohmann::json::parse(read_file(f.state()));
  } catch (const nlohmann::json::exception& e) {
    throw Error(f.state().string() + ": not a readable checkpoint state (" + e.what() +
                "); remove the checkpoint folder to start the training over");
  }
  if (s.value("seed", seed) != seed)
    throw Error(f.state().string() + ": checkpoint was written with seed " + std::to_string(s.value("seed", 0ull)) +
                " but this run has seed " + std::to_string(seed) + "; resume with the run's own config.toml");
  p.epoch = s.at("epoch");
  p.batch = s.at("batch");
  p.step = s.at("step");
  p.has_best = s.value("has_best", false);
  p.best_value = s.value("best_value", 0.0);
  p.best_epoch = s.value("best_epoch", int64_t(-1));
  const fs::path model = f.dir / s.at("model").get<std::string>();
  const fs::path optim = f.dir / s.at("optimizer").get<std::string>();
  restore_state(spec, load_state_dict(model), model.string());
  try {
    torch::serialize::InputArchive a;
    a.load_from(optim.string());
    opt.load(a);
  } catch (const c10::Error& e) {
    throw Error(optim.string() + ": cannot read the optimiser state (" + std::string(e.what_without_backtrace()) +
                "); remove the checkpoint folder to start the training over");
  }
  return true;
}

// ---- train_log.csv -----------------------------------------------------------------------

struct TrainLog {
  fs::path path;
  std::vector<std::string> columns;  // loss term names, fixed at the first step
  std::vector<std::string> rows;

  void add(int64_t step, int64_t epoch, double lr, const LossValues& lv, double total) {
    if (columns.empty())
      for (const auto& [k, v] : lv.terms) columns.push_back(k);
    std::ostringstream os;
    os << std::setprecision(9) << step << ',' << epoch << ',' << lr << ',' << total;
    for (const auto& c : columns) {
      double v = std::nan("");
      for (const auto& [k, x] : lv.terms)
        if (k == c) v = x;
      os << ',' << v;
    }
    rows.push_back(os.str());
  }
  void flush() const {
    if (path.empty()) return;
    std::string s = "step,epoch,lr,loss";
    for (const auto& c : columns) s += "," + c;
    s += "\n";
    for (const auto& r : rows) s += r + "\n";
    write_file_atomic(path, s);
  }
  // Keeps the rows of steps <= `step` (a resumed run repeats the later ones).
  void load(int64_t step) {
    if (path.empty() || !fs::exists(path)) return;
    std::istringstream in(read_file(path));
    std::string line;
    if (!std::getline(in, line)) return;
    std::istringstream hs(line);
    std::string c;
    int i = 0;
    while (std::getline(hs, c, ','))
      if (i++ >= 4) columns.push_back(c);
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      if (std::stoll(line.substr(0, line.find(','))) <= step) rows.push_back(line);
    }
  }
};

std::string fmt(double v) {
  std::ostringstream os;
  os << std::setprecision(4) << v;
  return os.str();
}

void set_modules_train(TrainSpec& spec, bool on) {
  for (auto& [n, m] : spec.modules) m->train(on);
}

struct AutocastGuard {
  bool on = false;
  explicit AutocastGuard(bool enable) : on(enable) {
    if (!on) return;
#if (TORCH_VERSION_MAJOR > 2) || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
#endif
  }
  ~AutocastGuard() {
    if (!on) return;
#if (TORCH_VERSION_MAJOR > 2) || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
    at::autocast::set_enabled(false);
#endif
    at::autocast::clear_cache();
  }
};

std::vector<SampleInfo> hold_out(std::vector<SampleInfo>& train, double fraction, uint64_t seed) {
  std::vector<std::size_t> idx(train.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 g(derive_seed(seed, "validation_split"));
  std::shuffle(idx.begin(), idx.end(), g);
  const std::size_t n_val =
      std::min(train.size() - 1, std::max<std::size_t>(1, static_cast<std::size_t>(std::llround(fraction * train.size()))));
  std::vector<char> is_val(train.size(), 0);
  for (std::size_t i = 0; i < n_val; ++i) is_val[idx[i]] = 1;
  std::vector<SampleInfo> keep, val;
  for (std::size_t i = 0; i < train.size(); ++i) (is_val[i] ? val : keep).push_back(train[i]);
  train = std::move(keep);
  return val;
}

// Where one stage keeps its files and which names its random streams derive from. A single-stage
// run uses the historical names (checkpoint/, train_log.csv, "train_step"), so its checkpoints and
// draws are unchanged; stage s of a multi-stage run uses checkpoint/<s>/, train_log_<s>.csv and
// streams salted with "stage/<s>/".
struct StagePlace {
  fs::path checkpoint_dir;
  fs::path log;
  std::string salt;
  std::string label = "train";
};

StagePlace single_stage_place(const RunContext& run) {
  return {run.dir.empty() ? fs::path() : run.dir / "checkpoint", run.dir.empty() ? fs::path() : run.dir / "train_log.csv",
          "", "train"};
}

TrainSummary train_in_place(FitContext& ctx, const TrainerOptions& o, TrainSpec& spec, const StagePlace& place);

}  // namespace

TrainSummary train(FitContext& ctx, const TrainerOptions& o, TrainSpec& spec) {
  return train_in_place(ctx, o, spec, single_stage_place(ctx.run));
}

std::vector<TrainSummary> train_stages(FitContext& ctx, std::vector<TrainStage>& stages) {
  if (stages.empty()) throw Error("trainer: no training stages were given");
  std::vector<std::string> names;
  for (const auto& st : stages) {
    if (st.name.empty() || st.name.find_first_of("/\\. ") != std::string::npos)
      throw Error("trainer: stage name '" + st.name + "' must be a non-empty word (it names files)");
    if (std::find(names.begin(), names.end(), st.name) != names.end())
      throw Error("trainer: two stages are named '" + st.name + "'");
    names.push_back(st.name);
  }
  const RunContext& run = ctx.run;
  std::vector<TrainSummary> out;
  for (auto& st : stages) {
    if (st.prepare) st.prepare();
    StagePlace place;
    if (!run.dir.empty()) {
      place.checkpoint_dir = run.dir / "checkpoint" / st.name;
      place.log = run.dir / ("train_log_" + st.name + ".csv");
    }
    place.salt = "stage/" + st.name + "/";
    place.label = st.name;
    log_info("training stage '" + st.name + "'");
    // A finished stage resumes as a no-op that restores its final weights, so a run resumed in a
    // later stage starts that stage from exactly the weights the uninterrupted run had.
    out.push_back(train_in_place(ctx, st.options, st.spec, place));
  }
  return out;
}

namespace {

TrainSummary train_in_place(FitContext& ctx, const TrainerOptions& o, TrainSpec& spec, const StagePlace& place) {
  if (!spec.step) throw Error("trainer: the method gave no training step");
  if (spec.groups.empty()) throw Error("trainer: the method gave no parameters to train");
  const RunContext& run = ctx.run;
  const uint64_t seed = run.seeds.experiment;
  auto [epochs, step_cap] = effective_length(o, run.limits);

  std::vector<SampleInfo> train_set = ctx.train;
  std::vector<SampleInfo> val_set = ctx.val;
  if (o.selection == "val" && val_set.empty()) {
    if (train_set.size() < 2)
      throw ConfigError("trainer.selection = \"val\" needs at least two training images to hold one out");
    val_set = hold_out(train_set, o.val_fraction, seed);
  }
  if (o.selection == "test" && ctx.test.empty())
    throw ConfigError("trainer.selection = \"test\" needs the test split; it is only available through adfw run");
  if (o.selection == "test" && !spec.score) throw Error("trainer.selection = \"test\": this method cannot score images");
  if (train_set.empty()) throw Error("trainer: no training images");

  LoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.shuffle = o.shuffle;
  lo.drop_last = o.drop_last && static_cast<int64_t>(train_set.size()) >= o.batch_size;
  lo.augment = o.augment;
  lo.cache = o.cache;
  lo.seed = place.salt.empty() ? run.seeds.data_order() : derive_seed(run.seeds.data_order(), place.salt + "data_order");
  lo.sampler = spec.sampler;
  auto loader = ctx.loader(train_set, lo, spec.hook);
  const int64_t per_epoch = loader->num_batches();
  int64_t total_steps = epochs * per_epoch;
  if (step_cap > 0) total_steps = std::min(total_steps, step_cap);
  const int64_t total_epochs = per_epoch > 0 ? (total_steps + per_epoch - 1) / per_epoch : 0;
  const bool by_step = o.scheduler.unit == "step";
  const int64_t sched_total = by_step ? total_steps : total_epochs;

  std::vector<double> base_lr;
  auto optimizer = make_optimizer(o, spec.groups, base_lr);

  CheckpointFiles files{place.checkpoint_dir};
  TrainLog log_csv{place.log, {}, {}};
  Position pos;
  TrainSummary summary;
  if (run.resume && !files.dir.empty() && read_checkpoint(files, spec, *optimizer, pos, seed)) {
    summary.resumed_from_step = pos.step;
    log_csv.load(pos.step);
    log_info("resuming training at step " + std::to_string(pos.step) + " (epoch " + std::to_string(pos.epoch + 1) +
             ", batch " + std::to_string(pos.batch) + ")");
  }

  const bool amp = o.amp && run.device.is_cuda();
  StateDict best_in_memory;  // without a run folder
  auto keep_best = [&](int64_t epoch) {
    if (files.dir.empty()) best_in_memory = gather_state(spec);
    else {
      fs::create_directories(files.dir);
      save_state_dict(gather_state(spec), files.best(), {{"epoch", std::to_string(epoch)}});
    }
  };
  auto validate = [&](int64_t epoch) {
    ScopedStage stage("train_validate");
    torch::NoGradGuard ng;
    set_modules_train(spec, false);
    double value = 0;
    if (o.selection == "val") {
      LoaderOptions vo = lo;
      vo.shuffle = false;
      vo.drop_last = false;
      vo.augment = false;
      vo.sampler = "all";
      auto vl = ctx.loader(val_set, vo, spec.hook);
      vl->start_epoch(0);
      double sum = 0;
      int64_t n = 0, b = 0;
      while (auto batch = vl->next()) {
        std::mt19937_64 rng(derive_seed(seed, place.salt + "validation", static_cast<uint64_t>(b++)));
        torch::manual_seed(derive_seed(seed, place.salt + "validation/torch", static_cast<uint64_t>(b)));
        sum += spec.step(*batch, rng, -1).total.item<double>() * batch->size();
        n += batch->size();
      }
      value = n > 0 ? sum / n : 0;
      log_info("epoch " + std::to_string(epoch + 1) + ": validation loss " + fmt(value));
      if (!pos.has_best || value < pos.best_value) {
        pos.has_best = true;
        pos.best_value = value;
        pos.best_epoch = epoch;
        keep_best(epoch);
      }
    } else {
      LoaderOptions vo;
      vo.batch_size = o.batch_size;
      auto tl = ctx.loader(ctx.test, vo);
      tl->start_epoch(0);
      std::vector<float> scores;
      std::vector<int64_t> labels;
      while (auto batch = tl->next()) {
        torch::Tensor s = spec.score(*batch).to(torch::kCPU).to(torch::kFloat32).contiguous();
        for (int64_t i = 0; i < s.numel(); ++i) {
          scores.push_back(s.data_ptr<float>()[i]);
          labels.push_back(batch->labels[i].item<int64_t>());
        }
      }
      metric::BinaryRequest req;
      req.ap = req.f1 = false;
      value = metric::binary_metrics(scores, labels, req).auroc;
      log_warn("epoch " + std::to_string(epoch + 1) + ": test image AUROC " + fmt(value) +
               " (selection on the test set: optimistic)");
      if (!pos.has_best || value > pos.best_value) {
        pos.has_best = true;
        pos.best_value = value;
        pos.best_epoch = epoch;
        keep_best(epoch);
      }
    }
    set_modules_train(spec, true);
  };

  Progress bar(place.label, total_steps, "step");
  if (pos.step > 0) bar.step(pos.step);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t images = 0;
  const int64_t first_step = pos.step;
  LossValues last;
  set_modules_train(spec, true);
  while (pos.step < total_steps && pos.epoch < total_epochs) {
    if (spec.on_epoch) spec.on_epoch(pos.epoch);
    loader->start_epoch(pos.epoch, pos.batch);
    while (pos.step < total_steps) {
      std::optional<Batch> batch;
      {
        // Time the trainer waits for the loader: ~0 when loading and synthesis in the workers
        // keep ahead of the steps (timing.fit_stages in metrics.json; `adfw run --trace`).
        ScopedStage wait("train_wait_for_batch");
        batch = loader->next();
      }
      if (!batch) break;
      ScopedStage step_stage("train_step");
      const int64_t unit = by_step ? pos.step : pos.epoch;
      const double factor = o.scheduler.factor(unit, sched_total);
      auto& groups = optimizer->param_groups();
      for (std::size_t g = 0; g < groups.size(); ++g) groups[g].options().set_lr(base_lr[g] * factor);

      std::mt19937_64 rng(derive_seed(seed, place.salt + "train_step", static_cast<uint64_t>(pos.step)));
      torch::manual_seed(derive_seed(seed, place.salt + "train_step/torch", static_cast<uint64_t>(pos.step)));
      optimizer->zero_grad();
      LossValues lv;
      {
        AutocastGuard ac(amp);
        lv = spec.step(*batch, rng, pos.step);
      }
      for (const auto& [name, v] : lv.terms)
        if (!std::isfinite(v))
          throw Error("training stopped at step " + std::to_string(pos.step + 1) + " (epoch " +
                      std::to_string(pos.epoch + 1) + "): loss term " + name + " is " + fmt(v) +
                      ". Lower the learning rate (trainer.optimizer.lr), enable trainer.clip_grad_norm, or check the "
                      "inputs of that term");
      const double total = lv.total.item<double>();
      if (!std::isfinite(total))
        throw Error("training stopped at step " + std::to_string(pos.step + 1) + ": the total loss is " + fmt(total));
      lv.total.backward();
      if (o.clip_grad_norm > 0) {
        std::vector<torch::Tensor> params;
        for (auto& g : groups)
          for (auto& p : g.params()) params.push_back(p);
        torch::nn::utils::clip_grad_norm_(params, o.clip_grad_norm);
      }
      optimizer->step();
      ++pos.step;
      ++pos.batch;
      images += batch->size();
      log_csv.add(pos.step, pos.epoch + 1, base_lr.empty() ? 0 : base_lr[0] * factor, lv, total);
      last = lv;
      std::string status = "ep " + std::to_string(pos.epoch + 1) + "/" + std::to_string(total_epochs) + " loss " + fmt(total);
      for (const auto& [k, v] : lv.terms) status += " " + k.substr(0, k.find(':')) + " " + fmt(v);
      bar.step(1, status);
      const bool epoch_done = pos.batch >= per_epoch || pos.step >= total_steps;
      if (epoch_done) break;
      if (o.checkpoint_every > 0 && pos.step % o.checkpoint_every == 0 && !files.dir.empty()) {
        log_csv.flush();  // first: the log must hold every step a checkpoint claims
        write_checkpoint(files, spec, *optimizer, pos, seed);
      }
    }
    // End of the epoch, or of the run part-way through one (a step cap): the checkpoint then
    // keeps the position inside the epoch.
    const bool epoch_finished = pos.batch >= per_epoch;
    const int64_t current = pos.epoch;
    if (epoch_finished) {
      ++pos.epoch;
      pos.batch = 0;
    }
    const bool run_finished = pos.step >= total_steps || pos.epoch >= total_epochs;
    if (o.selection != "last" && ((epoch_finished && (current + 1) % o.validate_every == 0) || run_finished))
      validate(current);
    if (!files.dir.empty()) {
      log_csv.flush();
      write_checkpoint(files, spec, *optimizer, pos, seed);
    }
    if (!epoch_finished) break;
  }
  bar.finish();
  set_modules_train(spec, false);
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  summary.images_per_second = summary.seconds > 0 ? images / summary.seconds : 0;
  summary.epochs = pos.epoch;
  summary.steps = pos.step;
  summary.final_losses = last.terms;
  if (pos.step > first_step) summary.final_losses.insert(summary.final_losses.begin(), {"total", last.total.item<double>()});

  if (total_steps == 0) {
    summary.selection = "initial weights (no training: trainer.epochs = 0)";
    summary.selected_epoch = -1;
  } else if (o.selection == "last") {
    summary.selection = "last step (" + std::to_string(pos.step) + ")";
    summary.selected_epoch = pos.batch > 0 ? pos.epoch : pos.epoch - 1;
  } else {
    if (pos.has_best) {
      if (!files.dir.empty() && fs::exists(files.best())) restore_state(spec, load_state_dict(files.best()), files.best().string());
      else if (!best_in_memory.empty()) restore_state(spec, best_in_memory, "best weights");
    }
    summary.selected_epoch = pos.best_epoch;
    summary.selected_value = pos.best_value;
    if (o.selection == "val") {
      summary.selection = "lowest validation loss on " + std::to_string(val_set.size()) +
                          " held-out training images (epoch " + std::to_string(pos.best_epoch + 1) + ")";
    } else {
      summary.selected_on_test = true;
      summary.selection = "SELECTED ON THE TEST SET: highest test image AUROC (epoch " +
                          std::to_string(pos.best_epoch + 1) + "); optimistic, not comparable with held-out selection";
    }
  }
  log_info("training: " + std::to_string(pos.step) + " steps, " + fmt(summary.images_per_second) + " images/s; kept " +
           summary.selection);
  return summary;
}

}  // namespace

}  // namespace adfw
