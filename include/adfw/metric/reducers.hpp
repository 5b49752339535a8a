// Image-score reducers (family "image_score": anomaly maps -> one score per image) and map
// post-processing (family "postprocess": maps -> maps), as registered parts.
#pragma once

#include <array>
#include <string>

#include <torch/torch.h>

#include "adfw/core/options.hpp"

namespace adfw {

class ImageScoreReducer {
 public:
  static constexpr const char* family = "image_score";
  virtual ~ImageScoreReducer() = default;
  /// (N,1,H,W) or (N,H,W) float maps -> (N) scores, on the maps' device.
  virtual torch::Tensor reduce(const torch::Tensor& maps) const = 0;
  /// True for "method": the method's own image scores are used and reduce() must not be called.
  virtual bool uses_method_scores() const { return false; }
};

class MapPostprocess {
 public:
  static constexpr const char* family = "postprocess";
  virtual ~MapPostprocess() = default;
  /// (N,1,h,w) float maps -> (N,1,H',W'). `input_hw` is the network input size {H, W}.
  virtual torch::Tensor apply(const torch::Tensor& maps, std::array<int64_t, 2> input_hw) const = 0;
};

namespace metric {

/// Maximum of each map.
struct MaxReducer : ImageScoreReducer {
  using Options = NoOptions;
  explicit MaxReducer(const Options& = {}) {}
  torch::Tensor reduce(const torch::Tensor& maps) const override;
};

struct AvgPoolMaxOptions {
  int kernel = 21;
  template <class V>
  void fields(V& v) {
    v("kernel", kernel,
      "side k of the k x k mean filter (stride 1, zero padding k/2 counted in the mean) before the max; "
      "21 as in DRAEM's test code",
      Check::at_least(1));
  }
};
/// Maximum of the k x k average-pooled map (DRAEM, Zavrtanik et al. ICCV 2021, test_DRAEM.py:
/// avg_pool2d(out_mask, 21, stride=1, padding=21 // 2) then max).
struct AvgPoolMaxReducer : ImageScoreReducer {
  using Options = AvgPoolMaxOptions;
  explicit AvgPoolMaxReducer(const Options& o = {}) : options(o) {}
  torch::Tensor reduce(const torch::Tensor& maps) const override;
  /// The mean-filtered maps (N,1,H,W) whose maximum reduce() takes; the zero padding counts in the
  /// mean (avg_pool2d's count_include_pad), so values near the border are damped as in DRAEM.
  torch::Tensor pooled(const torch::Tensor& maps) const;
  Options options;
};

struct TopKMeanOptions {
  double fraction = 0.01;
  template <class V>
  void fields(V& v) {
    v("fraction", fraction,
      "mean of the highest fraction q of the map's values (at least one value; count = floor(q * H * W))",
      Check{0.0, 1.0, true, false, {}});
  }
};
/// Mean of the top q of each map (AnomalyDINO, Damm et al. 2024: mean of the top 1% patch distances).
struct TopKMeanReducer : ImageScoreReducer {
  using Options = TopKMeanOptions;
  explicit TopKMeanReducer(const Options& o = {}) : options(o) {}
  torch::Tensor reduce(const torch::Tensor& maps) const override;
  Options options;
};

/// Marker: use the image scores the method computes itself (e.g. a classification head).
struct MethodScoreReducer : ImageScoreReducer {
  using Options = NoOptions;
  explicit MethodScoreReducer(const Options& = {}) {}
  torch::Tensor reduce(const torch::Tensor& maps) const override;
  bool uses_method_scores() const override { return true; }
};

/// Bilinear resize to the input size (align_corners = false, as torch's F.interpolate default).
struct UpsamplePostprocess : MapPostprocess {
  using Options = NoOptions;
  explicit UpsamplePostprocess(const Options& = {}) {}
  torch::Tensor apply(const torch::Tensor& maps, std::array<int64_t, 2> input_hw) const override;
};

struct GaussianOptions {
  double sigma = 4.0;
  int kernel_size = 0;
  std::string border = "symmetric";
  template <class V>
  void fields(V& v) {
    v("sigma", sigma, "standard deviation in pixels", Check::positive());
    v("kernel_size", kernel_size,
      "odd kernel side; 0 = 2 * ceil(3 sigma) + 1 (25 for sigma 4). PatchCore's scipy gaussian_filter "
      "truncates at 4 sigma (2 * int(4 sigma + 0.5) + 1 = 33 for sigma 4): set 33 to match it",
      Check::at_least(0));
    v("border", border,
      "border extension: \"symmetric\" repeats the edge sample (d c b a | a b c d; scipy.ndimage's default "
      "\"reflect\", used by PatchCore's and SimpleNet's gaussian_filter) or \"reflect\" does not (d c b | a b c d; "
      "torch's \"reflect\" padding, used by torchvision's GaussianBlur in SuperSimpleNet)",
      Check::one_of({"symmetric", "reflect"}));
  }
};
/// Separable Gaussian smoothing with mirrored borders (by default scipy.ndimage's "reflect" mode,
/// which PatchCore's reference implementation uses; see GaussianOptions::border).
struct GaussianPostprocess : MapPostprocess {
  using Options = GaussianOptions;
  explicit GaussianPostprocess(const Options& o = {});
  torch::Tensor apply(const torch::Tensor& maps, std::array<int64_t, 2> input_hw) const override;
  int kernel_size() const;
  Options options;
};

struct MeanFilterOptions {
  int kernel = 3;
  template <class V>
  void fields(V& v) {
    v("kernel", kernel, "odd side k of the k x k box filter (mirrored borders)", Check::at_least(1));
  }
};
struct MeanFilterPostprocess : MapPostprocess {
  using Options = MeanFilterOptions;
  explicit MeanFilterPostprocess(const Options& o = {});
  torch::Tensor apply(const torch::Tensor& maps, std::array<int64_t, 2> input_hw) const override;
  Options options;
};

}  // namespace metric
}  // namespace adfw
