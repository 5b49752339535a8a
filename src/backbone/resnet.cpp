// torchvision ResNet family; see include/adfw/backbone/resnet.hpp.
#include "adfw/backbone/resnet.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/mkldnn_convolution.h>
#include <ATen/ops/mkldnn_max_pool2d.h>
#include <ATen/ops/mkldnn_reorder_conv2d_weight.h>

#include <cmath>

#include "adfw/core/checkpoint.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/stages.hpp"

namespace adfw {
namespace F = torch::nn::functional;

namespace {

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(pad).bias(false));
}
torch::nn::BatchNorm2d bn(int64_t c) { return torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(c).eps(1e-5)); }

/// Stage index of a tap ("stem" 0, "layer1" 1 .. "logits" 6).
int tap_depth(const std::string& tap) {
  const auto& names = ResNetImpl::tap_names();
  const auto it = std::find(names.begin(), names.end(), tap);
  if (it == names.end()) throw ConfigError("resnet: unknown tap '" + tap + "'." + suggest_from(tap, names));
  return static_cast<int>(it - names.begin());
}

/// The deepest of `wanted` (tap_depth), or -1 for none: how far a forward has to run.
int deepest_tap(const std::vector<std::string>& wanted) {
  int deepest = -1;
  for (const auto& w : wanted) deepest = std::max(deepest, tap_depth(w));
  return deepest;
}

}  // namespace

ResNetConfig ResNetConfig::for_arch(const std::string& arch) {
  ResNetConfig c;
  if (arch == "resnet18") c = {false, {2, 2, 2, 2}, 64};
  else if (arch == "resnet34") c = {false, {3, 4, 6, 3}, 64};
  else if (arch == "resnet50") c = {true, {3, 4, 6, 3}, 64};
  else if (arch == "resnet101") c = {true, {3, 4, 23, 3}, 64};
  else if (arch == "resnet152") c = {true, {3, 8, 36, 3}, 64};
  else if (arch == "wide_resnet50_2") c = {true, {3, 4, 6, 3}, 128};
  else if (arch == "wide_resnet101_2") c = {true, {3, 4, 23, 3}, 128};
  else
    throw ConfigError("resnet: unknown arch '" + arch + "'." +
                      suggest_from(arch, {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                                          "wide_resnet50_2", "wide_resnet101_2"}));
  return c;
}

ResNetBlockImpl::ResNetBlockImpl(bool bottleneck, int64_t inplanes, int64_t planes, int64_t stride,
                                 int64_t width_per_group)
    : bottleneck_(bottleneck) {
  const int64_t expansion = bottleneck ? 4 : 1;
  if (bottleneck) {
    const int64_t width = static_cast<int64_t>(planes * (width_per_group / 64.0));
    conv1_ = register_module("conv1", conv(inplanes, width, 1, 1, 0));
    bn1_ = register_module("bn1", bn(width));
    conv2_ = register_module("conv2", conv(width, width, 3, stride, 1));
    bn2_ = register_module("bn2", bn(width));
    conv3_ = register_module("conv3", conv(width, planes * expansion, 1, 1, 0));
    bn3_ = register_module("bn3", bn(planes * expansion));
  } else {
    conv1_ = register_module("conv1", conv(inplanes, planes, 3, stride, 1));
    bn1_ = register_module("bn1", bn(planes));
    conv2_ = register_module("conv2", conv(planes, planes, 3, 1, 1));
    bn2_ = register_module("bn2", bn(planes));
  }
  if (stride != 1 || inplanes != planes * expansion) {
    down_conv_ = conv(inplanes, planes * expansion, 1, stride, 0);
    down_bn_ = bn(planes * expansion);
    torch::nn::ModuleList down;
    down->push_back(down_conv_);
    down->push_back(down_bn_);
    register_module("downsample", down);
  }
}

torch::Tensor ResNetBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor out = torch::relu(bn1_(conv1_(x)));
  out = bn2_(conv2_(out));
  if (bottleneck_) out = bn3_(conv3_(torch::relu(out)));
  const torch::Tensor identity = down_conv_ ? down_bn_(down_conv_(x)) : x;
  return torch::relu(out + identity);
}

