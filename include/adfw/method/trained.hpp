// Shared pieces of the methods trained on synthetic (or a few real) anomalies and assembled from
// registered parts: networks (family "network"), synthesizers ("synthesizer", "feature_noise"),
// losses ("loss"), image-score reducers ("image_score") and the shared trainer
// (train/trainer.hpp), and TrainedMethod, their common base. The methods themselves live in
// plugins/methods/<name>/ (DRAEM, RIAD, SuperSimpleNet, TransFusion, DSR, EfficientAD, SegDecNet).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "adfw/core/registry.hpp"
#include "adfw/method/method.hpp"
#include "adfw/metric/reducers.hpp"
#include "adfw/train/loss.hpp"
#include "adfw/train/network.hpp"
#include "adfw/train/trainer.hpp"

namespace adfw {

/// A loss term from TOML text (defaults of methods' loss lists).
LossTerm loss_term(const std::string& toml_text);

/// Reflect-pads (N,C,H,W) at the bottom/right to multiples of `multiple` (U-Nets that halve the
/// size k times need multiples of 2^k); crop_to() undoes it on outputs.
torch::Tensor pad_to_multiple(const torch::Tensor& x, int64_t multiple);
torch::Tensor crop_to(const torch::Tensor& x, int64_t height, int64_t width);

/// Per-sample weight of pixel losses under mixed supervision, shaped (N,1,1,1): 0 for anomalous
/// samples that only carry an image label (their masks are unknown, not empty), 1 otherwise.
torch::Tensor pixel_loss_weights(const Batch& batch);

/// The loss terms as summary() reports them: type, weight, prediction and target of each.
nlohmann::json losses_json(const std::vector<LossTerm>& terms);

/// Throws ConfigError (key method.losses) when `terms` is empty.
void require_losses(const std::vector<LossTerm>& terms, const std::string& method);

/// How a part of a trained method takes part in training.
struct PartRole {
  /// In the trainer's modules and parameter groups (false: frozen, e.g. EfficientAD's teacher; still
  /// saved by state()).
  bool trained = true;
  /// Its module and parameter-group name in the trainer ("" = the part's name); the part's name stays
  /// the prefix of its keys in state().
  std::string train_name;
};

/// The base of the methods trained by the shared trainer (train/trainer.hpp). A method writes its
/// networks (build_parts(), one make_part() per network) and its step (configure_training()); the
/// base owns the rest:
///  - seeding: each part is initialised from the run's init stream for "<seed scope>/<part>", so a
///    part's weights depend only on the run's seed and the part's name, not on the other parts;
///  - the trainer: TrainSpec modules and parameter groups from the trained parts (in the order they
///    were made), train(), and the TrainSummary;
///  - state() / load_state(): the parts' modules under "<part>.<key>", plus the tensors a method
///    declares with extra_state_keys() (statistics, quantiles);
///  - summary(): the trainer's summary, "method" and "losses", plus describe();
///  - eval mode after load_state() and in predict() (eval_parts()).
/// A method with more than one training stage (DSR) overrides fit() (train_stages()) and summary()
/// and keeps the rest.
class TrainedMethod : public Method {
 public:
  /// Builds every part on ctx.device (fit() and load_state() do this; tests call it before loading
  /// weights), replacing the parts of an earlier build.
  void build(const RunContext& ctx);
  /// Checks the loss terms, builds the parts, lets configure_training() complete the TrainSpec,
  /// trains on training_data() (or ctx) and calls after_training().
  void fit(FitContext& ctx) override;
  /// The trainer's summary with "method" (name()), "losses" (when the method has loss terms) and
  /// what describe() adds.
  nlohmann::json summary() const override;
  StateDict state() const override;
  void load_state(const StateDict& state, const RunContext& ctx, const std::string& source) override;
  /// The method's registered name (messages, summary "method").
  const std::string& name() const { return name_; }

 protected:
  /// `seed_scope` names the init streams "<seed_scope>/<part>" ("" = `name`); a method that shares
  /// another's networks (dsr_vq_pretrain: "dsr") draws the same initial weights.
  explicit TrainedMethod(std::string name, std::string seed_scope = "");

