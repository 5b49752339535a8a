// CutPaste (Li, Sohn, Yoon, Pfister, "CutPaste: Self-Supervised Learning for Anomaly Detection and
// Localization", CVPR 2021) as a synthesizer (family "synthesizer") with the pasted patches' exact
// masks.
#pragma once

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "adfw/core/options.hpp"
#include "adfw/synth/synthesizer.hpp"

namespace adfw {


/// CutPaste (Li et al., CVPR 2021). Defaults are the paper's: "normal" patches cover 2-15% of
/// the image with aspect ratio log-uniform in [0.3, 3.3]; "scar" patches are 2-16 px wide and
/// 10-25 px long, rotated by up to +-45 degrees. Patches get colour jitter before pasting.
struct CutPasteOptions {
  std::string variant = "normal";
  double anomaly_probability = 0.5;
  double area_min = 0.02;
  double area_max = 0.15;
  double aspect_min = 0.3;
  double aspect_max = 3.3;
  double scar_width_min = 2;
  double scar_width_max = 16;
  double scar_length_min = 10;
  double scar_length_max = 25;
  double scar_rotation = 45;
  double color_jitter = 0.1;

  template <class V>
  void fields(V& v) {
    v("variant", variant, "normal: large rectangle; scar: thin rotated strip; random: either, 50/50",
      Check::one_of({"normal", "scar", "random"}));
    v("anomaly_probability", anomaly_probability, "probability that a patch is pasted at all",
      Check::range(0, 1));
    v("area_min", area_min, "normal patch area as a fraction of the image: U(area_min, area_max)",
      Check::open_range(0, 1));
    v("area_max", area_max, "upper end of the area fraction", Check::open_range(0, 1));
    v("aspect_min", aspect_min, "width/height ratio is log-uniform in [aspect_min, aspect_max]",
      Check::positive());
    v("aspect_max", aspect_max, "upper end of the aspect ratio", Check::positive());
    v("scar_width_min", scar_width_min, "scar width in pixels: U(scar_width_min, scar_width_max)",
      Check::at_least(1));
    v("scar_width_max", scar_width_max, "upper end of the scar width", Check::at_least(1));
    v("scar_length_min", scar_length_min, "scar length in pixels: U(scar_length_min, scar_length_max)",
      Check::at_least(1));
    v("scar_length_max", scar_length_max, "upper end of the scar length", Check::at_least(1));
    v("scar_rotation", scar_rotation, "scar rotation angle is U(-scar_rotation, scar_rotation) degrees",
      Check::range(0, 180));
    v("color_jitter", color_jitter, "brightness, contrast and saturation factors of the patch are "
                                    "U(1-j, 1+j) (0 = pasted unchanged)",
      Check::range(0, 1));
  }
  void validate() const;
};

class CutPasteSynthesizer final : public Synthesizer {
 public:
  using Options = CutPasteOptions;
  explicit CutPasteSynthesizer(const Options& options);
  using Synthesizer::apply;
  SynthResult apply(const torch::Tensor& image, std::mt19937_64& rng,
                    const torch::Tensor& foreground) const override;

 private:
  Options options_;
};

}  // namespace adfw
