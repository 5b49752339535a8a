// torchvision's ResNet family as a LibTorch module whose parameter and buffer names equal
// torchvision's state_dict keys, so released .pth files load directly.
// Reference: torchvision/models/resnet.py (He et al. 2016, "Deep Residual Learning"; Zagoruyko &
// Komodakis 2016, "Wide Residual Networks"): BasicBlock / Bottleneck (stride on the 3x3 conv, "v1.5"),
// BatchNorm eps 1e-5, width = planes * width_per_group / 64.
#pragma once

#include <memory>
#include <mutex>

#include "adfw/backbone/backbone.hpp"
#include "adfw/core/options.hpp"

namespace adfw {

/// The shape of a ResNet: block type, blocks per stage and group width.
struct ResNetConfig {
  bool bottleneck = true;
  std::vector<int64_t> blocks = {3, 4, 6, 3};
  int64_t width_per_group = 64;
  int64_t num_classes = 1000;
  /// resnet18/34/50/101/152, wide_resnet50_2, wide_resnet101_2; ConfigError otherwise.
  static ResNetConfig for_arch(const std::string& arch);
  int64_t expansion() const { return bottleneck ? 4 : 1; }
};

/// One residual block; the module names match torchvision's BasicBlock / Bottleneck.
class ResNetBlockImpl : public torch::nn::Module {
 public:
  ResNetBlockImpl(bool bottleneck, int64_t inplanes, int64_t planes, int64_t stride, int64_t width_per_group);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  friend class ResNetFused;
  bool bottleneck_;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr}, down_conv_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr}, down_bn_{nullptr};
};
TORCH_MODULE(ResNetBlock);

/// torchvision.models.ResNet: conv1, bn1, (relu, maxpool), layer1..layer4, (avgpool), fc.
class ResNetImpl : public torch::nn::Module {
 public:
  explicit ResNetImpl(const ResNetConfig& config);
  /// Taps: "stem" (after maxpool), "layer1".."layer4", "pool" (N,C), "logits" (N,classes).
  static const std::vector<std::string>& tap_names();
  /// Runs up to the deepest of `wanted` and returns those taps.
  std::map<std::string, torch::Tensor> forward_taps(const torch::Tensor& x, const std::vector<std::string>& wanted);
  const ResNetConfig& config() const { return config_; }

 private:
  friend class ResNetFused;
  ResNetConfig config_;
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr};
  std::vector<torch::nn::ModuleList> layers_;
  torch::nn::Linear fc_{nullptr};
};
TORCH_MODULE(ResNet);

struct ResNetOptions {
  std::string arch = "wide_resnet50_2";
  std::string weights = "";
  int64_t seed = 0;
  std::vector<std::string> layers = {"layer2", "layer3"};
  std::vector<int64_t> blocks = {};
  bool trainable = false;
  std::string inference = "fused";

  template <class V>
  void fields(V& v) {
    v("arch", arch, "architecture",
      Check::one_of({"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2",
                     "wide_resnet101_2"}));
    v("weights", weights,
      "checkpoint (.pth from torch.save, or .safetensors); \"\" = the official torchvision file in "
      "$TORCH_HOME/hub/checkpoints (e.g. wide_resnet50_2-95faca4d.pth); \"random\" = random init");
    v("seed", seed, "random-init seed (weights = \"random\" only)", Check::at_least(0));
    v("layers", layers, "taps to return: stem, layer1, layer2, layer3, layer4, pool, logits",
      Check::one_of({"stem", "layer1", "layer2", "layer3", "layer4", "pool", "logits"}));
    v("blocks", blocks,
      "blocks per stage overriding the arch's (4 values, e.g. [1,1,1,1] for a cut-down checkpoint); "
      "[] = the arch's own");
    v("trainable", trainable, "fine-tune: gradients on and train mode (default frozen, eval mode)");
    v("inference", inference,
      "forward of a frozen backbone on the CPU: \"fused\" folds every BatchNorm into its convolution "
      "and runs oneDNN kernels on weights packed once (equal to \"eager\" within float rounding); "
      "\"eager\" runs the modules as torchvision does. Trainable, non-CPU or non-float32 runs are "
      "always eager",
      Check::one_of({"fused", "eager"}));
  }
};

/// A frozen ResNet for CPU inference: BatchNorm folded into the convolutions, weights packed once
/// into oneDNN's blocked layout, activations kept in that layout between layers
/// (src/backbone/resnet.cpp).
class ResNetFused;

class ResNetBackbone : public Backbone {
 public:
  using Options = ResNetOptions;
  explicit ResNetBackbone(const Options& options);

  std::vector<std::string> taps() const override;
  std::vector<std::string> selected_taps() const override { return selected_; }
  std::map<std::string, torch::Tensor> forward(const torch::Tensor& x) override;
  int64_t channels(const std::string& tap) const override;
  int64_t stride(const std::string& tap) const override;
  /// Symmetric padding (conv1 3, max pool 1, strided 3x3 convs 1): cell 0 sits on pixel 0.
  GridGeometry grid(const std::string& tap, int64_t height, int64_t width) const override;
  Normalization normalization() const override { return Normalization::imagenet(); }
  torch::nn::Module& module() override { return *net_; }
  ResNet& net() { return net_; }
  /// The checkpoint loaded ("" for random weights).
  const std::filesystem::path& weights_path() const { return weights_path_; }

 private:
  Options options_;
  ResNet net_{nullptr};
  std::vector<std::string> selected_;
  std::filesystem::path weights_path_;
  /// The fused plan for the current weights (built by the constructor, rebuilt when the weights
  /// changed), or null when the forward is eager (options, device, dtype, no oneDNN).
  std::shared_ptr<const ResNetFused> fused_plan();
  std::shared_ptr<const ResNetFused> fused_;
  std::vector<int64_t> fused_signature_;
  std::mutex fused_mutex_;
};

}  // namespace adfw
