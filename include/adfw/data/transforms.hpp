// Image/mask transforms. Declared in TOML as a nested table, e.g.
//
//   [data.transforms]
//   resize = 256                # or [height, width]
//   interpolation = "bilinear"
//   center_crop = 224
//   normalize = "imagenet"
//   hflip = 0.5                 # training augmentation (probability)
//
// Conventions. Images are decoded as RGB (OpenCV's BGR is converted), grey images become three
// equal channels when grayscale_to_rgb (default). The pipeline is:
//   decode -> resize -> center crop -> [augment: flips, rotations] -> float 0..1 -> [hook] -> normalise
// so anomaly synthesizers (the loader's hook) always see 0..1 RGB, and Sample::image holds the
// normalised tensor the backbone expects ("imagenet": (x - mean) / std with torchvision's
// mean/std; "mobilenet": x * 2 - 1, i.e. pixel/127.5 - 1; "none": 0..1; "custom": mean/std given).
// Masks are read as grey, any nonzero pixel = 1, and follow every geometric step with nearest
// interpolation, so they stay exactly 0/1.
#pragma once

#include <random>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "adfw/core/options.hpp"
#include "adfw/data/sample.hpp"

namespace adfw {

/// A size written as one integer (square) or [height, width]; 0 / [] = not set.
struct ImageSize {
  using adfw_custom_field = void;
  int height = 0;
  int width = 0;

  ImageSize() = default;
  ImageSize(int side) : height(side), width(side) {}  // NOLINT: `resize = 256` reads naturally
  ImageSize(int h, int w) : height(h), width(w) {}
  bool empty() const { return height <= 0 || width <= 0; }
  bool operator==(const ImageSize& o) const { return height == o.height && width == o.width; }

  static std::string type_name() { return "integer or [height, width]"; }
  void read_toml(const toml::node& n, const std::string& path);
  toml::array to_toml() const;
  std::string default_str() const;
  std::vector<OptionDoc> docs() const { return {}; }
};

struct TransformOptions {
  ImageSize resize;
  std::string interpolation = "bilinear";
  ImageSize center_crop;
  std::string normalize = "imagenet";
  std::vector<double> mean;
  std::vector<double> std;
  bool grayscale_to_rgb = true;
  double hflip = 0;
  double vflip = 0;
  bool rotate90 = false;
  double rotate_degrees = 0;

  template <class V>
  void fields(V& v) {
    v("resize", resize, "resize every image to this size, before cropping; [] = keep the decoded size (default [])");
    v("interpolation", interpolation, "image interpolation for resizing and rotating (default \"bilinear\")",
      Check::one_of({"bilinear", "bicubic", "area", "nearest"}));
    v("center_crop", center_crop, "crop this size from the centre after resizing; [] = no crop (default [])");
    v("normalize", normalize,
      "pixel normalisation: imagenet = (x-mean)/std with torchvision's ImageNet statistics, mobilenet = "
      "x*2-1, none = 0..1, custom = the mean/std given here, auto = what the method's backbone declares "
      "(experiment input only; default \"imagenet\", experiments default to \"auto\")",
      Check::one_of({"imagenet", "none", "mobilenet", "custom", "auto"}));
    v("mean", mean, "per-channel mean (RGB, 0..1 scale) for normalize = \"custom\" (default [])");
    v("std", std, "per-channel standard deviation for normalize = \"custom\" (default [])");
    v("grayscale_to_rgb", grayscale_to_rgb, "decode grey images as three equal channels (default true)");
    v("hflip", hflip, "training: probability of a horizontal flip (default 0)", Check::range(0, 1));
    v("vflip", vflip, "training: probability of a vertical flip (default 0)", Check::range(0, 1));
    v("rotate90", rotate90, "training: rotate by a random multiple of 90 degrees (default false)");
    v("rotate_degrees", rotate_degrees,
      "training: rotate by a random angle in [-d, d] degrees, borders reflected (default 0 = off)",
      Check::range(0, 180));
  }
};

/// A decoded image before conversion to tensors: RGB (or grey) uint8 HxWxC and a uint8 0/1 mask.
struct DecodedImage {
  cv::Mat image;
  cv::Mat mask;  ///< CV_8U, 0/1, same size as image; all zero when there is no mask
  bool has_mask = false;
};

class Transform {
 public:
  explicit Transform(TransformOptions o = {});
  const TransformOptions& options() const { return opt_; }

  /// Reads the image (and mask) of `info`. Throws Error naming the file when a file cannot be
  /// decoded or the mask's size differs from the image's.
  DecodedImage decode(const SampleInfo& info) const;
  /// An image already in memory (8- or 16-bit; grey, BGR or BGRA as cv::imread gives it) as
  /// decode() would have read it from a file, without a mask. Throws Error naming `label` for an
  /// empty image or another channel count.
  DecodedImage from_image(const cv::Mat& raw, const std::string& label) const;
  /// Resize and centre crop (deterministic part; what the loader's cache stores).
  void resize_crop(DecodedImage& d) const;
  /// Training augmentations drawn from `rng`.
  void augment(DecodedImage& d, std::mt19937_64& rng) const;
  /// Tensors: image float32 (C,H,W) in 0..1, mask float32 (1,H,W) in {0,1}. Not normalised.
  Sample to_sample(const DecodedImage& d, const SampleInfo& info) const;
  /// Applies the configured normalisation to s.image in place.
  void normalize(Sample& s) const;
  /// Everything: decode, resize/crop, augment when `rng` is given, tensors, normalise.
  Sample operator()(const SampleInfo& info, std::mt19937_64* rng = nullptr) const;

  /// Output size (H, W) for an input of size (h, w).
  ImageSize output_size(int h, int w) const;

 private:
  TransformOptions opt_;
  int interp_ = 1;
  std::vector<float> mean_, std_;
};

}  // namespace adfw
