// The image-space synthesizers. Most share one recipe (DRAEM, ICCV 2021, data_loader.py):
// draw a Perlin mask M, make an anomaly appearance A for the image, draw beta and blend
//   out = img*(1-M) + (1-beta)*A*M + beta*img*M,
// with the anomaly applied with some probability (else the image and a zero mask come back).
// They differ only in where A comes from: textures from a folder (DRAEM: DTD), the image's own
// shuffled patches (TransFusion "structure"), a solid colour (DSR stage 2) or Gaussian noise.
// CutPaste (Li et al., CVPR 2021) and TransFusion's transparency-aware variant are separate.
#pragma once

#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <opencv2/core.hpp>

#include "adfw/core/options.hpp"
#include "adfw/synth/perlin.hpp"
#include "adfw/synth/synthesizer.hpp"

namespace adfw {

/// Settings shared by every Perlin-blend synthesizer (defaults: DRAEM).
struct BlendOptions {
  double anomaly_probability = 0.5;
  double beta_min = 0.0;
  double beta_max = 0.8;
  PerlinOptions perlin;

  template <class V>
  void fields(V& v) {
    v("anomaly_probability", anomaly_probability,
      "probability that an anomaly is added; otherwise the image comes back with a zero mask (DRAEM: 0.5)",
      Check::range(0, 1));
    v("beta_min", beta_min, "beta (weight of the original image inside the mask) is drawn from "
                            "U(beta_min, beta_max); DRAEM: U(0,1)*0.8 = [0, 0.8]",
      Check::range(0, 1));
    v("beta_max", beta_max, "upper end of the beta range", Check::range(0, 1));
    v("perlin", perlin, "Perlin mask generator settings");
  }
  void validate() const;
};

/// The texture images of a folder (recursive, sorted by path), loaded as 8-bit RGB.
/// Thread-safe; with `cache` the decoded images are kept after first use.
class TextureLibrary {
 public:
  TextureLibrary(const std::string& folder, const std::vector<std::string>& extensions, bool cache);
  std::size_t size() const { return files_.size(); }
  const std::vector<std::string>& files() const { return files_; }
  /// Texture `index` decoded to RGB and resized to (width, height) with bilinear interpolation
  /// (DRAEM: cv2.resize to the training size).
  cv::Mat load(std::size_t index, int height, int width) const;

 private:
  std::string folder_;
  std::vector<std::string> files_;
  bool cache_ = false;
  mutable std::mutex mutex_;
  mutable std::unordered_map<std::size_t, cv::Mat> decoded_;
};

/// Base of the Perlin-blend family: subclasses only make the anomaly appearance.
class PerlinBlendSynthesizer : public Synthesizer {
 public:
  using Synthesizer::apply;
  SynthResult apply(const torch::Tensor& image, std::mt19937_64& rng,
                    const torch::Tensor& foreground) const override;

 protected:
  explicit PerlinBlendSynthesizer(const BlendOptions& options);
  /// Anomaly appearance for `image` (H,W CV_32FC3 RGB in 0..1); same type and size.
  virtual cv::Mat make_source(const cv::Mat& image, std::mt19937_64& rng) const = 0;

 private:
  BlendOptions blend_;
  PerlinMaskGenerator perlin_;
};

struct PerlinTextureOptions {
  std::string folder;
  std::vector<std::string> extensions{".jpg", ".jpeg", ".png", ".bmp"};
  int n_ops = 3;
  std::string channel_order = "bgr";
  double rotate_probability = 0.3;
  double rotate_degrees = 90.0;
  bool cache_textures = false;
  BlendOptions blend;

  template <class V>
  void fields(V& v) {
    v("folder", folder, "folder of texture images, searched recursively (DRAEM: DTD images/)");
    v("extensions", extensions, "file name endings counted as images (case-insensitive)");
    v("n_ops", n_ops, "number of distinct DRAEM augmentation ops applied to each texture (DRAEM: 3 of 10)",
      Check::range(0, 10));
    v("channel_order", channel_order,
      "channel order the texture augmentations see: \"bgr\" as DRAEM (data_loader.py reads textures with "
      "cv2.imread, B,G,R, and imgaug's colour-space ops AddToHueAndSaturation and MultiplyAndAddToBrightness "
      "take them for R,G,B, so their hue and brightness act on swapped channels) or \"rgb\" (the ops' "
      "intended colour meaning) (DRAEM: \"bgr\")",
      Check::one_of({"bgr", "rgb"}));
    v("rotate_probability", rotate_probability,
      "probability that the normal image itself is first rotated about its centre by an angle drawn from "
      "U(-rotate_degrees, rotate_degrees), bilinear, black corners; the rotated image is then both the "
      "reconstruction target and what the anomaly is added to (DRAEM data_loader.py transform_image: "
      "iaa.Affine(rotate=(-90, 90)) when torch.rand(1) > 0.7, i.e. 0.3; 0 = off)",
      Check::range(0, 1));
    v("rotate_degrees", rotate_degrees, "largest rotation angle of the normal image in degrees (DRAEM: 90)",
      Check::range(0, 180));
    v("cache_textures", cache_textures,
      "keep decoded textures in memory (faster; about 0.2 MB per 256-px texture)");
    blend.fields(v);
  }
};

/// DRAEM: textures from a folder, augmented with 3 of DRAEM's 10 ops; the normal image may be
/// rotated first (SynthResult::clean holds it then).
class PerlinTextureSynthesizer final : public PerlinBlendSynthesizer {
 public:
  using Options = PerlinTextureOptions;
  explicit PerlinTextureSynthesizer(const Options& options);
  const TextureLibrary& library() const { return *library_; }
  using Synthesizer::apply;
  SynthResult apply(const torch::Tensor& image, std::mt19937_64& rng,
                    const torch::Tensor& foreground) const override;

