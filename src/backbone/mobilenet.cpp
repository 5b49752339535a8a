// MobileNet v1 (Keras 2.1.4 topology, TF SAME padding); see include/adfw/backbone/mobilenet.hpp and
// ../shared/weights/README.md for the spec and the tensor names.
#include "adfw/backbone/mobilenet.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "adfw/core/checkpoint.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/stages.hpp"

namespace adfw {
namespace {

const int64_t kIn[MobileNetV1Impl::kBlocks] = {32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512};
const int64_t kOut[MobileNetV1Impl::kBlocks] = {64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024};

torch::nn::BatchNorm2d bn(int64_t c) { return torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(c).eps(1e-3)); }

int tap_index(const std::string& tap) {
  const auto& names = MobileNetV1Impl::tap_names();
  const auto it = std::find(names.begin(), names.end(), tap);
  if (it == names.end()) throw ConfigError("mobilenet_v1: unknown tap '" + tap + "'." + suggest_from(tap, names));
  return static_cast<int>(it - names.begin());  // 0 = stem, i + 1 = block i
}

}  // namespace

std::pair<int64_t, int64_t> tf_same_padding(int64_t n, int64_t kernel, int64_t stride) {
  const int64_t out = (n + stride - 1) / stride;
  const int64_t total = std::max<int64_t>((out - 1) * stride + kernel - n, 0);
  return {total / 2, total - total / 2};
}

int64_t MobileNetV1Impl::block_stride(int i) { return (i == 1 || i == 3 || i == 5 || i == 11) ? 2 : 1; }
int64_t MobileNetV1Impl::block_channels(int i) { return kOut[i]; }

const std::vector<std::string>& MobileNetV1Impl::tap_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n = {"stem"};
    for (int i = 0; i < kBlocks; ++i) n.push_back("block" + std::to_string(i));
    return n;
  }();
  return names;
}

MobileNetV1Impl::MobileNetV1Impl() {
  using torch::nn::Conv2dOptions;
  stem_.conv = register_module("conv1", torch::nn::Conv2d(Conv2dOptions(3, 32, 3).stride(2).bias(false)));
  stem_.bn = register_module("conv1_bn", bn(32));
  stem_.stride = 2;
  auto blocks = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < kBlocks; ++i) {
    auto block = std::make_shared<torch::nn::Module>();
    Unit dw, pw;
    dw.stride = block_stride(i);
    dw.conv = block->register_module(
        "dw", torch::nn::Conv2d(Conv2dOptions(kIn[i], kIn[i], 3).stride(dw.stride).groups(kIn[i]).bias(false)));
    dw.bn = block->register_module("dw_bn", bn(kIn[i]));
    pw.conv = block->register_module("pw", torch::nn::Conv2d(Conv2dOptions(kIn[i], kOut[i], 1).bias(false)));
    pw.bn = block->register_module("pw_bn", bn(kOut[i]));
    blocks->push_back(block);
    dw_.push_back(dw);
    pw_.push_back(pw);
  }
}

torch::Tensor MobileNetV1Impl::run(Unit u, const torch::Tensor& x) {
  const int64_t k = u.conv->options.kernel_size()->at(0);
  torch::Tensor h = x;
  if (k > 1) {
    const auto [top, bottom] = tf_same_padding(x.size(2), k, u.stride);
    const auto [left, right] = tf_same_padding(x.size(3), k, u.stride);
    h = torch::constant_pad_nd(x, {left, right, top, bottom}, 0);
  }
  return torch::clamp(u.bn(u.conv(h)), 0.0, 6.0);
}

std::map<std::string, torch::Tensor> MobileNetV1Impl::forward_taps(const torch::Tensor& x,
                                                                   const std::vector<std::string>& wanted) {
  int deepest = -1;
  for (const auto& w : wanted) deepest = std::max(deepest, tap_index(w));
  std::map<std::string, torch::Tensor> out;
  auto keep = [&](int idx, const torch::Tensor& t) {
    const std::string& name = tap_names()[idx];
    if (std::find(wanted.begin(), wanted.end(), name) != wanted.end()) out[name] = t;
  };
  if (deepest < 0) return out;
  torch::Tensor h = run(stem_, x);
  keep(0, h);
  for (int i = 0; i < kBlocks && i < deepest; ++i) {
    h = run(pw_[i], run(dw_[i], h));
    keep(i + 1, h);
  }
  return out;
}

MobileNetV1Backbone::MobileNetV1Backbone(const Options& options) : options_(options) {
  selected_ = backbone::select_taps(options.layers, MobileNetV1Impl::tap_names(), {"block5", "block10"}, "layers");
  net_ = MobileNetV1();
  weights_path_ =
      backbone::resolve_weights(options.weights, "mobilenet_v1", {"mobilenet_v1_1.0_224_imagenet.safetensors"});
  if (weights_path_.empty()) {
    // Kaiming-normal (fan_out) convs, BN identity: the random baseline of the weights README.
    auto gen = at::detail::createCPUGenerator(static_cast<uint64_t>(options.seed));
    torch::NoGradGuard no_grad;
    for (auto& p : net_->parameters(true))
      if (p.dim() == 4) p.normal_(0.0, std::sqrt(2.0 / static_cast<double>(p.size(0) * p.size(2) * p.size(3))), gen);
  } else {
    load_checkpoint(*net_, weights_path_);
  }
  backbone::set_trainable(*net_, options.trainable);
}

std::map<std::string, torch::Tensor> MobileNetV1Backbone::forward(const torch::Tensor& x) {
  ScopedStage stage("backbone");  // test-time stage times (core/stages.hpp)
  backbone::check_input(x, "mobilenet_v1");
  if (options_.trainable) return net_->forward_taps(x, selected_);
  torch::NoGradGuard no_grad;
  return net_->forward_taps(x, selected_);
}

int64_t MobileNetV1Backbone::channels(const std::string& tap) const {
  const int i = tap_index(tap);
  return i == 0 ? 32 : kOut[i - 1];
}

int64_t MobileNetV1Backbone::stride(const std::string& tap) const {
  const int i = tap_index(tap);
  int64_t s = 2;
  for (int b = 0; b < i; ++b) s *= MobileNetV1Impl::block_stride(b);
  return s;
}

GridGeometry MobileNetV1Backbone::grid(const std::string& tap, int64_t height, int64_t width) const {
  // Every stride-2 layer is a 3x3 conv (the stem and the depthwise convs of the strided blocks);
  // with TF "same" padding p_before, output cell i is centred on input pixel 2i + 1 - p_before.
  // Walk the sizes forward, then compose the centre of cell 0 back to the input.
  const int i = tap_index(tap);
  const auto origin = [&](int64_t n) {
    std::vector<int64_t> before;
    before.push_back(tf_same_padding(n, 3, 2).first);
    n = (n + 1) / 2;
    for (int b = 0; b < i; ++b) {
      if (MobileNetV1Impl::block_stride(b) != 2) continue;
      before.push_back(tf_same_padding(n, 3, 2).first);
      n = (n + 1) / 2;
    }
    double c = 0;
    for (auto it = before.rbegin(); it != before.rend(); ++it) c = 2 * c + 1 - static_cast<double>(*it);
    return c;
  };
  return {origin(height), origin(width), static_cast<double>(stride(tap))};
}

}  // namespace adfw