const std::vector<std::string>& ResNetImpl::tap_names() {
  static const std::vector<std::string> names = {"stem", "layer1", "layer2", "layer3", "layer4", "pool", "logits"};
  return names;
}

ResNetImpl::ResNetImpl(const ResNetConfig& config) : config_(config) {
  if (config.blocks.size() != 4)
    throw ConfigError("resnet: blocks needs 4 values (one per stage), got " + std::to_string(config.blocks.size()));
  conv1_ = register_module("conv1", conv(3, 64, 7, 2, 3));
  bn1_ = register_module("bn1", bn(64));
  int64_t inplanes = 64;
  for (int s = 0; s < 4; ++s) {
    if (config.blocks[s] < 1) throw ConfigError("resnet: every stage needs at least one block");
    const int64_t planes = 64 << s;
    torch::nn::ModuleList layer;
    for (int64_t b = 0; b < config.blocks[s]; ++b) {
      layer->push_back(ResNetBlock(config.bottleneck, inplanes, planes, (b == 0 && s > 0) ? 2 : 1,
                                   config.width_per_group));
      inplanes = planes * config.expansion();
    }
    layers_.push_back(register_module("layer" + std::to_string(s + 1), layer));
  }
  fc_ = register_module("fc", torch::nn::Linear(inplanes, config.num_classes));
}

