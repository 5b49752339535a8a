// PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection and
// Localization", ICPR 2021; xiahaifeng1995/PaDiM-Anomaly-Detection-Localization-master): a
// Gaussian per patch position over a random channel subset of the concatenated taps, Mahalanobis
// distance as the score. Recipe, options and sources: README.md in this folder.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "adfw/backbone/backbone.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/method/features.hpp"
#include "adfw/method/memory_bank.hpp"
#include "adfw/method/method.hpp"
#include "adfw/metric/reducers.hpp"

namespace adfw {

class PaDiM : public Method {
 public:
  struct Options {
    Slot<Backbone> backbone{"resnet"};
    int64_t dims = 100;
    PatchGaussianOptions gaussian;
    PostprocessChain postprocess = upsample_gaussian_chain(4.0);
    Slot<ImageScoreReducer> image_score{"max"};
    int batch_size = 8;
    template <class V>
    void fields(V& v) {
      v("backbone", backbone, "feature extractor and its taps (reference: resnet18 layer1-3, or wide_resnet50_2)");
      v("dims", dims,
        "random channel subset of the concatenated embedding (reference: 100 for resnet18, 550 for WRN50; "
        "0 = keep all)",
        Check::at_least(0));
      v("gaussian", gaussian, "per-position Gaussian");
      v("postprocess", postprocess,
        "map post-processing parts, in order, from the Mahalanobis distances on the first tap's grid to the final "
        "map (reference: upsample, then gaussian sigma 4 (scipy's gaussian_filter: kernel_size 33)); upsample may "
        "set align");
      v("image_score", image_score, "image score (reference, main.py: the maximum of the final map)");
      v("batch_size", batch_size, "images per feature-extraction batch (default 8)", Check::at_least(1));
      retired_key(v, "smoothing", smoothing_retired());
    }
  };
  explicit PaDiM(const Options& o);
  std::string normalization() const override;
  const Backbone* backbone() const override { return backbone_.get(); }
  void fit(FitContext& ctx) override;
  Prediction predict(const Batch& batch, const RunContext& ctx) override;
  nlohmann::json summary() const override;
  StateDict state() const override;
  void load_state(const StateDict& state, const RunContext& ctx, const std::string& source) override;

  /// Embedding (N, d, h, w): taps concatenated at the first tap's resolution (nearest upsampling,
  /// as the reference's embedding_concat), then the random channel subset.
  torch::Tensor embed(const torch::Tensor& images, const RunContext& ctx);
  /// The same from the backbone's feature maps.
  torch::Tensor embed_maps(const std::map<std::string, torch::Tensor>& maps, const RunContext& ctx);

 private:
  Options opt_;
  std::unique_ptr<Backbone> backbone_;
  MapScoring scoring_;
  PatchGaussian gaussian_;
  torch::Tensor channels_;  // selected channel indices
};

}  // namespace adfw
