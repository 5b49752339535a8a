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

namespace adfw {

/// Map post-processing shared by the feature methods: bilinear upsampling of the patch-grid
/// map to the input size, then Gaussian smoothing.
struct MapSmoothingOptions {
  double sigma = 4.0;
  int kernel_size = 0;
  std::string border = "symmetric";
  bool align = false;
  std::string space = "linear";
  template <class V>
  void fields(V& v) {
    v("space", space,
      "scale the map is upsampled and smoothed in: \"linear\" (the references) or \"log\" (log(1 + score), for "
      "scores >= 0: a strong small defect then spreads less into the normal pixels around it)",
      Check::one_of({"linear", "log"}));
    v("align", align,
      "upsample each map cell onto the input pixel its receptive field is centred on (the backbone's padding "
      "decides it; torchvision ResNets sit (s-1)/2 px up-left and TF-padded MobileNets (s-1)/2 px down-right of "
      "where plain bilinear upsampling puts a stride-s grid); the references upsample plainly (default false)");
    v("sigma", sigma, "Gaussian smoothing of the upsampled map (PatchCore/PaDiM/AnomalyDINO: 4; 0 = off)",
      Check::at_least(0));
    v("kernel_size", kernel_size,
      "odd kernel side; 0 = 2*ceil(3 sigma)+1 (25 at sigma 4); scipy's gaussian_filter, which the PatchCore and "
      "PaDiM references use, truncates at 4 sigma: 33",
      Check::at_least(0));
    v("border", border,
      "smoothing border: \"symmetric\" repeats the edge pixel (scipy.ndimage's \"reflect\": PatchCore, PaDiM, "
      "SimpleNet) or \"reflect\" does not (torch's \"reflect\" padding: torchvision's GaussianBlur in "
      "SuperSimpleNet)",
      Check::one_of({"symmetric", "reflect"}));
  }
};

/// Bilinear upsampling of (N,1,h,w) to (H,W), then Gaussian smoothing. Without `grid`, or with
/// o.align false, plain upsampling (align_corners false); otherwise cell (i, j) lands on input pixel
/// (grid.origin_y + i * grid.stride, grid.origin_x + j * grid.stride), with the border cells extended.
torch::Tensor upsample_and_smooth(const torch::Tensor& maps, int64_t height, int64_t width,
                                  const MapSmoothingOptions& o, const GridGeometry* grid = nullptr);

/// Bilinear resampling of a grid map (N,C,h,w) onto every pixel of a (height, width) input, where
/// the map's cells sit as `grid` says; values beyond the outer cells are the outer cells'.
torch::Tensor upsample_on_grid(const torch::Tensor& maps, int64_t height, int64_t width, const GridGeometry& grid);

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
    MapSmoothingOptions smoothing;
    int batch_size = 8;
    template <class V>
    void fields(V& v) {
      v("backbone", backbone, "feature extractor and its taps (reference: wide_resnet50_2, layer2 + layer3)");
      v("aggregation", aggregation, "local patch aggregation and channel pooling");
      v("coreset", coreset, "memory bank subsampling");
      v("knn", knn, "nearest-neighbour scoring");
      v("smoothing", smoothing, "anomaly map post-processing");
      v("batch_size", batch_size, "images per feature-extraction batch (default 8)", Check::at_least(1));
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
    MapSmoothingOptions smoothing;
    int batch_size = 8;
    template <class V>
    void fields(V& v) {
      v("backbone", backbone, "feature extractor and its taps (reference: resnet18 layer1-3, or wide_resnet50_2)");
      v("dims", dims,
        "random channel subset of the concatenated embedding (reference: 100 for resnet18, 550 for WRN50; "
        "0 = keep all)",
        Check::at_least(0));
      v("gaussian", gaussian, "per-position Gaussian");
      v("smoothing", smoothing, "anomaly map post-processing");
      v("batch_size", batch_size, "images per feature-extraction batch (default 8)", Check::at_least(1));
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
    double top_fraction = 0.01;
    MapSmoothingOptions smoothing;
    int batch_size = 4;
    Options() { knn.distance = "cosine"; }
    template <class V>
    void fields(V& v) {
      v("backbone", backbone, "DINOv2 ViT and its tap (reference: dinov2_vits14, last block, normed patch tokens)");
      v("shots", shots, "reference images in the memory bank (1, 2, 4, 8, 16 in the paper; 0 = every training image)",
        Check::at_least(0));
      v("rotations", rotations, "add the reference images rotated by 90, 180 and 270 degrees to the bank");
      v("knn", knn, "nearest-neighbour scoring (reference: cosine distance, k = 1)");
      v("top_fraction", top_fraction, "image score = mean of this top fraction of patch distances (reference: 0.01)",
        Check::open_range(0, 1.0000001));
      v("smoothing", smoothing, "anomaly map post-processing");
      v("batch_size", batch_size, "images per feature-extraction batch (default 4)", Check::at_least(1));
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
  MemoryBank bank_;
  int64_t shots_used_ = 0;
};

}  // namespace adfw
