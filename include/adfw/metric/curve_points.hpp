// The ROC, precision-recall and PRO curves themselves, thinned to a few hundred points for plots
// (run reports). The metric values come from curves.hpp; these traces walk the same exact curves
// (every distinct score a threshold) and keep a point whenever a coordinate has moved by at least
// 1 / max_points since the last kept one, plus the last point.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace adfw::metric {

struct CurveTraceOptions {
  int max_points = 400;  ///< resolution: a point is kept when a coordinate moved by 1 / max_points
  bool pro = true;       ///< also trace the PRO curve (pixel traces only)
  int threads = 0;       ///< worker threads for the pixel sort; 0 = all cores
};

/// Points in descending threshold order (score >= threshold counts as anomalous). The curves
/// start at the first threshold; (0, 0) of ROC and PRO lies before it.
struct CurveTrace {
  std::vector<float> threshold;
  std::vector<double> fpr, tpr, precision;  ///< ROC = (fpr, tpr); PR = (tpr as recall, precision)
  std::vector<double> pro;                  ///< PRO at each point (empty unless requested)
  int64_t positives = 0, negatives = 0, regions = 0;
  /// {"threshold": [...], "fpr": [...], "tpr": [...], "precision": [...], "pro": [...], "positives", ...}
  nlohmann::json to_json() const;
};

/// Image scores vs 0/1 labels. Needs both classes; throws adfw::Error like binary_metrics.
CurveTrace image_curve_trace(const float* scores, const int64_t* labels, std::size_t n,
                             const CurveTraceOptions& options = {});

/// Pixels of `n` h x w maps vs 0/1 masks (row-major, image after image); PRO over the masks'
/// 8-connected regions as in pixel_metrics. Needs defect and defect-free pixels.
CurveTrace pixel_curve_trace(const float* maps, const uint8_t* masks, int64_t n, int64_t h, int64_t w,
                             const CurveTraceOptions& options = {});

}  // namespace adfw::metric
