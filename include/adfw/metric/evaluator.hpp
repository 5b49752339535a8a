// The evaluator the run engine calls after testing: every requested metric over the whole test
// set (pixel metrics share one pass), per-defect-type image and pixel metrics, and the report files.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "adfw/core/options.hpp"
#include "adfw/metric/curves.hpp"

namespace adfw {

/// All test outputs of one evaluation. Tensors may live on any device; they are copied to the CPU.
struct EvalInput {
  torch::Tensor maps;          ///< (N,H,W) or (N,1,H,W) float anomaly maps; undefined = image metrics only
  torch::Tensor masks;         ///< same shape, 0/1 (uint8, bool or float)
  torch::Tensor labels;        ///< (N) 0/1
  torch::Tensor image_scores;  ///< (N); undefined = max of each map
  std::vector<std::string> defect_types;  ///< N entries ("good" for normal images) or empty
  std::vector<std::string> paths;         ///< N image paths or empty
};

struct EvalOptions {
  std::vector<std::string> metrics = {"image_auroc", "image_ap",     "image_f1_max", "pixel_auroc",
                                      "pixel_ap",    "pixel_f1_max", "aupro"};
  double fpr_limit = 0.3;
  int threads = 0;
  int overlays = 8;
  int batch_size = 8;
  bool save_maps = false;
  int gallery = 4;
  template <class V>
  void fields(V& v) {
    v("metrics", metrics, "metric names to compute (see `adfw list metric`)");
    v("fpr_limit", fpr_limit, "FPR integration limit of aupro", Check{0.0, 1.0, true, false, {}});
    v("threads", threads, "worker threads for the pixel metrics (0 = all cores)", Check::at_least(0));
    v("overlays", overlays, "heatmap overlays written to the run's maps/ folder (a sample of the test set; 0 = none)",
      Check::at_least(0));
    v("batch_size", batch_size, "test-time batch size of the run engine", Check::at_least(1));
    v("save_maps", save_maps,
      "also write every test map to the run's maps.safetensors (anomaly_maps, masks, labels, image_scores; "
      "image paths and defect types in its metadata), the input of `adfw eval-maps` (default false)");
    v("gallery", gallery,
      "images per group in the report gallery (gallery/): the worst false positives, the worst false negatives "
      "and typical true positives at the image F1-max threshold (0 = no gallery)",
      Check::at_least(0));
  }
};

struct EvalResult {
  nlohmann::json values;                       ///< metric key -> value (plus thresholds, FPR limit)
  std::map<std::string, double> per_defect_auroc;  ///< defect type -> image AUROC vs all normal images
  /// defect type -> pixel AUROC / AP / AUPRO (those the requested metrics need, no F1) over the
  /// pixels of that type's images and of all normal images. Pooled pixel metrics weigh each type by
  /// its defect area, so one type with large masks can dominate them; this breakdown shows it.
  std::map<std::string, metric::PixelMetrics> per_defect_pixel;
  /// image type ("good" included) -> median map value over the normal (mask 0) pixels of that
  /// type's images. Defect images whose normal surface scores above the normal images' shows a shift
  /// between the sets, which caps pooled pixel metrics whatever the method does at the defects.
  std::map<std::string, double> normal_pixel_median;
  std::vector<float> image_scores;             ///< the scores used, one per image
  double image_threshold = 0;                  ///< image F1-max threshold (when computed)
  double pixel_threshold = 0;                  ///< pixel F1-max threshold (when computed)
  int64_t images = 0, anomalous_images = 0;
  nlohmann::json to_json() const;
};

/// Computes the requested metrics. Throws adfw::Error for inconsistent shapes, NaN/inf values,
/// masks that are not 0/1 and sets a metric cannot be computed on (which metric needs what).
EvalResult evaluate(const EvalInput& input, const EvalOptions& options = {});

/// metrics.json: {"metrics": values, "per_defect_type": {type: {"image_auroc", "pixel_auroc", "pixel_ap",
/// "aupro", "normal_pixel_median"}}, "counts": ..., "protocol": protocol} (pixel keys only where
/// computed; "good" carries only its normal_pixel_median).
/// (protocol: which split, checkpoint, threshold source ... as the caller states it). Atomic.
void write_metrics_json(const std::filesystem::path& file, const EvalResult& result,
                        const nlohmann::json& protocol);

/// per_image.csv: path,defect_type,label,score (RFC 4180 quoting). Atomic.
void write_per_image_csv(const std::filesystem::path& file, const EvalInput& input, const EvalResult& result);

struct OverlayOptions {
  int count = 8;           ///< images to draw (three quarters anomalous where available)
  std::vector<int64_t> indices;  ///< these images, in this order, instead of a sample (default: none)
  double threshold = NAN;  ///< pixel threshold of the prediction panel; NaN = result.pixel_threshold
};

/// One PNG per sampled (or listed) image: input | ground-truth contour | heatmap | thresholded prediction,
/// each panel at the map's size. The input is read from `input.paths` (a grey panel when
/// unreadable). Heatmaps share one colour scale over the set: from its minimum (blue) with the
/// prediction threshold at mid-scale (green) to twice that distance (red; higher values clip), or
/// the set's min-max without a threshold above the minimum. Returns the written files.
std::vector<std::filesystem::path> write_overlays(const std::filesystem::path& dir, const EvalInput& input,
                                                  const EvalResult& result, const OverlayOptions& options = {});

}  // namespace adfw
