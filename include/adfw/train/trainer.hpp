// The trainer shared by every trained method: optimiser and schedule from TOML, parameter
// groups, gradient clipping, epochs or steps, checkpoints that resume exactly, an explicit
// checkpoint-selection rule, train_log.csv, and a clear stop on a non-finite loss.
//
//   [method.trainer]
//   epochs = 700
//   batch_size = 8
//   clip_grad_norm = 0.0
//   selection = "last"                 # or "val" (held-out training images), "test" (flagged)
//   [method.trainer.optimizer]
//   kind = "adam"
//   lr = 1e-4
//   [method.trainer.scheduler]
//   kind = "multistep"
//   milestones = [0.8, 0.9]            # fractions of the run
//   gamma = 0.2
//   [[method.trainer.groups]]          # per-group overrides of the optimiser's lr / weight decay
//   name = "adaptor"
//   lr = 1e-4
//
// Exact resume. Every random draw of a step comes from generators seeded by (experiment seed,
// step) and the loader's per-sample seeds depend only on (seed, epoch, index), so a checkpoint
// only has to hold the weights, the optimiser state and the position (epoch, batch, step): a run
// killed at any point and resumed from its last checkpoint repeats the uninterrupted run's steps
// bit for bit (on the CPU, same thread count). The same holds across the stages of train_stages().
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "adfw/core/options.hpp"
#include "adfw/method/method.hpp"
#include "adfw/train/loss.hpp"

namespace adfw {

struct OptimizerOptions {
  std::string kind = "adam";
  double lr = 1e-4;
  double weight_decay = 0.0;
  std::vector<double> betas{0.9, 0.999};
  double eps = 1e-8;
  double momentum = 0.0;
  bool nesterov = false;

  template <class V>
  void fields(V& v) {
    v("kind", kind, "sgd, adam or adamw (default \"adam\")", Check::one_of({"sgd", "adam", "adamw"}));
    v("lr", lr, "base learning rate of every parameter group without its own (default 1e-4)", Check::positive());
    v("weight_decay", weight_decay,
      "L2 penalty (sgd, adam) or decoupled decay (adamw); default 0 (torch's AdamW default is 0.01: set it)",
      Check::at_least(0));
    v("betas", betas, "adam/adamw moment decay rates (default [0.9, 0.999])", Check::range(0, 0.999999));
    v("eps", eps, "adam/adamw denominator epsilon (default 1e-8)", Check::positive());
    v("momentum", momentum, "sgd momentum (default 0: plain SGD, as mixed-supervision SegDecNet)",
      Check::range(0, 1));
    v("nesterov", nesterov, "sgd Nesterov momentum (default false)");
  }
};

/// Per-group overrides: methods name their parameter groups (adfw describe lists them).
struct ParamGroupOptions {
  std::string name;
  double lr = 0.0;
  double weight_decay = -1.0;
  template <class V>
  void fields(V& v) {
    v("name", name, "a parameter group the method defines (e.g. SuperSimpleNet: adaptor, segmentation, classification)");
    v("lr", lr, "learning rate of this group (0 = the optimiser's lr)", Check::at_least(0));
    v("weight_decay", weight_decay, "weight decay of this group (-1 = the optimiser's)", Check::at_least(-1));
  }
};

/// Learning-rate schedule as a factor of each group's lr, a pure function of the position so a
/// resumed run needs no scheduler object state.
struct SchedulerOptions {
  std::string kind = "constant";
  std::string unit = "epoch";
  std::vector<double> milestones{0.8, 0.9};
  double gamma = 0.1;
  int64_t step_every = 1;
  double final_factor = 0.0;
  int64_t warmup = 0;
  double warmup_start = 0.1;

