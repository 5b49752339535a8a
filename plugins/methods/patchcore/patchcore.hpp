// PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022;
// amazon-science/patchcore-inspection): a frozen backbone's locally aggregated patch features, a
// coreset-subsampled memory bank of the training patches, nearest-neighbour distance as the score.
// Recipe, options and sources: README.md in this folder.
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

class PatchCore : public Method {
 public:
  struct Options {
    Slot<Backbone> backbone{"resnet"};
    PatchAggregationOptions aggregation;
    CoresetOptions coreset;
    KnnOptions knn;
    PostprocessChain postprocess = upsample_gaussian_chain(4.0);
    ImageScoreSlot image_score{"type = 'max'\nmap = 'raw'\n"};
    int batch_size = 8;
    template <class V>
    void fields(V& v) {
      v("backbone", backbone, "feature extractor and its taps (reference: wide_resnet50_2, layer2 + layer3)");
      v("aggregation", aggregation, "local patch aggregation and channel pooling");
      v("coreset", coreset, "memory bank subsampling");
      v("knn", knn, "nearest-neighbour scoring");
      v("postprocess", postprocess,
        "map post-processing parts, in order, from the patch-grid distances to the final map (reference: upsample, "
        "then gaussian sigma 4 (scipy's gaussian_filter: kernel_size 33)); upsample may set align (the grid is the "
        "first tap's)");
      v("image_score", image_score,
        "image score (reference, patchcore.py _predict: the largest patch distance, max with map = \"raw\")");
      v("batch_size", batch_size, "images per feature-extraction batch (default 8)", Check::at_least(1));
      retired_key(v, "smoothing", smoothing_retired());
    }
  };
  explicit PatchCore(const Options& o);
  std::string normalization() const override;
  const Backbone* backbone() const override { return backbone_.get(); }
  void fit(FitContext& ctx) override;
  Prediction predict(const Batch& batch, const RunContext& ctx) override;
  nlohmann::json summary() const override;
  StateDict state() const override;
  void load_state(const StateDict& state, const RunContext& ctx, const std::string& source) override;

  /// Patch features (N, h, w, D) of a batch of images.
  torch::Tensor embed(const torch::Tensor& images, const RunContext& ctx);
  const MemoryBank& bank() const { return bank_; }

 private:
  Options opt_;
  std::unique_ptr<Backbone> backbone_;
  MapScoring scoring_;
  MemoryBank bank_;
  int64_t train_patches_ = 0;
  double coreset_seconds_ = 0;
};

}  // namespace adfw
