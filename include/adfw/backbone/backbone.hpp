// Backbones: pretrained networks that turn a normalised image batch into named feature maps
// ("taps") for feature-based methods. Each backbone declares its input normalisation, so an
// experiment cannot pair a backbone with the wrong one by accident.
//
// Registered names (plugins/backbones/register.cpp):
//   "resnet"       torchvision ResNet / Wide-ResNet family        (ResNetBackbone, resnet.hpp)
//   "dinov2"       DINOv2 ViT-S/B/L/g /14, with or without registers (DinoV2Backbone, dinov2.hpp)
//   "mobilenet_v1" Keras MobileNet v1 1.0 up to conv_pw_12         (MobileNetV1Backbone, mobilenet.hpp)
//
// Every backbone is frozen by default (parameters without gradients, eval mode, forward under
// NoGradGuard); `trainable = true` turns on gradients and train mode for fine-tuning.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace adfw {

/// How RGB values in 0..255 become the model's input: x' = (x * scale - mean[c]) / std[c].
struct Normalization {
  std::string name;          ///< "imagenet", "mobilenet" (x/127.5 - 1)
  double scale = 1.0 / 255;  ///< applied first
  std::vector<double> mean;  ///< per RGB channel, after scaling
  std::vector<double> std;   ///< per RGB channel, after scaling

  /// torchvision / DINOv2: x/255, then ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).
  static Normalization imagenet();
  /// Keras / TF-slim MobileNet ("tf" mode): x/127.5 - 1.
  static Normalization mobilenet();
  /// Applies to an (N,3,H,W) or (3,H,W) float RGB tensor in 0..255 (any device).
  torch::Tensor apply(const torch::Tensor& rgb255) const;
};

/// Where a tap's grid sits on the input image: cell (i, j) is centred on input pixel
/// (origin_y + i * stride, origin_x + j * stride), in pixel indices. The padding of each
/// strided layer decides the origin, and it is not where plain bilinear upsampling
/// (align_corners = false) assumes, (stride - 1) / 2: torchvision ResNets put cell 0 on pixel 0,
/// TF "same"-padded MobileNets on pixel stride - 1 (for even sizes).
struct GridGeometry {
  double origin_y = 0;
  double origin_x = 0;
  double stride = 1;
  /// The convention of bilinear upsampling: cells centred on their stride x stride block.
  static GridGeometry centred(int64_t stride);
};

/// What a tap gives, declared without running the network: its channels and its stride (input
/// pixels per grid cell; 0 for taps without a spatial grid: pool, logits, class tokens).
struct TapInfo {
  int64_t channels = 0;
  int64_t stride = 0;
  bool spatial() const { return stride > 0; }
};

/// The input sides a backbone takes: multiples of `multiple` (a ViT's patch size), unless `fit`
/// ("pad" or "resize", the backbone option named `option`) brings other sizes to the next one.
struct InputSizeRule {
  int64_t multiple = 1;
  std::string fit = "error";
  std::string option;  ///< the backbone option choosing `fit` ("" when the backbone takes any size)
};

class Backbone {
 public:
  static constexpr const char* family = "backbone";
  virtual ~Backbone() = default;

  /// Every tap this backbone can return, shallow to deep.
  virtual std::vector<std::string> taps() const = 0;
  /// The taps forward() returns (the `layers` option), shallow to deep.
  virtual std::vector<std::string> selected_taps() const = 0;
  /// Input (N,3,H,W), already normalised; returns the selected taps, computing only as deep as the
  /// deepest of them. Frozen backbones run without autograd.
  virtual std::map<std::string, torch::Tensor> forward(const torch::Tensor& x) = 0;
  /// Channels of a tap; throws adfw::ConfigError for unknown taps.
  virtual int64_t channels(const std::string& tap) const = 0;
  /// Input pixels per output position of a tap (0 for taps without a spatial grid: pool, logits).
  virtual int64_t stride(const std::string& tap) const = 0;
  /// channels() and stride() of a tap together.
  TapInfo tap_info(const std::string& tap) const { return {channels(tap), stride(tap)}; }
  /// Input sides this backbone takes (default: any).
  virtual InputSizeRule input_rule() const { return {}; }
  /// The grid of a spatial tap for an input of height x width pixels. The default is
  /// GridGeometry::centred(stride(tap)), exact for patch embeddings (ViT).
  virtual GridGeometry grid(const std::string& tap, int64_t height, int64_t width) const;
  virtual Normalization normalization() const = 0;
  /// The underlying module (for .to(device), parameters(), train()/eval(), saving).
  virtual torch::nn::Module& module() = 0;
};

namespace backbone {

/// $TORCH_HOME/hub/checkpoints, TORCH_HOME defaulting to $XDG_CACHE_HOME/torch or ~/.cache/torch
/// (where torch.hub and torchvision keep downloaded weights).
std::filesystem::path hub_checkpoint_dir();

/// Resolves the `weights` option: "random" -> "" (no file); an explicit path -> that path (must
/// exist); "" -> the first of `official_names` present in hub_checkpoint_dir(), else any file there
/// named "<arch>-*.pth" (torchvision's hash suffix). Throws adfw::ConfigError naming the places
/// searched when nothing is found.
std::filesystem::path resolve_weights(const std::string& weights, const std::string& arch,
                                      const std::vector<std::string>& official_names);

/// Frozen: requires_grad false and eval mode; trainable: requires_grad true and train mode.
void set_trainable(torch::nn::Module& module, bool trainable);

/// Validates `requested` against `available` (ConfigError with did-you-mean, naming `option`);
/// empty -> `fallback`. Returns them ordered shallow to deep, without duplicates.
std::vector<std::string> select_taps(const std::vector<std::string>& requested,
                                     const std::vector<std::string>& available,
                                     const std::vector<std::string>& fallback, const std::string& option);

/// Checks a forward() input: 4-D, 3 channels, floating point, spatial size >= `min_size`.
void check_input(const torch::Tensor& x, const std::string& who, int64_t min_size = 1);

/// The multiples of `multiple` nearest to `side`: the largest <= side (at least `multiple`) and the
/// smallest >= side; equal when `side` is one.
std::pair<int64_t, int64_t> nearest_multiples(int64_t side, int64_t multiple);

/// Checks an input size (height x width, read from the config key `key`) against the backbone's
/// InputSizeRule: a ConfigError names the key, the value, the two nearest valid sizes and the
/// backbone option (`backbone_path`.<rule.option>) that pads or resizes instead.
void check_input_size(const Backbone& b, int64_t height, int64_t width, const std::string& key,
                      const std::string& backbone_path);

/// Sum of the channels of `taps`, each required to be spatial (ConfigError naming `layers_key`
/// otherwise); `source` receives a description such as "the backbone taps layer2 (512) + layer3
/// (1024)" for contract errors.
int64_t spatial_channels(const Backbone& b, const std::vector<std::string>& taps, const std::string& layers_key,
                         std::string* source = nullptr);

}  // namespace backbone
}  // namespace adfw