  template <class V>
  void fields(V& v) {
    v("kind", kind,
      "constant, multistep (x gamma at each milestone), step (x gamma every step_every units), cosine "
      "(half cosine from 1 to final_factor) (default \"constant\")",
      Check::one_of({"constant", "multistep", "step", "cosine"}));
    v("unit", unit,
      "what the schedule counts: epoch (updated at epoch starts, like torch schedulers stepped per epoch) or "
      "step (default \"epoch\")",
      Check::one_of({"epoch", "step"}));
    v("milestones", milestones,
      "multistep: fractions of the run (DRAEM, SuperSimpleNet: [0.8, 0.9]); the milestone is at "
      "floor(fraction * total units), as int(epochs * 0.8) in the references (default [0.8, 0.9])",
      Check::range(0, 1));
    v("gamma", gamma, "multiplicative decay at each milestone or step (default 0.1)", Check::positive());
    v("step_every", step_every, "step: decay every this many units (TransFusion: 800 epochs) (default 1)",
      Check::at_least(1));
    v("final_factor", final_factor, "cosine: lr factor reached at the end (SimpleNet: 0.4) (default 0)",
      Check::range(0, 1));
    v("warmup", warmup, "linear warm-up length in units (default 0 = none)", Check::at_least(0));
    v("warmup_start", warmup_start, "lr factor at the start of the warm-up (default 0.1)", Check::range(0, 1));
  }
  /// The lr factor at position `t` (epoch or step index) of a run of `total` units.
  double factor(int64_t t, int64_t total) const;
};

struct TrainerOptions {
  int64_t epochs = 1;
  int64_t steps = 0;
  int batch_size = 8;
  OptimizerOptions optimizer;
  std::vector<ParamGroupOptions> groups;
  SchedulerOptions scheduler;
  double clip_grad_norm = 0.0;
  bool shuffle = true;
  bool drop_last = true;
  bool augment = true;
  bool cache = true;
  int64_t checkpoint_every = 0;
  std::string selection = "last";
  double val_fraction = 0.1;
  int64_t validate_every = 1;
  bool amp = false;

