// Image-score reducers (family "image_score": anomaly maps -> one score per image) and map
// post-processing (family "postprocess": maps -> maps), as registered parts. Every method scores
// through the same two slots: an ordered `postprocess` chain turns its raw map (a patch grid, a
// network output) into the final map, and an `image_score` reducer turns the raw or the final map
// (or the method's own image-level output) into image scores. MapScoring holds both, built.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "adfw/core/options.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/core/retired.hpp"

namespace adfw {

struct GridGeometry;  // backbone/backbone.hpp

class ImageScoreReducer {
 public:
  static constexpr const char* family = "image_score";
  virtual ~ImageScoreReducer() = default;
  /// (N,1,H,W) or (N,H,W) float maps -> (N) scores, on the maps' device.
  virtual torch::Tensor reduce(const torch::Tensor& maps) const = 0;
  /// True for "method": the method's own image scores are used and reduce() must not be called.
  virtual bool uses_method_scores() const { return false; }
  /// True when reduce() takes the method's raw map, before its postprocess chain (e.g. PatchCore's
  /// patch-grid distances), rather than the final map (the reducers' `map` option).
  virtual bool reads_raw_map() const { return false; }
};

/// What a post-processing part may need besides the maps.
struct MapContext {
  std::array<int64_t, 2> input_hw{0, 0};  ///< the network input size {H, W}: the final maps' size
  /// Where the map's cells sit on the input (methods on a backbone's patch grid give it; null when
  /// the method does not know it, e.g. maps that are already at the input size).
  const GridGeometry* grid = nullptr;
};

class MapPostprocess {
 public:
  static constexpr const char* family = "postprocess";
  virtual ~MapPostprocess() = default;
  /// (N,1,h,w) float maps -> (N,1,h',w'), on the maps' device.
  virtual torch::Tensor apply(const torch::Tensor& maps, const MapContext& ctx) const = 0;
};

/// Bilinear resampling of a grid map (N,C,h,w) onto every pixel of a (height, width) input, where
/// the map's cells sit as `grid` says; values beyond the outer cells are the outer cells'.
torch::Tensor upsample_on_grid(const torch::Tensor& maps, int64_t height, int64_t width, const GridGeometry& grid);

class PostprocessChain;

/// A method's scoring slots, built: the postprocess chain and the image_score reducer.
class MapScoring {
 public:
  MapScoring() = default;
  /// Builds every part. `method` names the method in errors; `own_scores` says whether the method
  /// has image scores of its own in this configuration (reducer "method" needs them).
  MapScoring(const std::vector<Slot<MapPostprocess>>& chain, const Slot<ImageScoreReducer>& image_score,
             const std::string& method, bool own_scores);
  MapScoring(const PostprocessChain& chain, const Slot<ImageScoreReducer>& image_score,
             const std::string& method, bool own_scores);
  /// The chain applied in order to raw maps (N,1,h,w); the maps themselves (as float) when it is empty.
  torch::Tensor postprocess(const torch::Tensor& raw, const MapContext& ctx) const;
  /// Image scores (N): the reducer on `raw` or `final` as it asks, or `own` for reducer "method".
  torch::Tensor scores(const torch::Tensor& raw, const torch::Tensor& final, const torch::Tensor& own = {}) const;
  bool uses_method_scores() const { return reducer_ && reducer_->uses_method_scores(); }
  bool reads_raw_map() const { return reducer_ && reducer_->reads_raw_map(); }

