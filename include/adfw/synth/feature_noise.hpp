// Feature-space synthetic anomalies (family "feature_noise"), applied to feature maps
// (N,C,h,w) during training.
//
//   simplenet (SimpleNet, CVPR 2023; DonaldRR/SimpleNet simplenet.py): the batch is
//     duplicated; the first half stays clean, the second gets N(mean, std^2) noise over the
//     whole map (std 0.015), so its mask is all ones.
//   supersimplenet (SuperSimpleNet, ICPR 2024; blaz-r/SuperSimpleNet model/supersimplenet.py,
//     AnomalyGenerator): the batch is duplicated and every one of the 2N items gets its own
//     binarised Perlin mask at feature resolution (threshold 0.2 MVTec, 0.6 VisA/supervised;
//     no rotation), emptied with probability 0.5 ("no_anomaly: empty"); noise is added only
//     inside the mask. The reference code only zeroes the first half in its non-Perlin
//     branch; `clean_first_half` reproduces that split on request.
//   Mixed supervision (given GT masks/labels): GT masks are brought to feature resolution
//   (bilinear, then >= 0.5 -> 1, train.py) and kept: the output mask is GT OR noise mask and
//   the label is GT label OR any(mask). `bad = false` adds no noise to images labelled
//   anomalous; `overlap = false` adds none inside GT regions (reference: supervised runs use
//   bad = true, overlap = false; unsupervised runs overlap = true, which is moot there).
//   Every random draw (noise, Perlin masks) can also be given instead of drawn (FeatureNoiseDraws),
//   so a test can replay the reference's draws.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include <torch/torch.h>

#include "adfw/core/options.hpp"
#include "adfw/synth/perlin.hpp"

namespace adfw {

struct FeatureNoiseResult {
  torch::Tensor features;  ///< (2N,C,h,w) when duplicating, else (N,C,h,w)
  torch::Tensor mask;      ///< (2N or N,1,h,w) float 0/1: where noise was added, or GT anomalous
  torch::Tensor labels;    ///< (2N or N,) int64 0/1
};

/// The random part of one application: the Gaussian noise over the (duplicated) batch and, for
/// Perlin-masked noise, the binary masks (one per item, (B,1,h,w)).
struct FeatureNoiseDraws {
  torch::Tensor noise;   ///< (B,C,h,w), B = 2N when duplicating
  torch::Tensor perlin;  ///< (B,1,h,w) 0/1; undefined where the noise covers the whole map
};

class FeatureNoise {
 public:
  static constexpr const char* family = "feature_noise";
  virtual ~FeatureNoise() = default;
  /// The draws for `features` (N,C,h,w), all from `rng` (Perlin masks first, then a seed for the
  /// Gaussian noise, drawn on the CPU and moved to the features' device).
  virtual FeatureNoiseDraws draw(const torch::Tensor& features, std::mt19937_64& rng) const = 0;
  /// `features` (N,C,h,w) on any device. `gt_masks` (N,1,H,W) at any resolution and `labels`
  /// (N,) may be undefined (unsupervised: all normal). `draws` as draw() gives them.
  virtual FeatureNoiseResult apply(const torch::Tensor& features, const torch::Tensor& gt_masks,
                                   const torch::Tensor& labels, const FeatureNoiseDraws& draws) const = 0;
  /// The same with the draws taken from `rng`, so a fixed generator state gives a fixed result.
  FeatureNoiseResult apply(const torch::Tensor& features, const torch::Tensor& gt_masks, const torch::Tensor& labels,
                           std::mt19937_64& rng) const {
    return apply(features, gt_masks, labels, draw(features, rng));
  }
  FeatureNoiseResult apply(const torch::Tensor& features, std::mt19937_64& rng) const {
    return apply(features, torch::Tensor(), torch::Tensor(), rng);
  }
  FeatureNoiseResult apply(const torch::Tensor& features, uint64_t seed) const {
    std::mt19937_64 rng(seed);
    return apply(features, rng);
  }
};

/// GT masks (N,1,H,W) to feature resolution: bilinear resize, then >= 0.5 -> 1
/// (SuperSimpleNet train.py).
torch::Tensor downscale_mask(const torch::Tensor& masks, int64_t h, int64_t w);

struct SimpleNetNoiseOptions {
  double noise_mean = 0.0;
  double noise_std = 0.015;
  template <class V>
  void fields(V& v) {
    v("noise_mean", noise_mean, "mean of the Gaussian feature noise", Check::range(-10, 10));
    v("noise_std", noise_std, "standard deviation of the Gaussian feature noise (SimpleNet: 0.015)",
      Check::positive());
  }
};

class SimpleNetNoise final : public FeatureNoise {
 public:
  using Options = SimpleNetNoiseOptions;
  explicit SimpleNetNoise(const Options& options) : options_(options) {}
  using FeatureNoise::apply;
  FeatureNoiseDraws draw(const torch::Tensor& features, std::mt19937_64& rng) const override;
  FeatureNoiseResult apply(const torch::Tensor& features, const torch::Tensor& gt_masks,
                           const torch::Tensor& labels, const FeatureNoiseDraws& draws) const override;

 private:
  Options options_;
};

struct SuperSimpleNetNoiseOptions {
  double noise_mean = 0.0;
  double noise_std = 0.015;
  bool duplicate = true;
  bool clean_first_half = false;
  bool bad = true;
  bool overlap = true;
  PerlinOptions perlin = [] {
    PerlinOptions p;
    p.threshold = 0.2;
    p.min_rotation = p.max_rotation = 0.0;
    p.empty_probability = 0.5;
    return p;
  }();

  template <class V>
  void fields(V& v) {
    v("noise_mean", noise_mean, "mean of the Gaussian feature noise", Check::range(-10, 10));
    v("noise_std", noise_std, "standard deviation of the Gaussian feature noise (SuperSimpleNet: 0.015)",
      Check::positive());
    v("duplicate", duplicate, "concatenate the batch with itself before adding noise (SuperSimpleNet: true)");
    v("clean_first_half", clean_first_half,
      "with duplicate: add no noise to the first copy (SimpleNet's split; SuperSimpleNet's Perlin mode "
      "noises both copies)");
    v("bad", bad, "also add noise to images labelled anomalous (SuperSimpleNet: true)");
    v("overlap", overlap, "also add noise inside ground-truth anomalous regions (SuperSimpleNet: true "
                          "unsupervised, false supervised)");
    v("perlin", perlin, "Perlin mask at feature resolution (SuperSimpleNet: threshold 0.2 MVTec / 0.6 "
                        "VisA and supervised, no rotation, empty with probability 0.5)");
  }
};

class SuperSimpleNetNoise final : public FeatureNoise {
 public:
  using Options = SuperSimpleNetNoiseOptions;
  explicit SuperSimpleNetNoise(const Options& options);
  using FeatureNoise::apply;
  FeatureNoiseDraws draw(const torch::Tensor& features, std::mt19937_64& rng) const override;
  FeatureNoiseResult apply(const torch::Tensor& features, const torch::Tensor& gt_masks,
                           const torch::Tensor& labels, const FeatureNoiseDraws& draws) const override;

 private:
  Options options_;
  PerlinMaskGenerator perlin_;
};

}  // namespace adfw