  template <class V>
  void fields(V& v) {
    v("epochs", epochs,
      "passes over the training images (default 1); 0 = no training, the initial weights are evaluated (the "
      "untrained baseline)",
      Check::at_least(0));
    v("steps", steps, "stop after this many optimiser steps in total (0 = run all epochs) (default 0)",
      Check::at_least(0));
    v("batch_size", batch_size, "images per optimiser step (default 8)", Check::at_least(1));
    v("optimizer", optimizer, "optimiser");
    v("groups", groups, "per-parameter-group lr / weight decay overrides (default none)");
    v("scheduler", scheduler, "learning-rate schedule");
    v("clip_grad_norm", clip_grad_norm, "clip the global gradient norm to this value (0 = off) (default 0)",
      Check::at_least(0));
    v("shuffle", shuffle, "shuffle the training images every epoch (default true)");
    v("drop_last", drop_last, "drop an incomplete last batch (kept when it is the only one) (default true)");
    v("augment", augment, "apply the input's training augmentations (flips, rotations) (default true)");
    v("cache", cache, "keep decoded, resized training images in memory (default true)");
    v("checkpoint_every", checkpoint_every,
      "write a resumable checkpoint every this many steps, and at every epoch end (0 = epoch ends only) "
      "(default 0)",
      Check::at_least(0));
    v("selection", selection,
      "which weights are evaluated: last (the final step, default), val (lowest training loss on a held-out "
      "part of the training images, evaluated every validate_every epochs), test (highest image AUROC on the "
      "test set: optimistic, flagged in metrics.json and every table)",
      Check::one_of({"last", "val", "test"}));
    v("val_fraction", val_fraction,
      "selection = val without a validation split in the data: hold out this fraction of the training "
      "images (default 0.1)",
      Check::open_range(0, 1));
    v("validate_every", validate_every, "selection val/test: evaluate every this many epochs (default 1)",
      Check::at_least(1));
    v("amp", amp, "mixed precision (autocast) on CUDA; ignored on the CPU (default false)");
  }
};

/// A named parameter list the optimiser treats as one group.
struct ParamGroup {
  std::string name;
  std::vector<torch::Tensor> params;
  double lr = 0.0;            ///< the method's default for this group (0 = optimiser lr)
  double weight_decay = -1.0; ///< the method's default (-1 = optimiser's)
};

/// What a method hands the trainer.
struct TrainSpec {
  /// Every module whose state is trained or needs saving, by a stable name (checkpoint keys are
  /// "<name>.<parameter>"). Switched to train() for steps and eval() for validation.
  std::vector<std::pair<std::string, std::shared_ptr<torch::nn::Module>>> modules;
  std::vector<ParamGroup> groups;
  /// Forward pass and losses of one batch at optimiser step `step`; the trainer does backward,
  /// clipping and the update. Random draws must come from `rng` (seeded by seed and step) or
  /// torch's global generator (seeded the same way before the call).
  std::function<LossValues(const Batch& batch, std::mt19937_64& rng, int64_t step)> step;
  /// Runs in the loader's workers on every training sample (an anomaly synthesizer), or empty.
  SampleHook hook;
  /// Which samples an epoch holds (LoaderOptions::sampler): "all", or "balanced" /
  /// "balanced_frequency" for methods trained on as many normal as anomalous images per epoch.
  std::string sampler = "all";
  /// Called with the epoch index (0-based) before each epoch's first step, also when a run resumes
  /// inside an epoch (methods whose loss weights follow the epoch), or empty.
  std::function<void(int64_t epoch)> on_epoch;
  /// Image scores of a batch (selection = "test" only), e.g. [&](const Batch& b) { return predict(b).scores; }.
  std::function<torch::Tensor(const Batch&)> score;
};

/// What happened, for metrics.json.
struct TrainSummary {
  int64_t epochs = 0;
  int64_t steps = 0;
  int64_t resumed_from_step = -1;
  double seconds = 0;
  double images_per_second = 0;
  std::string selection;       ///< the rule, in words
  int64_t selected_epoch = -1; ///< epoch whose weights were kept (last: the final one)
  double selected_value = 0;   ///< validation loss or test AUROC of the kept weights
  bool selected_on_test = false;
  std::vector<std::pair<std::string, double>> final_losses;
  nlohmann::json to_json() const;
};

/// Trains `spec` on ctx.train under `options`. With a run folder it writes
/// <run>/checkpoint/{model.safetensors, optimizer.pt, state.json} atomically and
/// <run>/train_log.csv; with ctx.run.resume and a checkpoint present it continues from there.
/// For selection = "test", `test` holds the test images (the engine passes them).
/// Throws adfw::Error naming the step, epoch and loss term when a loss is not finite.
TrainSummary train(FitContext& ctx, const TrainerOptions& options, TrainSpec& spec);

/// One stage of a multi-stage schedule (DSR: the subspace and detection modules, then the
/// upsampling module on frozen ones): its own trainer options, modules, parameter groups and step.
struct TrainStage {
  std::string name;  ///< a word: names the stage's files and random streams
  TrainerOptions options;
  TrainSpec spec;
  /// Runs just before the stage starts (or resumes), after the previous stage ended: freeze
  /// earlier modules, switch modes. May be empty.
  std::function<void()> prepare;
};

/// Trains the stages in order, each as train() does, with its files in <run>/checkpoint/<name>/
/// and <run>/train_log_<name>.csv and its random streams salted with its name. With
/// ctx.run.resume, a finished stage only restores its final weights from its checkpoint and the
/// first unfinished one continues from its own, so a resumed run ends exactly like an
/// uninterrupted one. train() on its own keeps its historical file names and streams.
std::vector<TrainSummary> train_stages(FitContext& ctx, std::vector<TrainStage>& stages);

/// Epochs and step cap after the experiment's limits (smoke preset).
std::pair<int64_t, int64_t> effective_length(const TrainerOptions& options, const LimitsOptions& limits);

}  // namespace adfw
