// Training-free methods: a frozen backbone's patch features, compared with what the
// training images looked like.
//   PatchCore   (Roth et al., CVPR 2022)   memory bank + coreset + nearest neighbour
//   PaDiM       (Defard et al., ICPR 2021) per-position Gaussian + Mahalanobis distance
//   AnomalyDINO (Damm et al., 2024)        DINOv2 patch tokens + cosine nearest neighbour
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "adfw/backbone/backbone.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/method/memory_bank.hpp"
#include "adfw/method/method.hpp"
#include "adfw/metric/reducers.hpp"

namespace adfw {

/// How concat_taps brings a tap to the common size.
enum class TapResize {
  nearest,          ///< repeat each deeper cell over its block (PaDiM's embedding_concat)
  bilinear,         ///< bilinear, align_corners false
  bilinear_aligned  ///< bilinear, align_corners true (SuperSimpleNet's upscaling, model/feature_extractor.py)
};

/// The backbone's `taps` from one forward pass, each resized to (height, width) unless it already
/// has that size, concatenated along channels in tap order (on the maps' device and dtype).
/// Throws ConfigError naming a tap that is not a spatial (N,C,h,w) map.
torch::Tensor concat_taps(const std::map<std::string, torch::Tensor>& maps, const std::vector<std::string>& taps,
                          int64_t height, int64_t width, TapResize mode);

/// Runs a backbone over every batch of a loader, handing the feature maps to `fn`.
void for_each_feature_batch(Backbone& backbone, Loader& loader, const RunContext& ctx, const std::string& label,
                            const std::function<void(const std::map<std::string, torch::Tensor>&, const Batch&)>& fn);

// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
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
