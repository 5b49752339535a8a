// Methods: pipelines that wire registered parts together (backbone, synthesizer, networks,
// losses, scorer, post-processing) and turn images into anomaly maps and image scores.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "adfw/core/checkpoint.hpp"
#include "adfw/core/rng.hpp"
#include "adfw/data/loader.hpp"
#include "adfw/data/sample.hpp"
#include "adfw/data/transforms.hpp"

namespace adfw {

/// Caps that shrink any experiment (the smoke preset sets them); 0 = no cap.
struct LimitsOptions {
  int64_t train_images = 0;
  int64_t test_images = 0;
  int64_t epochs = 0;
  int64_t steps = 0;
  template <class V>
  void fields(V& v) {
    v("train_images", train_images, "use at most this many training images, chosen deterministically (0 = all)",
      Check::at_least(0));
    v("test_images", test_images,
      "evaluate on at most this many test images, keeping normal and anomalous ones (0 = all)", Check::at_least(0));
    v("epochs", epochs, "cap on training epochs of trained methods (0 = the method's own count)", Check::at_least(0));
    v("steps", steps, "cap on optimisation steps of trained methods (0 = no cap)", Check::at_least(0));
  }
};

/// What every part of a run may need to know.
struct RunContext {
  std::filesystem::path dir;  ///< the run folder ("" when running without one, e.g. from C++)
  SeedStreams seeds;
  torch::Device device = torch::kCPU;
  int threads = 1;
  int loader_workers = 2;
  LimitsOptions limits;
  bool resume = false;  ///< continue from the run folder's checkpoint when there is one
};

/// Handed to Method::fit: the training data and how to load it.
struct FitContext {
  const RunContext& run;
  std::vector<SampleInfo> train;  ///< the training split (limits applied)
  std::vector<SampleInfo> val;    ///< held-out validation samples (empty unless configured)
  /// The test split, for trainer.selection = "test" only (checkpoint selection on the test set,
  /// which every report then flags); methods must not learn from it.
  std::vector<SampleInfo> test;
  TransformOptions transforms;    ///< the experiment's input pipeline, normalisation resolved

  /// A loader over `samples` with the experiment's transforms and worker count.
  std::unique_ptr<Loader> loader(const std::vector<SampleInfo>& samples, LoaderOptions options,
                                 SampleHook hook = {}) const;
};

/// Anomaly maps and image scores for one batch.
struct Prediction {
  torch::Tensor maps;    ///< (N,1,H,W) float32 on CPU, at the batch's input resolution
  torch::Tensor scores;  ///< (N,) float32 on CPU; larger = more anomalous
};

class Backbone;

class Method {
 public:
  static constexpr const char* family = "method";
  virtual ~Method() = default;

  /// The backbone that sees the input images (null for methods without one), so a run can check
  /// the configured input size against what it takes before any data is read.
  virtual const Backbone* backbone() const { return nullptr; }

  /// Input normalisation the method needs (a TransformOptions::normalize name, e.g. from its
  /// backbone: "imagenet", "mobilenet", "none"), or "" to take the experiment's setting.
  virtual std::string normalization() const { return ""; }
  /// Learns from the training data: builds a memory bank, fits Gaussians or trains networks.
  virtual void fit(FitContext& ctx) = 0;
  /// Maps and scores for a batch of test images (already transformed).
  virtual Prediction predict(const Batch& batch, const RunContext& ctx) = 0;
  /// Facts about the fitted model for metrics.json (bank size, epochs trained, checkpoint rule).
  virtual nlohmann::json summary() const { return nlohmann::json::object(); }

  /// What fit() learned, as named tensors: network weights and buffers, memory banks, Gaussians,
  /// selected channels. Together with the method's options it is everything predict() needs.
  /// Frozen backbones are not part of it: the options rebuild them (their weights file or seed).
  /// A run writes it to model.safetensors in its folder.
  virtual StateDict state() const = 0;
  /// Instead of fit(): builds the method's parts from its options on ctx.device and restores a
  /// state() of the same configuration, so predict() gives the fitted method's maps exactly.
  /// Strict: an adfw::Error names `source` and every missing, unexpected or mis-shaped entry.
  virtual void load_state(const StateDict& state, const RunContext& ctx, const std::string& source) = 0;
};

}  // namespace adfw