 protected:
  cv::Mat make_source(const cv::Mat& image, std::mt19937_64& rng) const override;

 private:
  Options options_;
  std::shared_ptr<TextureLibrary> library_;
};

struct PerlinSelfOptions {
  int grid = 8;
  int n_ops = 3;
  BlendOptions blend;

  template <class V>
  void fields(V& v) {
    v("grid", grid, "the image is cut into grid x grid patches that are shuffled (TransFusion: 8)",
      Check::range(2, 256));
    v("n_ops", n_ops, "DRAEM augmentation ops applied to the image before shuffling (TransFusion: 3)",
      Check::range(0, 10));
    blend.fields(v);
  }
};

/// Self-structure source (TransFusion SyntAnomGenerator.structureSource): the image's own
/// augmented patches in shuffled order.
struct SelfStructureSource {
  using Options = PerlinSelfOptions;
  static cv::Mat make(const Options& o, const cv::Mat& image, std::mt19937_64& rng);
};

struct PerlinColorOptions {
  double color_min = 0.0;
  double color_max = 1.0;
  BlendOptions blend;

  template <class V>
  void fields(V& v) {
    v("color_min", color_min, "each RGB channel of the solid colour is drawn from U(color_min, color_max)",
      Check::range(0, 1));
    v("color_max", color_max, "upper end of the colour range", Check::range(0, 1));
    blend.fields(v);
  }
  void validate() const;
};

/// Solid colour source (DSR stage 2, MVTecImageAnomTrainDataset).
struct SolidColorSource {
  using Options = PerlinColorOptions;
  static cv::Mat make(const Options& o, const cv::Mat& image, std::mt19937_64& rng);
};

struct PerlinNoiseOptions {
  double noise_mean = 0.0;
  double noise_std = 0.2;
  BlendOptions blend;

  template <class V>
  void fields(V& v) {
    v("noise_mean", noise_mean, "mean of the Gaussian noise added to the image to make the source",
      Check::range(-1, 1));
    v("noise_std", noise_std, "standard deviation of that noise (image values are 0..1); the source is "
                              "clipped to [0, 1]",
      Check::positive());
    blend.fields(v);
  }
};

/// Gaussian-noise source: clip(img + N(mean, std)).
struct GaussianNoiseSource {
  using Options = PerlinNoiseOptions;
  static cv::Mat make(const Options& o, const cv::Mat& image, std::mt19937_64& rng);
};

namespace detail {
template <class T, class = void>
struct has_validate : std::false_type {};
template <class T>
struct has_validate<T, std::void_t<decltype(std::declval<const T&>().validate())>> : std::true_type {};
}  // namespace detail

/// A Perlin-blend synthesizer whose anomaly appearance is `Source::make`: the sources that need
/// no texture folder differ only in that function and its options.
template <class Source>
class PerlinSourceSynthesizer final : public PerlinBlendSynthesizer {
 public:
  using Options = typename Source::Options;
  explicit PerlinSourceSynthesizer(const Options& options)
      : PerlinBlendSynthesizer(options.blend), options_(options) {
    if constexpr (detail::has_validate<Options>::value) options_.validate();
  }

 protected:
  cv::Mat make_source(const cv::Mat& image, std::mt19937_64& rng) const override {
    return Source::make(options_, image, rng);
  }

 private:
  Options options_;
};

using PerlinSelfSynthesizer = PerlinSourceSynthesizer<SelfStructureSource>;
using PerlinColorSynthesizer = PerlinSourceSynthesizer<SolidColorSource>;
using PerlinNoiseSynthesizer = PerlinSourceSynthesizer<GaussianNoiseSource>;

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

/// (3,H,W) float tensor -> H,W CV_32FC3 (copies).
cv::Mat image_to_mat(const torch::Tensor& image);
/// H,W CV_32FC3 -> (3,H,W) float tensor (copies).
torch::Tensor mat_to_image(const cv::Mat& image);
/// (3,H,W) rotated counter-clockwise by `degrees` about its centre, bilinear, black corners
/// (imgaug Affine(rotate) as DRAEM's and DSR's data loaders use it).
torch::Tensor rotate_about_centre(const torch::Tensor& image, double degrees);
/// The image's grid x grid patches in a random order (sizes not divisible by `grid` are
/// resampled to the next multiple and back).
cv::Mat shuffle_patches(const cv::Mat& image, int grid, std::mt19937_64& rng);

}  // namespace adfw
