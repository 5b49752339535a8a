// Losses (family "loss") as registered parts, and the loss terms an experiment lists:
//
//   [[method.losses]]
//   type = "focal"          # a registered loss
//   gamma = 2.0             # its options
//   weight = 1.0            # weight of the term in the total
//   prediction = "segmentation"   # which model output it compares ...
//   target = "mask"               # ... with which target
//
// Every loss reduces to a scalar as a *weighted mean* over elements: with per-element weights w
// (broadcastable to the prediction, e.g. (N,1,1,1) per sample), loss = sum(w * l) / sum(w). This
// is what mixed supervision needs (a sample without a pixel mask gets weight 0 in a pixel loss)
// and equals the plain mean when w is undefined. When every weight is zero the loss is an exact
// zero that still belongs to the autograd graph.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "adfw/core/registry.hpp"

namespace adfw {

class Loss {
 public:
  static constexpr const char* family = "loss";
  virtual ~Loss() = default;
  /// Scalar loss of `prediction` against `target` (same shape unless a loss says otherwise),
  /// weighted by `weight` (undefined = uniform).
  virtual torch::Tensor forward(const torch::Tensor& prediction, const torch::Tensor& target,
                                const torch::Tensor& weight = {}) const = 0;
};

/// One term of a method's objective: a registered loss, its weight, and the names of the model
/// output and target it compares. Methods document which names they provide.
class LossTerm {
 public:
  using adfw_custom_field = void;
  LossTerm() = default;
  LossTerm(std::string type, double weight, std::string prediction, std::string target);

  const std::string& type() const { return loss_.type(); }
  double weight() const { return weight_; }
  const std::string& prediction() const { return prediction_; }
  const std::string& target() const { return target_; }
  /// Builds the loss (once; later calls return the same instance).
  const Loss& loss() const;
  /// Options of the loss component (for methods that need to read e.g. a margin).
  template <class O>
  const O& options() const {
    return loss_.options<O>();
  }

  // --- options.hpp custom-field protocol ---
  static std::string type_name() { return "loss term table (type, weight, prediction, target, loss options)"; }
  void read_toml(const toml::node& n, const std::string& path);
  toml::table to_toml() const;
  std::string default_str() const;
  std::vector<OptionDoc> docs() const { return {}; }

 private:
  Slot<Loss> loss_;
  double weight_ = 1.0;
  std::string prediction_;
  std::string target_;
  mutable std::shared_ptr<Loss> built_;
};

/// Named tensors a method's forward pass produces or a batch provides.
using TensorMap = std::map<std::string, torch::Tensor>;

/// The value of every term and their weighted sum ("total"), as a method's training step needs
/// them for the optimiser, the progress bar and train_log.csv.
struct LossValues {
  torch::Tensor total;                                  ///< scalar, differentiable
  std::vector<std::pair<std::string, double>> terms;    ///< "<type>:<prediction>" -> value
};

/// Evaluates `terms` on named outputs and targets. `weights` maps a term's target name to
/// per-element weights (e.g. "mask" -> (N,1,1,1) zero for samples without a pixel mask).
/// total = sum of weight * value. Labels are "<type>:<prediction>", with "#2", "#3" ... appended
/// when several terms share one. Throws Error naming the term and the names available when a
/// name is missing, and Error naming the term and both shapes when a loss rejects its inputs
/// (shape mismatch, bad class indices). A value that is not finite is left to the trainer.
LossValues evaluate_losses(const std::vector<LossTerm>& terms, const TensorMap& outputs, const TensorMap& targets,
                           const TensorMap& weights = {});

}  // namespace adfw
