// DRAEM's photometric/geometric augmentation of anomaly source textures
// (VitjanZ/DRAEM data_loader.py: 3 of 10 imgaug ops, applied in random order of choice),
// implemented with OpenCV on 8-bit RGB images. Parameters follow imgaug's defaults where
// DRAEM leaves them out (pillike.Posterize nb_bits 1..8, pillike.Autocontrast cutoff 0..20%,
// pillike.EnhanceSharpness factor 0..2).
#pragma once

#include <random>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace adfw {

enum class DraemOp {
  gamma_contrast,       ///< GammaContrast((0.5, 2.0), per_channel=True)
  brightness,           ///< MultiplyAndAddToBrightness(mul=(0.8, 1.2), add=(-30, 30)) on Y of YCrCb
  sharpness,            ///< pillike.EnhanceSharpness(factor 0..2)
  hue_saturation,       ///< AddToHueAndSaturation((-50, 50), per_channel=True)
  solarize,             ///< Solarize(0.5, threshold=(32, 128))
  posterize,            ///< pillike.Posterize(nb_bits 1..8)
  invert,               ///< Invert()
  autocontrast,         ///< pillike.Autocontrast(cutoff 0..20 %)
  equalize,             ///< pillike.Equalize()
  rotate,               ///< Affine(rotate=(-45, 45)), zero fill
};
constexpr int kDraemOpCount = 10;
const char* to_string(DraemOp op);

/// Applies one op in place to an 8-bit 3-channel RGB image.
void apply_draem_op(DraemOp op, cv::Mat& rgb, std::mt19937_64& rng);
/// DRAEM's recipe: `n_ops` distinct ops chosen at random, applied in the drawn order.
/// Returns the ops used.
std::vector<DraemOp> draem_augment(cv::Mat& rgb, std::mt19937_64& rng, int n_ops = 3);

}  // namespace adfw
