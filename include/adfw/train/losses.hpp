// The registered losses (family "loss", see loss.hpp), and the per-pixel similarity maps some
// methods also use at inference (ssim_map, msgms_map).
//
// Every loss first computes an element-wise loss l and reduces it with weighted_mean(l, w):
// sum(w * l) / sum(w) with w broadcast to l's shape, the plain mean when w is undefined, and an
// exact zero that stays in the autograd graph when sum(w) == 0. Weights are meant to be >= 0.
//
//   l1          |p - t|
//   l2          (p - t)^2 (mean squared error)
//   smooth_l1   torch's SmoothL1: 0.5 (p-t)^2 / beta where |p-t| < beta, else |p-t| - 0.5 beta
//   bce         binary cross-entropy on logits or on probabilities
//   focal       focal loss (Lin et al., ICCV 2017) on logits, probabilities or a K-class softmax
//   ssim        1 - SSIM (Wang et al. 2004) with DRAEM's window and constants
//   msgms       multi-scale gradient magnitude similarity (RIAD, Zavrtanik et al. 2021)
//   truncated_l1  SimpleNet / SuperSimpleNet margin loss on scores
//   hard_feature  EfficientAD's student loss: the mean of the squared errors at or above their q-quantile
//
// Shapes: prediction and target must have the same shape, except for focal with
// input = "softmax" (prediction (N,K,...) logits, target (N,1,...) class indices). A mismatch
// throws adfw::Error naming both shapes.
#pragma once

#include <string>

#include <torch/torch.h>

#include "adfw/core/options.hpp"
#include "adfw/train/loss.hpp"

namespace adfw {

/// sum(w * l) / sum(w), with `weight` broadcast to `loss`'s shape (e.g. (N,1,1,1) per sample,
/// (N,1,H,W) per pixel). Undefined weight = loss.mean(). sum(w) == 0 gives (l * 0).sum(): zero,
/// with a defined (zero) gradient. Decided on the device, without a host synchronisation.
/// Throws Error when the weight does not broadcast to the loss's shape.
torch::Tensor weighted_mean(const torch::Tensor& loss, const torch::Tensor& weight);

/// Per-pixel SSIM (N,1,H,W) of images a and b (N,C,H,W), the mean over channels of the
/// per-channel SSIM map. Gaussian window `window` x `window` (odd) with standard deviation
/// `sigma`, normalised to sum 1, applied with zero padding window/2 (as F.conv2d(padding=w//2)
/// in DRAEM loss.py); C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = `data_range`. data_range <= 0
/// selects DRAEM's automatic rule from `a`: L = (max(a) > 128 ? 255 : 1) - (min(a) < -0.5 ? -1 : 0).
torch::Tensor ssim_map(const torch::Tensor& a, const torch::Tensor& b, int window = 11, double sigma = 1.5,
                       double data_range = 1.0);

/// Multi-scale gradient magnitude dissimilarity (N,1,H,W) of images a and b (N,C,H,W), as RIAD's
/// MSGMS_Score (plutoyuxie/RIAD losses/gms_loss.py): (1 - sum_s GMS_s) / scales, each scale's GMS
/// map resized bilinearly (align_corners false) to H x W. Identical images give (1 - scales) /
/// scales (-3/4 for 4 scales), not 0. Per scale: images are made grey by the
/// channel mean, scale s is avg_pool(2, stride 2) applied s times, each grey image goes through
/// a 3x3 median filter (zero padding, as kornia's MedianBlur) and Prewitt filters
/// ([-1 0 1] x3 rows and [1 1 1; 0 0 0; -1 -1 -1], both / 3, no padding), g = sqrt(gx^2 + gy^2),
/// GMS = (2 g_a g_b + c) / (g_a^2 + g_b^2 + c) with c = 0.0026 (the reference's constant, which
/// sits relative to RIAD's [-1, 1] images). g is floored at 1e-6 so the square root keeps a finite gradient on flat regions.
/// Every scale must keep at least 3 x 3 pixels (H, W >= 3 * 2^(scales-1)).
torch::Tensor msgms_map(const torch::Tensor& a, const torch::Tensor& b, int scales = 4);

// ---------------------------------------------------------------------------------------------

/// l1: |p - t|. No options.
class L1Loss final : public Loss {
 public:
  using Options = NoOptions;
  explicit L1Loss(const Options& = {}) {}
  torch::Tensor forward(const torch::Tensor& prediction, const torch::Tensor& target,
                        const torch::Tensor& weight = {}) const override;
};

/// l2: (p - t)^2, the mean squared error. No options.
class L2Loss final : public Loss {
 public:
  using Options = NoOptions;
  explicit L2Loss(const Options& = {}) {}
  torch::Tensor forward(const torch::Tensor& prediction, const torch::Tensor& target,
                        const torch::Tensor& weight = {}) const override;
};

struct SmoothL1Options {
  double beta = 1.0;
  template <class V>
  void fields(V& v) {
    v("beta", beta,
      "where |p - t| < beta the loss is 0.5 (p - t)^2 / beta, elsewhere |p - t| - 0.5 beta (torch's "
      "SmoothL1Loss); beta = 0 is L1 (default 1.0)",
      Check::at_least(0));
  }
};

class SmoothL1Loss final : public Loss {
 public:
  using Options = SmoothL1Options;
  explicit SmoothL1Loss(const Options& options) : options_(options) {}
  torch::Tensor forward(const torch::Tensor& prediction, const torch::Tensor& target,
                        const torch::Tensor& weight = {}) const override;

