// Exact threshold-free detection metrics on flat arrays (no LibTorch needed).
//
// Every distinct score value is a threshold, as in scikit-learn's roc_curve /
// precision_recall_curve: tied scores enter the curves together. Work is O(n log n) time (radix
// sorts of 32-bit order-preserving keys) and about 8 bytes of scratch memory per defect-free pixel
// plus 8 per defect pixel, split over `threads` worker threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace adfw::metric {

/// Values of one binary ranking problem (image scores vs labels, or pixels vs masks).
struct BinaryMetrics {
  double auroc = 0;         ///< area under the ROC curve (trapezoid), ties = half credit
  double ap = 0;            ///< average precision, step-wise (sklearn average_precision_score)
  double f1_max = 0;        ///< best F1 over all thresholds
  double f1_threshold = 0;  ///< the score threshold (score >= t is anomalous) reaching f1_max
  int64_t positives = 0;
  int64_t negatives = 0;
};

/// Which parts of BinaryMetrics a caller needs; only those are checked for feasibility (AUROC
/// needs both classes, AP and F1 need positives).
struct BinaryRequest {
  bool auroc = true;
  bool ap = true;
  bool f1 = true;
};

/// Image-level (or any) scores vs 0/1 labels. `what` names the data in error messages
/// ("image scores"). Throws adfw::Error for length mismatch, NaN/inf scores, labels not 0/1 and
/// missing classes.
BinaryMetrics binary_metrics(const float* scores, const int64_t* labels, std::size_t n,
                             const BinaryRequest& request = {}, const std::string& what = "image scores");
BinaryMetrics binary_metrics(const std::vector<float>& scores, const std::vector<int64_t>& labels,
                             const BinaryRequest& request = {}, const std::string& what = "image scores");

/// What to compute over the pixels of a whole test set.
struct PixelRequest {
  bool auroc = true;
  bool ap = true;
  bool f1 = true;
  std::vector<double> aupro_limits = {0.3};  ///< FPR integration limits in (0, 1]; empty = no AUPRO
  int threads = 0;                           ///< worker threads; 0 = all available cores
};

struct PixelMetrics {
  BinaryMetrics binary;             ///< AUROC / AP / F1-max over all pixels (those requested)
  std::map<double, double> aupro;   ///< FPR limit -> normalised area under the PRO curve
  int64_t regions = 0;              ///< 8-connected ground-truth regions of the set
};

/// Pixel metrics of `n` maps of h x w float scores against 0/1 masks (row-major, image after image).
///
/// AUPRO follows MVTec AD's reference evaluation (Bergmann et al., IJCV 2021, "The MVTec Anomaly
/// Detection Dataset", Sec. 3.4; pro_curve_util.py / generic_util.py of its evaluation code), without
/// threshold sampling: regions are the 8-connected components of each ground-truth mask; at every
/// distinct score t, FPR(t) = defect-free pixels with score >= t / all defect-free pixels of the set,
/// PRO(t) = mean over all regions of the fraction of the region with score >= t; the curve starts at
/// (0, 0) and ends at (1, 1); it is integrated with the trapezoid rule up to the limit (interpolating
/// linearly at the limit) and divided by the limit.
PixelMetrics pixel_metrics(const float* maps, const uint8_t* masks, int64_t n, int64_t h, int64_t w,
                           const PixelRequest& request = {});

/// Order-preserving 32-bit key of a float, inverted so that ascending keys mean descending scores
/// (-0 and +0 share a key). Exposed for tests and benchmarks.
uint32_t descending_key(float score);
float score_of_descending_key(uint32_t key);

}  // namespace adfw::metric
