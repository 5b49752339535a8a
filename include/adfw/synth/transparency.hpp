// TransFusion's transparency-aware anomaly synthesizer (family "synthesizer"; Fučka et al., ECCV
// 2024, MaticFuc/ECCV_TransFusion model/SyntAnomGenerator.py, model/TransFusion.py).
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "adfw/core/options.hpp"
#include "adfw/synth/perlin.hpp"
#include "adfw/synth/perlin_blend.hpp"
#include "adfw/synth/synthesizer.hpp"

namespace adfw {

/// TransFusion (ECCV 2024; model/SyntAnomGenerator.py, model/TransFusion.py). The mask is
/// |perlin| > 0.5 (times the foreground); the source is a texture (probability
/// texture_probability) or the image's shuffled patches; a diffusion step t in [1, steps) sets
/// the transparency: out = (1-M)*img + (1-b_t)*M*img + b_t*M*A with b_t = t/(steps-1). The hint
/// mask is |perlin| > a threshold drawn by TransFusion's four-way rule, zero at t = steps-1
/// (the network's input mask "mask_c").
struct TransparencyOptions {
  std::string folder;
  std::vector<std::string> extensions{".jpg", ".jpeg", ".png", ".bmp"};
  bool cache_textures = false;
  double texture_probability = 0.5;
  int grid = 8;
  int n_ops = 3;
  int steps = 20;
  double anomaly_probability = 1.0;
  PerlinOptions perlin = [] {
    PerlinOptions p;
    p.absolute = true;
    return p;
  }();

  template <class V>
  void fields(V& v) {
    v("folder", folder, "texture folder (DTD); \"\" = structure sources only (needs texture_probability 0)");
    v("extensions", extensions, "file name endings counted as images");
    v("cache_textures", cache_textures, "keep decoded textures in memory");
    v("texture_probability", texture_probability,
      "probability of a texture source, else the image's shuffled patches (TransFusion: 0.5)",
      Check::range(0, 1));
    v("grid", grid, "patch grid of the structure source (TransFusion: 8)", Check::range(2, 256));
    v("n_ops", n_ops, "DRAEM augmentation ops applied to either source", Check::range(0, 10));
    v("steps", steps, "diffusion steps; the transparency is t/(steps-1) for t drawn in [1, steps) "
                      "(TransFusion: 20)",
      Check::range(2, 10000));
    v("anomaly_probability", anomaly_probability,
      "probability of an anomaly (TransFusion: 1; the transfusion method keeps the anomalies of the first "
      "half of each training batch only, as TransFusion.py set_noise)",
      Check::range(0, 1));
    v("perlin", perlin, "mask generator (TransFusion: |noise| > 0.5, scale 2^[0,6), rotation +-90)");
  }
};

class TransparencySynthesizer final : public Synthesizer {
 public:
  using Options = TransparencyOptions;
  explicit TransparencySynthesizer(const Options& options);
  using Synthesizer::apply;
  SynthResult apply(const torch::Tensor& image, std::mt19937_64& rng,
                    const torch::Tensor& foreground) const override;

 private:
  Options options_;
  PerlinMaskGenerator perlin_;
  PerlinMaskGenerator hint_;
  std::shared_ptr<TextureLibrary> library_;
};

}  // namespace adfw