  /// Makes the parts with make_part() / add_part(), always in the same order.
  virtual void build_parts(const RunContext& ctx) = 0;
  /// Completes `spec` after build(): step, and where needed hook, sampler, on_epoch, other parameter
  /// groups. Modules, groups (from the trained parts) and score (predict()'s scores) are filled.
  virtual void configure_training(TrainSpec& spec, FitContext& ctx) = 0;
  virtual const TrainerOptions& trainer_options() const = 0;
  /// The data train() sees, when not fit()'s own (EfficientAD: its split without the held-out
  /// images; pretraining on image folders). Called after configure_training().
  virtual std::optional<FitContext> training_data(FitContext&) { return std::nullopt; }
  /// Runs after train() (EfficientAD: the map quantiles; pretraining: writes the weights file).
  virtual void after_training(FitContext&) {}
  /// The configurable loss terms: fit() requires one, summary() lists them (null = a fixed loss).
  virtual const std::vector<LossTerm>* loss_terms() const { return nullptr; }
  /// Method-specific facts for summary() (options that change the model, counts, file names).
  virtual void describe(nlohmann::json&) const {}

  /// Tensors saved beside the parts' weights, under these keys (any shape).
  virtual std::vector<std::string> extra_state_keys() const { return {}; }
  /// Whether those tensors exist yet (EfficientAD: after its quantiles are fitted).
  virtual bool has_extra_state() const { return true; }
  /// The extra tensors, one per extra_state_keys() entry.
  virtual StateDict save_extra_state() const { return {}; }
  /// Restores the extra tensors (on the run's device) after the parts were loaded.
  virtual void load_extra_state(const StateDict&, const std::string& /*source*/) {}

  /// Seeds torch's generator from the run's init stream for "<seed scope>/<part>", so a part's initial
  /// weights depend only on the run's seed and the part's name.
  void seed_part(const RunContext& ctx, const std::string& part) const;
  /// Registers a made module as part `part` (a name used once), moved to `device`. Seed it first
  /// (seed_part()).
  void add_part(const std::string& part, std::shared_ptr<torch::nn::Module> module, const torch::Device& device,
                PartRole role = {});
  /// Seeds the part's init stream, calls make() (which may also load or initialise weights) and
  /// registers the result (a Network, a unique_ptr to one or a torch ModuleHolder) on ctx.device.
  template <class Make, class = std::enable_if_t<std::is_invocable_v<Make&>>>
  auto make_part(const RunContext& ctx, const std::string& part, Make&& make, PartRole role = {}) {
    seed_part(ctx, part);
    auto made = make();
    add_part(part, module_of(made), ctx.device, std::move(role));
    return made;
  }
  /// A network from its slot, as make_part() makes it.
  std::unique_ptr<Network> make_part(const RunContext& ctx, const std::string& part, const Slot<Network>& slot,
                                     PartRole role = {});

  /// The trained parts as TrainSpec modules and parameter groups, in the order they were made.
  TrainSpec training_spec() const;
  /// A part's module after build(); throws naming the parts there are.
  std::shared_ptr<torch::nn::Module> part_module(const std::string& part) const;
  /// Throws "<name>: <what> before fit()" before build().
  void require_built(const std::string& what) const;
  /// Every part in eval mode (prediction, after loading).
  void eval_parts();

  /// What train() reported (fit() keeps it; methods that train themselves set it).
  TrainSummary trained_;

 private:
  template <class T>
  static std::shared_ptr<torch::nn::Module> module_of(const std::unique_ptr<T>& p) {
    return p->module();
  }
  template <class T>
  static std::shared_ptr<torch::nn::Module> module_of(const torch::nn::ModuleHolder<T>& h) {
    return h.ptr();
  }
  struct Part {
    std::string name;
    std::shared_ptr<torch::nn::Module> module;
    PartRole role;
  };
  std::string name_, seed_scope_;
  std::vector<Part> parts_;
};

}  // namespace adfw