 private:
  std::vector<std::shared_ptr<const MapPostprocess>> chain_;
  std::shared_ptr<const ImageScoreReducer> reducer_;
  std::string method_;
};

namespace metric {

/// The `map` option of the map reducers: which of the method's maps they read.
template <class V>
void score_map_field(V& v, std::string& map) {
  v("map", map,
    "which map to reduce: \"final\" (after the method's postprocess chain) or \"raw\" (before it: e.g. the "
    "patch-grid distances of PatchCore and AnomalyDINO, SimpleNet's raw patch scores)",
    Check::one_of({"final", "raw"}));
}

struct MaxOptions {
  std::string map = "final";
  template <class V>
  void fields(V& v) {
    score_map_field(v, map);
  }
};
/// Maximum of each map.
struct MaxReducer : ImageScoreReducer {
  using Options = MaxOptions;
  explicit MaxReducer(const Options& o = {}) : options(o) {}
  torch::Tensor reduce(const torch::Tensor& maps) const override;
  bool reads_raw_map() const override { return options.map == "raw"; }
  Options options;
};

struct AvgPoolMaxOptions {
  int kernel = 21;
  std::string map = "final";
  template <class V>
  void fields(V& v) {
    v("kernel", kernel,
      "side k of the k x k mean filter (stride 1, zero padding k/2 counted in the mean) before the max; "
      "21 as in DRAEM's test code",
      Check::at_least(1));
    score_map_field(v, map);
  }
};
/// Maximum of the k x k average-pooled map (DRAEM, Zavrtanik et al. ICCV 2021, test_DRAEM.py:
/// avg_pool2d(out_mask, 21, stride=1, padding=21 // 2) then max).
struct AvgPoolMaxReducer : ImageScoreReducer {
  using Options = AvgPoolMaxOptions;
  explicit AvgPoolMaxReducer(const Options& o = {}) : options(o) {}
  torch::Tensor reduce(const torch::Tensor& maps) const override;
  bool reads_raw_map() const override { return options.map == "raw"; }
  /// The mean-filtered maps (N,1,H,W) whose maximum reduce() takes; the zero padding counts in the
  /// mean (avg_pool2d's count_include_pad), so values near the border are damped as in DRAEM.
  torch::Tensor pooled(const torch::Tensor& maps) const;
  Options options;
};

struct TopKMeanOptions {
  double fraction = 0.01;
  std::string map = "final";
  template <class V>
  void fields(V& v) {
    v("fraction", fraction,
      "mean of the highest fraction q of the map's values (at least one value; count = floor(q * H * W))",
      Check{0.0, 1.0, true, false, {}});
    score_map_field(v, map);
  }
};
/// Mean of the top q of each map (AnomalyDINO, Damm et al. 2024, src/post_eval.py mean_top1p: the
/// mean of the int(0.01 * count) largest patch distances, the maximum when that is 0).
struct TopKMeanReducer : ImageScoreReducer {
  using Options = TopKMeanOptions;
  explicit TopKMeanReducer(const Options& o = {}) : options(o) {}
  torch::Tensor reduce(const torch::Tensor& maps) const override;
  bool reads_raw_map() const override { return options.map == "raw"; }
  Options options;
};

/// Marker: use the image scores the method computes itself (e.g. a classification head).
struct MethodScoreReducer : ImageScoreReducer {
  using Options = NoOptions;
  explicit MethodScoreReducer(const Options& = {}) {}
  torch::Tensor reduce(const torch::Tensor& maps) const override;
  bool uses_method_scores() const override { return true; }
};

struct UpsampleOptions {
  bool align = false;
  template <class V>
  void fields(V& v) {
    v("align", align,
      "upsample each map cell onto the input pixel its receptive field is centred on (the backbone's padding "
      "decides it; torchvision ResNets sit (s-1)/2 px up-left and TF-padded MobileNets (s-1)/2 px down-right of "
      "where plain bilinear upsampling puts a stride-s grid); only for methods on a backbone's patch grid "
      "(patchcore, padim, anomalydino). The references upsample plainly (default false)");
  }
};
/// Bilinear resize to the input size: plain (align_corners = false, as torch's F.interpolate
/// default) or, with `align`, onto the grid geometry the method gives. Maps already at the input
/// size pass unchanged unless aligned.
struct UpsamplePostprocess : MapPostprocess {
  using Options = UpsampleOptions;
  explicit UpsamplePostprocess(const Options& o = {}) : options(o) {}
  torch::Tensor apply(const torch::Tensor& maps, const MapContext& ctx) const override;
  Options options;
};

/// log(1 + score) of maps with scores >= 0. Before upsampling and smoothing, a strong small defect
/// then spreads less into the normal pixels around it.
struct Log1pPostprocess : MapPostprocess {
  using Options = NoOptions;
  explicit Log1pPostprocess(const Options& = {}) {}
  torch::Tensor apply(const torch::Tensor& maps, const MapContext& ctx) const override;
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
  torch::Tensor apply(const torch::Tensor& maps, const MapContext& ctx) const override;
  int kernel_size() const;
  Options options;
};

struct MeanFilterOptions {
  int kernel = 3;
  std::string border = "symmetric";
  template <class V>
  void fields(V& v) {
    v("kernel", kernel, "odd side k of the k x k box filter", Check::odd_at_least(1));
    v("border", border,
      "border extension: \"symmetric\" repeats the edge sample (d c b a | a b c d), \"reflect\" does not "
      "(d c b | a b c d), \"zeros\" pads with zeros that count in the mean, so values near the border are "
      "damped (scipy.signal.convolve2d mode \"same\" with ones(k, k) / k^2: TransFusion's Experiment.py)",
      Check::one_of({"symmetric", "reflect", "zeros"}));
  }
};
/// k x k box filter, stride 1, output of the input's size.
struct MeanFilterPostprocess : MapPostprocess {
  using Options = MeanFilterOptions;
  explicit MeanFilterPostprocess(const Options& o = {});
  torch::Tensor apply(const torch::Tensor& maps, const MapContext& ctx) const override;
  Options options;
};

}  // namespace metric

/// A method's `postprocess` option: registered MapPostprocess parts, applied in order. In TOML an
/// array of tables, one per part ([[method.postprocess]] type = "gaussian" sigma = 4.0 ...), or
/// `postprocess = []` for none; a config's array replaces the default one. The method's default is
/// kept as TOML text and read on first use, so options structs build before the parts' plugin loads.
class PostprocessChain {
 public:
  using adfw_custom_field = void;
  PostprocessChain() = default;
  /// A default chain: one TOML table per part, as text ("type = 'gaussian'\nsigma = 4.0").
  explicit PostprocessChain(std::vector<std::string> parts) : defaults_(std::move(parts)) {}
  /// The parts, in order (the default is read on the first call: its parts must be registered).
  const std::vector<Slot<MapPostprocess>>& parts() const;

