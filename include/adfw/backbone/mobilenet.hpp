// MobileNet v1 1.0 as Keras 2.1.4 / TF-slim define it (Howard et al. 2017, "MobileNets"), ported to
// NCHW per ../shared/weights/README.md: every conv zero-pads with TensorFlow's SAME rule computed
// per axis from the actual input size (not PyTorch's symmetric padding), BatchNorm eps 1e-3, ReLU6.
// Only the stem and blocks 0..11 exist (the public offline weights lack conv_pw_13).
#pragma once

#include "adfw/backbone/backbone.hpp"
#include "adfw/core/options.hpp"

namespace adfw {

/// TensorFlow SAME padding of one axis of length n: {before, after}.
std::pair<int64_t, int64_t> tf_same_padding(int64_t n, int64_t kernel, int64_t stride);

class MobileNetV1Impl : public torch::nn::Module {
 public:
  static constexpr int kBlocks = 12;
  MobileNetV1Impl();
  /// Taps: "stem", "block0".."block11" (block i = Keras conv_pw_{i+1}_relu).
  static const std::vector<std::string>& tap_names();
  std::map<std::string, torch::Tensor> forward_taps(const torch::Tensor& x, const std::vector<std::string>& wanted);
  static int64_t block_stride(int i);    ///< 1 or 2 (depthwise conv of block i)
  static int64_t block_channels(int i);  ///< output channels of block i

 private:
  struct Unit {
    torch::nn::Conv2d conv{nullptr};
    torch::nn::BatchNorm2d bn{nullptr};
    int64_t stride = 1;
  };
  static torch::Tensor run(Unit u, const torch::Tensor& x);
  Unit stem_;
  std::vector<Unit> dw_, pw_;
};
TORCH_MODULE(MobileNetV1);

struct MobileNetV1Options {
  std::string weights = "";
  int64_t seed = 0;
  std::vector<std::string> layers = {"block5", "block10"};
  bool trainable = false;

  template <class V>
  void fields(V& v) {
    v("weights", weights,
      "checkpoint (.safetensors or .pth); \"\" = mobilenet_v1_1.0_224_imagenet.safetensors in "
      "$TORCH_HOME/hub/checkpoints; \"random\" = random init");
    v("seed", seed, "random-init seed (weights = \"random\" only)", Check::at_least(0));
    v("layers", layers, "taps to return: stem, block0 .. block11 (block i = Keras conv_pw_{i+1}_relu)");
    v("trainable", trainable, "fine-tune: gradients on and train mode (default frozen, eval mode)");
  }
};

class MobileNetV1Backbone : public Backbone {
 public:
  using Options = MobileNetV1Options;
  explicit MobileNetV1Backbone(const Options& options);

  std::vector<std::string> taps() const override { return MobileNetV1Impl::tap_names(); }
  std::vector<std::string> selected_taps() const override { return selected_; }
  std::map<std::string, torch::Tensor> forward(const torch::Tensor& x) override;
  int64_t channels(const std::string& tap) const override;
  int64_t stride(const std::string& tap) const override;
  /// TF "same" padding pads strided convs at the bottom/right for even sizes: cell 0 sits on
  /// the last pixel of its stride block; the parity of every stage's size decides it.
  GridGeometry grid(const std::string& tap, int64_t height, int64_t width) const override;
  /// x/127.5 - 1 (Keras "tf" preprocessing), RGB.
  Normalization normalization() const override { return Normalization::mobilenet(); }
  torch::nn::Module& module() override { return *net_; }
  const std::filesystem::path& weights_path() const { return weights_path_; }

 private:
  Options options_;
  MobileNetV1 net_{nullptr};
  std::vector<std::string> selected_;
  std::filesystem::path weights_path_;
};

}  // namespace adfw
