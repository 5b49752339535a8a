// Perlin-noise anomaly masks, shared by every synthesizer that needs irregular blob-shaped
// regions (DRAEM, DSR, TransFusion in image space; SuperSimpleNet in feature space).
//
// The noise is the gradient ("improved") Perlin formulation of DRAEM's perlin.py
// (`rand_perlin_2d_np`): a lattice of res = (2^ky, 2^kx) cells with a random unit gradient at
// every lattice corner, dot products with the offsets to the four corners, blended with the
// quintic fade 6t^5 - 15t^4 + 10t^3 and scaled by sqrt(2), so values lie in about [-1, 1] and
// are exactly 0 on lattice points. Exponents ky, kx are drawn independently from
// [min_scale, max_scale) (DRAEM: `2 ** randint(0, 6)` per axis).
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include <opencv2/core.hpp>
#include <torch/torch.h>

#include "adfw/core/options.hpp"

namespace adfw {

/// Settings of the Perlin mask generator (defaults: DRAEM's data_loader.py).
struct PerlinOptions {
  int min_scale = 0;
  int max_scale = 6;
  double min_rotation = -90.0;
  double max_rotation = 90.0;
  std::string threshold_mode = "fixed";
  double threshold = 0.5;
  bool absolute = false;
  double empty_probability = 0.0;

  template <class V>
  void fields(V& v) {
    v("min_scale", min_scale, "smallest lattice exponent k; the lattice has 2^k cells per axis (DRAEM: 0)",
      Check::range(0, 12));
    v("max_scale", max_scale, "lattice exponents are drawn from [min_scale, max_scale) per axis (DRAEM: 6)",
      Check::range(1, 13));
    v("min_rotation", min_rotation, "noise rotation angle is drawn from [min_rotation, max_rotation] degrees",
      Check::range(-360, 360));
    v("max_rotation", max_rotation, "upper end of the rotation range in degrees (DRAEM: imgaug Affine(+-90))",
      Check::range(-360, 360));
    v("threshold_mode", threshold_mode,
      "fixed: binarise at `threshold`; transfusion: draw it per mask among max(noise), 0.5+0.5U, 0.5, "
      "0.5-0.5U with probability 1/4 each (TransFusion SyntAnomGenerator.py)",
      Check::one_of({"fixed", "transfusion"}));
    v("threshold", threshold, "mask = noise > threshold (fixed mode). DRAEM/DSR 0.5, SuperSimpleNet 0.2 (MVTec)",
      Check::range(-1, 1));
    v("absolute", absolute, "threshold |noise| instead of noise (TransFusion)");
    v("empty_probability", empty_probability, "probability of returning an all-zero mask",
      Check::range(0, 1));
  }
  /// Cross-field checks (ranges ordered); throws ConfigError.
  void validate() const;
};

/// Uniform double in [0, 1) from 53 random bits: the same sequence on every platform (the
/// standard distributions are implementation-defined).
inline double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }
inline double uniform(std::mt19937_64& rng, double lo, double hi) { return lo + (hi - lo) * uniform01(rng); }
/// Integer uniform in [lo, hi) (hi > lo).
inline int64_t uniform_int(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(uniform01(rng) * static_cast<double>(hi - lo));
}

/// Gradient Perlin noise of size (height, width), CV_32F, with res_y x res_x lattice cells over
/// the image. Any size works (the lattice need not divide it).
cv::Mat perlin_noise(int height, int width, int res_y, int res_x, std::mt19937_64& rng);

/// Draws Perlin masks as configured. Immutable after construction; safe to share across threads.
class PerlinMaskGenerator {
 public:
  explicit PerlinMaskGenerator(PerlinOptions options = {});

  /// One drawn mask with what produced it.
  struct Draw {
    cv::Mat noise;       ///< rotated noise, CV_32F (empty when the mask was emptied up front)
    cv::Mat mask;        ///< CV_32F, exactly 0/1
    double threshold = 0;
    bool forced_empty = false;  ///< the empty_probability draw fired
  };

  /// Draws a mask of size (height, width). `foreground` (CV_32F/CV_8U, same size, nonzero =
  /// object) restricts the mask to it when given.
  Draw draw(int height, int width, std::mt19937_64& rng, const cv::Mat& foreground = cv::Mat()) const;
  /// Just the mask, CV_32F 0/1.
  cv::Mat mask(int height, int width, std::mt19937_64& rng, const cv::Mat& foreground = cv::Mat()) const {
    return draw(height, width, rng, foreground).mask;
  }
  /// Unthresholded, rotated noise (the Perlin scales and angle drawn from `rng`).
  cv::Mat noise(int height, int width, std::mt19937_64& rng) const;
  /// Binarises `noise` (already rotated) with a threshold chosen as configured.
  double draw_threshold(const cv::Mat& noise, std::mt19937_64& rng) const;
  cv::Mat binarise(const cv::Mat& noise, double threshold) const;

  const PerlinOptions& options() const { return options_; }

 private:
  PerlinOptions options_;
};

/// (H,W) CV_32F -> (1,H,W) float tensor (copies).
torch::Tensor mask_to_tensor(const cv::Mat& mask);
/// (1,H,W) or (H,W) tensor -> (H,W) CV_32F (copies); empty Mat for an undefined tensor.
cv::Mat tensor_to_mask(const torch::Tensor& mask);

}  // namespace adfw
