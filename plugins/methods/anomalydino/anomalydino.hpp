// AnomalyDINO (Damm et al., "AnomalyDINO: Boosting Patch-based Few-shot Anomaly Detection with
// DINOv2", arXiv 2405.14529, 2024; dammsi/AnomalyDINO): DINOv2 patch tokens of a few reference images in a
// memory bank, cosine nearest-neighbour distance, the mean of the top 1% as the image score.
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

class AnomalyDINO : public Method {
 public:
  struct Options {
    Slot<Backbone> backbone{"dinov2"};
    int64_t shots = 0;
    bool rotations = false;
    KnnOptions knn;
    PostprocessChain postprocess = upsample_gaussian_chain(4.0);
    ImageScoreSlot image_score{"type = 'topk_mean'\nfraction = 0.01\nmap = 'raw'\n"};
    int batch_size = 4;
    Options() { knn.distance = "cosine"; }
    template <class V>
    void fields(V& v) {
      v("backbone", backbone, "DINOv2 ViT and its tap (reference: dinov2_vits14, last block, normed patch tokens)");
      v("shots", shots, "reference images in the memory bank (1, 2, 4, 8, 16 in the paper; 0 = every training image)",
        Check::at_least(0));
      v("rotations", rotations, "add the reference images rotated by 90, 180 and 270 degrees to the bank");
      v("knn", knn, "nearest-neighbour scoring (reference: cosine distance, k = 1)");
      v("postprocess", postprocess,
        "map post-processing parts, in order, from the patch distances to the final map (reference: upsample, "
        "then gaussian sigma 4)");
      v("image_score", image_score,
        "image score (reference, src/post_eval.py mean_top1p: the mean of the top 1% of the patch distances, "
        "topk_mean with fraction 0.01 and map = \"raw\")");
      v("batch_size", batch_size, "images per feature-extraction batch (default 4)", Check::at_least(1));
      retired_key(v, "smoothing", smoothing_retired());
      retired_key(v, "top_fraction",
                  "the image score is the image_score slot; write\n  [method.image_score]\n"
                           "  type = \"topk_mean\"\n  fraction = 0.01\n  map = \"raw\"");
    }
  };
  explicit AnomalyDINO(const Options& o);
  std::string normalization() const override;
  const Backbone* backbone() const override { return backbone_.get(); }
  void fit(FitContext& ctx) override;
  Prediction predict(const Batch& batch, const RunContext& ctx) override;
  nlohmann::json summary() const override;
  StateDict state() const override;
  void load_state(const StateDict& state, const RunContext& ctx, const std::string& source) override;

 private:
  torch::Tensor patch_features(const torch::Tensor& images, const RunContext& ctx);  // (N, h, w, D)
  Options opt_;
  std::unique_ptr<Backbone> backbone_;
  MapScoring scoring_;
  MemoryBank bank_;
  int64_t shots_used_ = 0;
};

}  // namespace adfw