 private:
  Options options_;
};

struct BCEOptions {
  std::string input = "logits";
  template <class V>
  void fields(V& v) {
    v("input", input,
      "what the prediction holds: logits (sigmoid applied inside, numerically stable) or probabilities "
      "in [0, 1] (log clamped at -100 as torch's binary_cross_entropy); targets in [0, 1] "
      "(default \"logits\")",
      Check::one_of({"logits", "probabilities"}));
  }
};

class BCELoss final : public Loss {
 public:
  using Options = BCEOptions;
  explicit BCELoss(const Options& options) : options_(options) {}
  torch::Tensor forward(const torch::Tensor& prediction, const torch::Tensor& target,
                        const torch::Tensor& weight = {}) const override;

 private:
  Options options_;
};

struct FocalOptions {
  double gamma = 2.0;
  double alpha = -1.0;
  std::string input = "logits";
  double smooth = 0.0;
  template <class V>
  void fields(V& v) {
    v("gamma", gamma,
      "focusing exponent: loss = -alpha_t (1 - p_t)^gamma log p_t; 0 = cross-entropy (default 2; "
      "SuperSimpleNet uses 4)",
      Check::at_least(0));
    v("alpha", alpha,
      "class balance: alpha_t = alpha for anomalous (target 1; softmax: every class > 0) and 1 - alpha for "
      "normal elements; negative (-1) = no balancing (default -1)",
      Check::range(-1, 1));
    v("input", input,
      "logits: prediction and target of the same shape, p = sigmoid(prediction), stable log-sigmoid; "
      "probabilities: prediction already in [0, 1], log clamped at -100 (SuperSimpleNet common/loss.py); "
      "softmax: prediction (N,K,...) logits, target (N,1,...) class indices (integer part), p = softmax "
      "over dim 1 (DRAEM loss.py FocalLoss) (default \"logits\")",
      Check::one_of({"logits", "probabilities", "softmax"}));
    v("smooth", smooth,
      "softmax only: DRAEM's label smoothing s, one-hot clamped to [s/(K-1), 1-s] and p_t = sum(onehot p) + s "
      "(the DRAEM reference uses 1e-5; default 0 = plain focal loss)",
      Check::range(0, 0.5));
  }
};

class FocalLoss final : public Loss {
 public:
  using Options = FocalOptions;
  /// Throws ConfigError when smooth > 0 is combined with a non-softmax input.
  explicit FocalLoss(const Options& options);
  torch::Tensor forward(const torch::Tensor& prediction, const torch::Tensor& target,
                        const torch::Tensor& weight = {}) const override;
  /// The element-wise focal loss before reduction: the prediction's shape, or (N,1,...) for softmax.
  torch::Tensor elementwise(const torch::Tensor& prediction, const torch::Tensor& target) const;