std::map<std::string, torch::Tensor> ResNetImpl::forward_taps(const torch::Tensor& x,
                                                              const std::vector<std::string>& wanted) {
  const int deepest = deepest_tap(wanted);
  std::map<std::string, torch::Tensor> out;
  auto keep = [&](int depth, const torch::Tensor& t) {
    const std::string& name = tap_names()[depth];
    if (std::find(wanted.begin(), wanted.end(), name) != wanted.end()) out[name] = t;
  };
  if (deepest < 0) return out;
  torch::Tensor h = torch::relu(bn1_(conv1_(x)));
  h = F::max_pool2d(h, F::MaxPool2dFuncOptions(3).stride(2).padding(1));
  keep(0, h);
  for (int s = 0; s < 4 && s < deepest; ++s) {
    for (const auto& block : *layers_[s]) h = block->as<ResNetBlockImpl>()->forward(h);
    keep(s + 1, h);
  }
  if (deepest >= 5) {
    h = torch::flatten(F::adaptive_avg_pool2d(h, F::AdaptiveAvgPool2dFuncOptions(1)), 1);
    keep(5, h);
  }
  if (deepest >= 6) keep(6, fc_(h));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Fused CPU inference
// ---------------------------------------------------------------------------------------------
// Eager LibTorch hands each convolution to oneDNN with dense NCHW tensors: every call reorders the
// weights and the activations into oneDNN's blocked layout and back, and each BatchNorm is another
// pass over memory. A frozen backbone's weights never change, so this plan does that work once:
// BN folded into the convolution (w' = w * g / sqrt(v + eps), b' = b - m * g / sqrt(v + eps),
// computed in float64), weights packed for oneDNN, and activations kept in the blocked layout from
// the input to each tap, where they are turned back into dense tensors. The same rewrite is what
// torch.jit.optimize_for_inference does to a frozen torchvision model.

namespace {

struct FusedConv {
  torch::Tensor weight;  ///< oneDNN-packed, BN folded in
  torch::Tensor bias;    ///< oneDNN tensor
  std::vector<int64_t> stride, padding;
  torch::Tensor operator()(const torch::Tensor& x) const {
    return at::mkldnn_convolution(x, weight, bias, padding, stride, {1, 1}, 1);
  }
};

FusedConv fold(const torch::nn::Conv2d& conv, const torch::nn::BatchNorm2d& bn) {
  torch::NoGradGuard no_grad;
  const auto f64 = torch::kFloat64;
  const torch::Tensor scale = bn->weight.to(f64) / torch::sqrt(bn->running_var.to(f64) + bn->options.eps());
  const torch::Tensor w = (conv->weight.to(f64) * scale.view({-1, 1, 1, 1})).to(torch::kFloat32).contiguous();
  const torch::Tensor b = (bn->bias.to(f64) - bn->running_mean.to(f64) * scale).to(torch::kFloat32).contiguous();
  FusedConv f;
  const auto& k = *conv->options.kernel_size();
  const auto& st = *conv->options.stride();
  f.stride = {st[0], st[1]};
  f.padding = {(k[0] - 1) / 2, (k[1] - 1) / 2};  // every torchvision ResNet conv pads to "same"
  f.weight = at::mkldnn_reorder_conv2d_weight(w.to_mkldnn(), f.padding, f.stride, {1, 1}, 1);
  f.bias = b.to_mkldnn();
  return f;
}

}  // namespace

class ResNetFused {
 public:
  explicit ResNetFused(ResNetImpl& net) : net_(net) {
    stem_ = fold(net.conv1_, net.bn1_);
    for (const auto& layer : net.layers_) {
      std::vector<Block> blocks;
      for (const auto& m : *layer) {
        const auto* b = m->as<ResNetBlockImpl>();
        Block f;
        f.bottleneck = b->bottleneck_;
        f.convs.push_back(fold(b->conv1_, b->bn1_));
        f.convs.push_back(fold(b->conv2_, b->bn2_));
        if (b->bottleneck_) f.convs.push_back(fold(b->conv3_, b->bn3_));
        if (b->down_conv_) f.down = std::make_unique<FusedConv>(fold(b->down_conv_, b->down_bn_));
        blocks.push_back(std::move(f));
      }
      layers_.push_back(std::move(blocks));
    }
  }

  /// The `wanted` taps, as ResNetImpl::forward_taps gives them.
  std::map<std::string, torch::Tensor> forward(const torch::Tensor& x, const std::vector<std::string>& wanted) const {
    const int deepest = deepest_tap(wanted);
    std::map<std::string, torch::Tensor> out;
    if (deepest < 0) return out;
    auto keep = [&](int depth, const torch::Tensor& t) {
      const std::string& name = ResNetImpl::tap_names()[depth];
      if (std::find(wanted.begin(), wanted.end(), name) != wanted.end()) out[name] = t.to_dense();
    };
    torch::Tensor h = stem_(x.contiguous().to_mkldnn()).relu_();
    // The oneDNN kernel by name: LibTorch 2.x routes at::max_pool2d on oneDNN tensors through its
    // composite lowering and fails outside InferenceMode (whose tensors could not feed a trained
    // adaptor).
    h = at::mkldnn_max_pool2d(h, {3, 3}, {2, 2}, {1, 1}, {1, 1}, false);
    keep(0, h);
    for (int s = 0; s < 4 && s < deepest; ++s) {
      for (const Block& b : layers_[s]) {
        torch::Tensor o = b.convs[0](h).relu_();
        o = b.convs[1](o);
        if (b.bottleneck) o = b.convs[2](o.relu_());
        o.add_(b.down ? (*b.down)(h) : h);
        h = o.relu_();
      }
      keep(s + 1, h);
    }
    if (deepest >= 5) {
      torch::Tensor pooled = torch::flatten(F::adaptive_avg_pool2d(h.to_dense(), F::AdaptiveAvgPool2dFuncOptions(1)), 1);
      keep(5, pooled);
      if (deepest >= 6) out["logits"] = net_.fc_(pooled);
    }
    return out;
  }

 private:
  struct Block {
    bool bottleneck = false;
    std::vector<FusedConv> convs;
    std::unique_ptr<FusedConv> down;
  };
  ResNetImpl& net_;
  FusedConv stem_;
  std::vector<std::vector<Block>> layers_;
};

ResNetBackbone::ResNetBackbone(const Options& options) : options_(options) {
  ResNetConfig config = ResNetConfig::for_arch(options.arch);
  if (!options.blocks.empty()) config.blocks = options.blocks;
  selected_ = backbone::select_taps(options.layers, ResNetImpl::tap_names(), {"layer2", "layer3"}, "layers");
  net_ = ResNet(config);
  const std::map<std::string, std::string> official = {
      {"resnet18", "resnet18-f37072fd.pth"},       {"resnet34", "resnet34-b627a593.pth"},
      {"resnet50", "resnet50-0676ba61.pth"},       {"resnet101", "resnet101-63fe2227.pth"},
      {"resnet152", "resnet152-394f9c45.pth"},     {"wide_resnet50_2", "wide_resnet50_2-95faca4d.pth"},
      {"wide_resnet101_2", "wide_resnet101_2-32ee1156.pth"}};
  weights_path_ = backbone::resolve_weights(options.weights, options.arch, {official.at(options.arch)});
  if (weights_path_.empty()) {
    // torchvision's init: kaiming-normal (fan_out, relu) convs, BN identity, default Linear init.
    auto gen = at::detail::createCPUGenerator(static_cast<uint64_t>(options.seed));
    torch::NoGradGuard no_grad;
    for (auto& p : net_->named_parameters(true)) {
      torch::Tensor t = p.value();
      const std::string& k = p.key();
      if (t.dim() == 4) {
        const double fan_out = static_cast<double>(t.size(0) * t.size(2) * t.size(3));
        t.normal_(0.0, std::sqrt(2.0 / fan_out), gen);
      } else if (k.rfind("fc.", 0) == 0) {
        const double bound = 1.0 / std::sqrt(static_cast<double>(net_->config().expansion() * 512));
        t.uniform_(-bound, bound, gen);
      }
    }
  } else {
    load_checkpoint(*net_, weights_path_);
  }
  backbone::set_trainable(*net_, options.trainable);
  // Folding and packing take about a second for a WideResNet: done here, with the weights, so
  // that the first batch (and a benchmark's first iteration) does not pay for it.
  fused_plan();
}

std::vector<std::string> ResNetBackbone::taps() const { return ResNetImpl::tap_names(); }

std::map<std::string, torch::Tensor> ResNetBackbone::forward(const torch::Tensor& x) {
  ScopedStage stage("backbone");  // test-time stage times (core/stages.hpp)
  backbone::check_input(x, "resnet", 1);
  if (options_.trainable) return net_->forward_taps(x, selected_);
  torch::NoGradGuard no_grad;
  if (x.device().is_cpu() && x.scalar_type() == torch::kFloat32) {
    if (std::shared_ptr<const ResNetFused> plan = fused_plan()) return plan->forward(x, selected_);
  }
  return net_->forward_taps(x, selected_);
}

namespace {
// What the fused plan was built from: every parameter and buffer's storage and version counter
// (bumped by any in-place change: copy_, a loaded checkpoint, an optimiser step). A plan whose
// signature no longer matches is rebuilt, so the fused forward always uses the current weights.
std::vector<int64_t> weight_signature(torch::nn::Module& net) {
  std::vector<int64_t> sig;
  for (const auto& t : net.parameters()) {
    sig.push_back(reinterpret_cast<int64_t>(t.data_ptr()));
    sig.push_back(static_cast<int64_t>(t._version()));
  }
  for (const auto& t : net.buffers()) {
    sig.push_back(reinterpret_cast<int64_t>(t.data_ptr()));
    sig.push_back(static_cast<int64_t>(t._version()));
  }
  return sig;
}
}  // namespace

std::shared_ptr<const ResNetFused> ResNetBackbone::fused_plan() {
  if (options_.trainable || options_.inference != "fused" || !at::hasMKLDNN()) return nullptr;
  const torch::Tensor first = net_->parameters().front();
  if (!first.device().is_cpu() || first.scalar_type() != torch::kFloat32) return nullptr;
  std::lock_guard<std::mutex> lock(fused_mutex_);
  std::vector<int64_t> sig = weight_signature(*net_);
  if (!fused_ || sig != fused_signature_) {
    torch::NoGradGuard no_grad;
    fused_ = std::make_shared<const ResNetFused>(*net_);
    fused_signature_ = std::move(sig);
  }
  return fused_;
}

int64_t ResNetBackbone::channels(const std::string& tap) const {
  const int d = tap_depth(tap);
  const int64_t e = net_->config().expansion();
  if (d == 0) return 64;
  if (d <= 4) return (64LL << (d - 1)) * e;
  if (d == 5) return 512 * e;
  return net_->config().num_classes;
}

GridGeometry ResNetBackbone::grid(const std::string& tap, int64_t height, int64_t width) const {
  GridGeometry g = Backbone::grid(tap, height, width);  // stride, and the check for a spatial tap
  g.origin_y = g.origin_x = 0.0;
  return g;
}

int64_t ResNetBackbone::stride(const std::string& tap) const {
  const int d = tap_depth(tap);
  if (d == 0) return 4;
  if (d <= 4) return 4LL << (d - 1);
  return 0;
}

}  // namespace adfw
