// The Perlin-blend synthesizers (family "synthesizer"). They share one recipe (DRAEM, ICCV 2021,
// VitjanZ/DRAEM data_loader.py): draw a Perlin mask M, make an anomaly appearance A for the image,
// draw beta and blend
//   out = img*(1-M) + (1-beta)*A*M + beta*img*M,
// with the anomaly applied with some probability (else the image and a zero mask come back).
// They differ only in where A comes from: textures from a folder (perlin_texture; DRAEM: DTD), the
// image's own shuffled patches (perlin_self; TransFusion "structure"), a solid colour
// (perlin_color; DSR stage 2) or Gaussian noise (perlin_noise). Also the image conversions the
// image-space synthesizers share. CutPaste is in cutpaste.hpp, TransFusion's transparency-aware
// variant in transparency.hpp.
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
