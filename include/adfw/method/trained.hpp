// Shared pieces of the methods trained on synthetic (or a few real) anomalies and assembled from
// registered parts: networks (family "network"), synthesizers ("synthesizer", "feature_noise"),
// losses ("loss"), image-score reducers ("image_score") and the shared trainer
// (train/trainer.hpp). The methods themselves live in plugins/methods/<name>/ (DRAEM, RIAD,
// SuperSimpleNet, TransFusion, DSR, EfficientAD, SegDecNet).
#pragma once

#include <memory>
#include <string>
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

/// The trainable parameters of a network (an optimiser parameter group).
std::vector<torch::Tensor> params_of(Network& n);

/// Seeds torch's generator for weight initialisation so a run's init depends only on its seed and
/// the part's name.
void seed_init(const RunContext& ctx, const std::string& part);

/// The loss terms as summary() reports them: type, weight, prediction and target of each.
nlohmann::json losses_json(const std::vector<LossTerm>& terms);

/// Throws ConfigError (key method.losses) when `terms` is empty.
void require_losses(const std::vector<LossTerm>& terms, const std::string& method);

}  // namespace adfw
