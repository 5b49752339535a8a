// Image-space anomaly synthesizers (family "synthesizer"). A synthesizer turns a normal
// training image into an augmented one plus the exact mask of what it changed. Everything it
// draws comes from the generator it is given, so a fixed generator state gives a fixed result,
// and apply() is const and thread-safe: data-loader worker threads can share one instance.
#pragma once

#include <random>

#include <torch/torch.h>

namespace adfw {

struct SynthResult {
  torch::Tensor image;  ///< (3,H,W) float, 0..1
  /// (1,H,W) float, exactly 0/1: 1 where the anomaly was placed. Outside it the image is
  /// bit-identical to the input; inside, the pixel follows the blend rule (it can coincide with
  /// the input where the source happens to equal it).
  torch::Tensor mask;
  int label = 0;  ///< 1 when the mask is non-empty
  /// (1,H,W) weight of the input image in the output: out = beta*in + (1-beta)*source. 1 outside
  /// the mask. Undefined for synthesizers that do not blend (cutpaste).
  torch::Tensor beta;
  torch::Tensor source;  ///< (3,H,W) anomaly appearance that was blended in, or undefined
  /// (3,H,W) the normal image after the synthesizer's image-level augmentation (DRAEM rotates it
  /// before adding the anomaly): what `image` was made from and what a reconstruction should
  /// reproduce. Undefined when that is the input image itself.
  torch::Tensor clean;
  /// (1,H,W) extra mask some methods feed to the network (TransFusion's drawn-threshold mask
  /// "mask_c"), or undefined.
  torch::Tensor hint_mask;
  int step = -1;  ///< diffusion step drawn by the transparency synthesizer, else -1
};

class Synthesizer {
 public:
  static constexpr const char* family = "synthesizer";
  virtual ~Synthesizer() = default;

  /// `image`: (3,H,W) float 0..1, not normalised. `foreground`: optional (1,H,W)/(H,W) mask
  /// (nonzero = object) that restricts where anomalies go; undefined = everywhere.
  virtual SynthResult apply(const torch::Tensor& image, std::mt19937_64& rng,
                            const torch::Tensor& foreground) const = 0;
  SynthResult apply(const torch::Tensor& image, std::mt19937_64& rng) const {
    return apply(image, rng, torch::Tensor());
  }
};

}  // namespace adfw