 private:
  Options options_;
};

struct SSIMOptions {
  int window = 11;
  double sigma = 1.5;
  double data_range = 1.0;
  template <class V>
  void fields(V& v) {
    v("window", window, "side of the Gaussian window, odd (default 11, as DRAEM)", Check::at_least(1));
    v("sigma", sigma, "standard deviation of the Gaussian window in pixels (default 1.5)", Check::positive());
    v("data_range", data_range,
      "dynamic range L of the pixel values, in C1 = (0.01 L)^2 and C2 = (0.03 L)^2; 0 = DRAEM's automatic "
      "rule from the prediction: (max > 128 ? 255 : 1) - (min < -0.5 ? -1 : 0) (DRAEM loss.py SSIM, "
      "val_range=None: 0, DRAEM's default loss list uses it; RIAD ssim_loss.py fixes C1 = 0.01^2, "
      "C2 = 0.03^2: 1) (default 1.0)",
      Check::at_least(0));
  }
};

/// ssim: 1 - SSIM per pixel, weighted mean over the (N,1,H,W) map (weights broadcast to it).
/// Prediction and target (N,C,H,W) images.
class SSIMLoss final : public Loss {
 public:
  using Options = SSIMOptions;
  /// Throws ConfigError for an even window.
  explicit SSIMLoss(const Options& options);
  torch::Tensor forward(const torch::Tensor& prediction, const torch::Tensor& target,
                        const torch::Tensor& weight = {}) const override;

 private:
  Options options_;
};

struct MSGMSOptions {
  int scales = 4;
  template <class V>
  void fields(V& v) {
    v("scales", scales, "number of scales, each half the size of the previous one (default 4, as RIAD)",
      Check::range(1, 8));
  }
};

/// msgms: the mean over scales of the weighted mean of 1 - GMS at that scale, as RIAD's
/// MSGMS_Loss: sum_s mean(1 - GMS_s) / scales over the unpadded (h_s - 2) x (w_s - 2) maps (see
/// msgms_map for GMS). Per-sample weights broadcast as they are; per-pixel weights (N,1,H,W) are
/// average-pooled like the images and cropped by the Prewitt border at each scale.
class MSGMSLoss final : public Loss {
 public:
  using Options = MSGMSOptions;
  explicit MSGMSLoss(const Options& options) : options_(options) {}
  torch::Tensor forward(const torch::Tensor& prediction, const torch::Tensor& target,
                        const torch::Tensor& weight = {}) const override;

 private:
  Options options_;
};

struct TruncatedL1Options {
  double margin = 0.5;
  template <class V>
  void fields(V& v) {
    v("margin", margin,
      "margin th: normal elements cost max(p + th, 0), anomalous ones max(-p + th, 0) (SimpleNet dsc_margin, "
      "SuperSimpleNet th; default 0.5)",
      Check::at_least(0));
  }
};

/// truncated_l1: prediction = scores (higher = more anomalous), target = 0/1 mask of the same
/// shape (> 0 = anomalous). Loss = weighted mean over normal elements of max(p + margin, 0) +
/// weighted mean over anomalous elements of max(-p + margin, 0); a part with no elements (or
/// zero total weight) contributes 0 (SuperSimpleNet train.py).
class TruncatedL1Loss final : public Loss {
 public:
  using Options = TruncatedL1Options;
  explicit TruncatedL1Loss(const Options& options) : options_(options) {}
  torch::Tensor forward(const torch::Tensor& prediction, const torch::Tensor& target,
                        const torch::Tensor& weight = {}) const override;

 private:
  Options options_;
};

struct HardFeatureOptions {
  double quantile = 0.999;
  template <class V>
  void fields(V& v) {
    v("quantile", quantile,
      "only squared errors at or above this quantile of all of them count (torch.quantile, linear "
      "interpolation, over the whole tensor); EfficientAD: 0.999; 0 = the plain mean squared error "
      "(default 0.999)",
      Check::range(0, 1));
  }
};

/// hard_feature: EfficientAD's hard-feature loss (Batzner et al., WACV 2024, eq. 1;
/// nelson1425/EfficientAD efficientad.py): d = (p - t)^2, d_hard = quantile(d, q) over every
/// element of the batch, loss = weighted mean of d over the elements with d >= d_hard. The
/// threshold is not differentiated (only the selection depends on it). Weights broadcast to d; the
/// quantile itself is taken over all elements, unweighted.
class HardFeatureLoss final : public Loss {
 public:
  using Options = HardFeatureOptions;
  explicit HardFeatureLoss(const Options& options) : options_(options) {}
  torch::Tensor forward(const torch::Tensor& prediction, const torch::Tensor& target,
                        const torch::Tensor& weight = {}) const override;
  /// d_hard = quantile((p - t)^2, q) (a 0-dim tensor, no gradient).
  torch::Tensor threshold(const torch::Tensor& prediction, const torch::Tensor& target) const;

 private:
  Options options_;
};

}  // namespace adfw