  // --- options.hpp custom-field protocol ---
  static std::string type_name() { return "array of postprocess component tables"; }
  void read_toml(const toml::node& n, const std::string& path);
  toml::array to_toml() const;
  std::string default_str() const;
  std::vector<OptionDoc> docs() const { return {}; }

 private:
  std::vector<std::string> defaults_;
  mutable std::vector<Slot<MapPostprocess>> parts_;
  mutable bool read_ = false;
};

/// An image_score slot whose default differs from the reducer's own options (PatchCore's and
/// AnomalyDINO's reducers read the raw map): the default is TOML text, read on first use. A config
/// table of the default's type (or without a type) is laid over the default, one of another type
/// starts afresh, as includes and --set merge tables.
class ImageScoreSlot {
 public:
  using adfw_custom_field = void;
  explicit ImageScoreSlot(std::string toml_default) : default_(std::move(toml_default)) {}
  const Slot<ImageScoreReducer>& slot() const;

  // --- options.hpp custom-field protocol ---
  static std::string type_name() { return Slot<ImageScoreReducer>::type_name(); }
  void read_toml(const toml::node& n, const std::string& path);
  toml::table to_toml() const { return slot().to_toml(); }
  std::string default_str() const;
  std::vector<OptionDoc> docs() const { return {}; }

 private:
  std::string default_;
  mutable Slot<ImageScoreReducer> slot_;
  mutable bool read_ = false;
};

/// The chain most methods default to: plain bilinear upsampling of the raw map to the input size,
/// then Gaussian smoothing (metric::GaussianOptions: kernel_size 0 = 2 ceil(3 sigma) + 1).
PostprocessChain upsample_gaussian_chain(double sigma, int kernel_size = 0, const std::string& border = "symmetric");

/// What a method says to a config that still has the `smoothing` table, which its `postprocess`
/// chain replaced.
const char* smoothing_retired();

}  // namespace adfw
