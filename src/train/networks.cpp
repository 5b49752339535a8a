// DRAEM, RIAD and the feature-level heads of SuperSimpleNet and SimpleNet (declared in
// include/adfw/train/networks/), in one file because they share the private conv helpers below.
// The diffusion U-Net is in diffusion_unet.cpp.
#include "adfw/train/networks/draem_unets.hpp"
#include "adfw/train/networks/feature_heads.hpp"
#include "adfw/train/networks/riad_unet.hpp"

#include <cmath>
#include <sstream>

#include "adfw/core/error.hpp"

namespace adfw {
namespace F = torch::nn::functional;

namespace {

std::string shape_str(const torch::Tensor& x) {
  std::ostringstream s;
  for (int64_t d = 0; d < x.dim(); ++d) s << (d ? "x" : "") << x.size(d);
  return s.str();
}

/// Checks an image batch (N,C,H,W): channel count and H, W multiples of `multiple`.
void check_image(const char* net, const torch::Tensor& x, int64_t channels, int64_t multiple) {
  if (!x.defined()) throw Error(std::string(net) + ": the input tensor is undefined");
  if (x.dim() != 4 || x.size(1) != channels)
    throw Error(std::string(net) + ": expected input (N," + std::to_string(channels) + ",H,W), got " +
                shape_str(x));
  if (x.size(2) % multiple != 0 || x.size(3) % multiple != 0 || x.size(2) == 0 || x.size(3) == 0) {
    const int64_t h = std::max<int64_t>(multiple, (x.size(2) + multiple / 2) / multiple * multiple);
    const int64_t w = std::max<int64_t>(multiple, (x.size(3) + multiple / 2) / multiple * multiple);
    throw Error(std::string(net) + ": input size " + std::to_string(x.size(2)) + "x" + std::to_string(x.size(3)) +
                " is not a multiple of " + std::to_string(multiple) + " in height and width; resize the images to " +
                "e.g. " + std::to_string(h) + "x" + std::to_string(w));
  }
}

/// Checks a feature map (N,C,h,w) or patch rows (M,C).
void check_features(const char* net, const torch::Tensor& x, int64_t channels, bool rows_allowed) {
  if (!x.defined()) throw Error(std::string(net) + ": the input tensor is undefined");
  const bool ok = (x.dim() == 4 && x.size(1) == channels) || (rows_allowed && x.dim() == 2 && x.size(1) == channels);
  if (!ok)
    throw Error(std::string(net) + ": expected features (N," + std::to_string(channels) + ",h,w)" +
                (rows_allowed ? " or rows (M," + std::to_string(channels) + ")" : std::string()) + ", got " +
                shape_str(x) + "; set the network's channel option to the feature width");
}


torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t pad = -1, bool bias = true) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(pad < 0 ? k / 2 : pad).bias(bias));
}
torch::nn::BatchNorm2d bn(int64_t c) { return torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(c)); }
// In-place as the references: BatchNorm's backward needs its input, not its output, so the ReLU can
// overwrite it, which saves one activation per layer in training.
torch::nn::ReLU relu() { return torch::nn::ReLU(torch::nn::ReLUOptions().inplace(true)); }

// ---------------------------------------------------------------------------------------------
// DRAEM (VitjanZ/DRAEM model_unet.py). Module names follow the reference so its state_dict keys
// ("encoder.block1.0.weight", "decoder_segment.up_b.1.weight", ...) match.

/// conv3x3 + BN + ReLU, twice: in -> mid -> out.
torch::nn::Sequential double_conv(int64_t in, int64_t mid, int64_t out) {
  return torch::nn::Sequential(conv(in, mid, 3), bn(mid), relu(), conv(mid, out, 3), bn(out), relu());
}
/// Bilinear x2 (align_corners = true, as the reference), conv3x3 + BN + ReLU.
torch::nn::Sequential up_conv(int64_t in, int64_t out) {
  return torch::nn::Sequential(
      torch::nn::Upsample(
          torch::nn::UpsampleOptions().scale_factor(std::vector<double>{2, 2}).mode(torch::kBilinear).align_corners(true)),
      conv(in, out, 3), bn(out), relu());
}

/// DRAEM's weights_init (train_DRAEM.py): conv weights N(0, 0.02), BatchNorm weights N(1, 0.02),
/// BatchNorm biases 0; conv biases keep torch's default.
void draem_init(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  // include_self = false: the module is still being constructed, not yet owned by a shared_ptr.
  for (auto& sub : m.modules(/*include_self=*/false)) {
    if (auto* c = sub->as<torch::nn::Conv2dImpl>()) {
      c->weight.normal_(0.0, 0.02);
    } else if (auto* b = sub->as<torch::nn::BatchNorm2dImpl>()) {
      b->weight.normal_(1.0, 0.02);
      b->bias.zero_();
    }
  }
}

/// Encoder blocks block1..block<n>: widths w, 2w, 4w, 8w, 8w, 8w, max-pool 2 between blocks.
class DraemEncoderImpl : public torch::nn::Module {
 public:
  DraemEncoderImpl(int64_t in, int64_t w, int n_blocks) {
    const int64_t widths[] = {w, 2 * w, 4 * w, 8 * w, 8 * w, 8 * w};
    int64_t prev = in;
    for (int i = 0; i < n_blocks; ++i) {
      blocks_.push_back(register_module("block" + std::to_string(i + 1), double_conv(prev, widths[i], widths[i])));
      prev = widths[i];
    }
  }
  /// Every block's output, b1 first.
  std::vector<torch::Tensor> forward(torch::Tensor x) {
    std::vector<torch::Tensor> out;
    for (size_t i = 0; i < blocks_.size(); ++i) {
      if (i > 0) x = F::max_pool2d(x, F::MaxPool2dFuncOptions(2));
      x = blocks_[i]->forward(x);
      out.push_back(x);
    }
    return out;
  }

 private:
  std::vector<torch::nn::Sequential> blocks_;
};
TORCH_MODULE(DraemEncoder);

class DraemReconstructiveDecoderImpl : public torch::nn::Module {
 public:
  DraemReconstructiveDecoderImpl(int64_t w, int64_t out) {
    // (up in/out, db mid, db out) per step: 8w -> 4w -> 2w -> w -> w.
    const int64_t steps[4][3] = {{8 * w, 8 * w, 4 * w}, {4 * w, 4 * w, 2 * w}, {2 * w, 2 * w, w}, {w, w, w}};
    for (int i = 0; i < 4; ++i) {
      const auto n = std::to_string(i + 1);
      up_.push_back(register_module("up" + n, up_conv(steps[i][0], steps[i][0])));
      db_.push_back(register_module("db" + n, double_conv(steps[i][0], steps[i][1], steps[i][2])));
    }
    fin_out_ = register_module("fin_out", torch::nn::Sequential(conv(w, out, 3)));
  }
  torch::Tensor forward(torch::Tensor x) {
    for (size_t i = 0; i < up_.size(); ++i) x = db_[i]->forward(up_[i]->forward(x));
    return fin_out_->forward(x);
  }

 private:
  std::vector<torch::nn::Sequential> up_, db_;
  torch::nn::Sequential fin_out_{nullptr};
};
TORCH_MODULE(DraemReconstructiveDecoder);

class DraemDiscriminativeDecoderImpl : public torch::nn::Module {
 public:
  DraemDiscriminativeDecoderImpl(int64_t w, int64_t out) {
    // (name suffix, up in, up out = db out, skip channels): b6 -> b5 -> b4 -> b3 -> b2 -> b1.
    struct Step { const char* name; int64_t in, out, skip; };
    const Step steps[] = {{"_b", 8 * w, 8 * w, 8 * w}, {"1", 8 * w, 4 * w, 8 * w}, {"2", 4 * w, 2 * w, 4 * w},
                          {"3", 2 * w, w, 2 * w},      {"4", w, w, w}};
    for (const auto& s : steps) {
      up_.push_back(register_module(std::string("up") + s.name, up_conv(s.in, s.out)));
      db_.push_back(register_module(std::string("db") + s.name, double_conv(s.out + s.skip, s.out, s.out)));
    }
    fin_out_ = register_module("fin_out", torch::nn::Sequential(conv(w, out, 3)));
  }
  /// `b` = encoder outputs b1..b6.
  torch::Tensor forward(const std::vector<torch::Tensor>& b) {
    torch::Tensor x = b.back();
    for (size_t i = 0; i < up_.size(); ++i) {
      const torch::Tensor& skip = b[b.size() - 2 - i];
      x = db_[i]->forward(torch::cat({up_[i]->forward(x), skip}, 1));
    }
    return fin_out_->forward(x);
  }

 private:
  std::vector<torch::nn::Sequential> up_, db_;
  torch::nn::Sequential fin_out_{nullptr};
};
TORCH_MODULE(DraemDiscriminativeDecoder);

}  // namespace

namespace detail {

class DraemReconstructiveImpl : public torch::nn::Module {
 public:
  explicit DraemReconstructiveImpl(const DraemReconstructiveOptions& o) {
    encoder_ = register_module("encoder", DraemEncoder(o.in_channels, o.base_width, 5));
    decoder_ = register_module("decoder", DraemReconstructiveDecoder(o.base_width, o.out_channels));
    draem_init(*this);
  }
  torch::Tensor forward(const torch::Tensor& x) { return decoder_->forward(encoder_->forward(x).back()); }

 private:
  DraemEncoder encoder_{nullptr};
  DraemReconstructiveDecoder decoder_{nullptr};
};

class DraemDiscriminativeImpl : public torch::nn::Module {
 public:
  explicit DraemDiscriminativeImpl(const DraemDiscriminativeOptions& o) {
    encoder_ = register_module("encoder_segment", DraemEncoder(o.in_channels, o.base_width, 6));
    decoder_ = register_module("decoder_segment", DraemDiscriminativeDecoder(o.base_width, o.out_channels));
    draem_init(*this);
  }
  torch::Tensor forward(const torch::Tensor& x) { return decoder_->forward(encoder_->forward(x)); }

 private:
  DraemEncoder encoder_{nullptr};
  DraemDiscriminativeDecoder decoder_{nullptr};
};

// ---------------------------------------------------------------------------------------------
// RIAD (plutoyuxie/RIAD models/unet.py; Zavrtanik et al., "Reconstruction by inpainting for
// visual anomaly detection", Pattern Recognition 2021). Default torch initialisation, as the
// reference.

class RiadDownBlockImpl : public torch::nn::Module {
 public:
  RiadDownBlockImpl(int64_t in, int64_t out, int64_t k, int64_t stride) {
    conv1_ = register_module("conv1", conv(in, out, k, stride, 1));
    bn1_ = register_module("bn1", bn(out));
    conv2_ = register_module("conv2", conv(out, out, 3));
    bn2_ = register_module("bn2", bn(out));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return torch::relu(bn2_->forward(conv2_->forward(torch::relu(bn1_->forward(conv1_->forward(x))))));
  }

 private:
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
};
TORCH_MODULE(RiadDownBlock);

class RiadUpBlockImpl : public torch::nn::Module {
 public:
  RiadUpBlockImpl(int64_t in, int64_t out, bool transpose) {
    if (transpose) {
      transpose_ = register_module(
          "upconv", torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(in, out, 4).stride(2).padding(1)));
    } else {
      bilinear_ = register_module(
          "upconv", torch::nn::Sequential(torch::nn::Upsample(torch::nn::UpsampleOptions()
                                                                  .scale_factor(std::vector<double>{2, 2})
                                                                  .mode(torch::kBilinear)
                                                                  .align_corners(false)),
                                          conv(in, out, 1)));
    }
    conv1_ = register_module("conv1", conv(2 * out, out, 3));
    bn1_ = register_module("bn1", bn(out));
    conv2_ = register_module("conv2", conv(out, out, 3));
    bn2_ = register_module("bn2", bn(out));
  }
  torch::Tensor forward(const torch::Tensor& from_up, const torch::Tensor& from_down) {
    const torch::Tensor up = transpose_ ? transpose_->forward(from_up) : bilinear_->forward(from_up);
    torch::Tensor x = torch::relu(bn1_->forward(conv1_->forward(torch::cat({up, from_down}, 1))));
    return torch::relu(bn2_->forward(conv2_->forward(x)));
  }

 private:
  torch::nn::ConvTranspose2d transpose_{nullptr};
  torch::nn::Sequential bilinear_{nullptr};
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  torch::nn::BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
};
TORCH_MODULE(RiadUpBlock);

class RiadUNetImpl : public torch::nn::Module {
 public:
  explicit RiadUNetImpl(const RiadUNetOptions& o) : activation_(o.output_activation) {
    const int64_t w = o.base_width;
    const int64_t widths[] = {w, 2 * w, 4 * w, 8 * w, 8 * w};
    int64_t prev = o.in_channels;
    for (int i = 0; i < 5; ++i) {
      down_.push_back(register_module("down" + std::to_string(i + 1),
                                      RiadDownBlock(prev, widths[i], i == 0 ? 3 : 4, i == 0 ? 1 : 2)));
      prev = widths[i];
    }
    for (int i = 0; i < 4; ++i)
      up_.push_back(register_module("up" + std::to_string(i + 1),
                                    RiadUpBlock(widths[4 - i], widths[3 - i], o.up_mode == "transpose")));
    conv_final_ = register_module("conv_final", torch::nn::Sequential(conv(w, o.out_channels, 3)));
  }
  torch::Tensor forward(const torch::Tensor& input) {
    std::vector<torch::Tensor> d;
    torch::Tensor x = input;
    for (auto& block : down_) d.push_back(x = block->forward(x));
    for (size_t i = 0; i < up_.size(); ++i) x = up_[i]->forward(x, d[d.size() - 2 - i]);
    x = conv_final_->forward(x);
    if (activation_ == "tanh") return torch::tanh(x);
    if (activation_ == "sigmoid") return torch::sigmoid(x);
    return x;
  }

 private:
  std::string activation_;
  std::vector<RiadDownBlock> down_;
  std::vector<RiadUpBlock> up_;
  torch::nn::Sequential conv_final_{nullptr};
};

// ---------------------------------------------------------------------------------------------
// SuperSimpleNet (blaz-r/SuperSimpleNet model/supersimplenet.py) and SimpleNet
// (DonaldRR/SimpleNet simplenet.py). Both initialise conv/linear weights xavier-normal, biases
// with torch's default, BatchNorm weights 1.

void xavier_init(torch::nn::Module& m) {
  torch::NoGradGuard no_grad;
  // include_self = false: the module is still being constructed, not yet owned by a shared_ptr.
  for (auto& sub : m.modules(/*include_self=*/false)) {
    if (auto* c = sub->as<torch::nn::Conv2dImpl>()) torch::nn::init::xavier_normal_(c->weight);
    else if (auto* l = sub->as<torch::nn::LinearImpl>()) torch::nn::init::xavier_normal_(l->weight);
  }
}

class FeatureAdaptorImpl : public torch::nn::Module {
 public:
  FeatureAdaptorImpl(const FeatureAdaptorOptions& o, int64_t c) {
    projection_ = register_module("projection", conv(c, c, 1, 1, 0, o.bias));
    xavier_init(*this);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    if (x.dim() == 2) return F::linear(x, projection_->weight.flatten(1), projection_->bias);
    return projection_->forward(x);
  }

 private:
  torch::nn::Conv2d projection_{nullptr};
};

class SsnSegmentationHeadImpl : public torch::nn::Module {
 public:
  SsnSegmentationHeadImpl(const SsnSegmentationHeadOptions& o, int64_t c) {
    // Sequential indices 0 (conv), 1 (BatchNorm), 2 (LeakyReLU), 3 (conv) as the reference's "seg".
    seg_ = register_module(
        "seg", torch::nn::Sequential(
                   conv(c, o.hidden, 1, 1, 0), bn(o.hidden),
                   torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(o.negative_slope).inplace(true)),
                   conv(o.hidden, 1, 1, 1, 0, /*bias=*/false)));
    xavier_init(*this);
  }
  torch::Tensor forward(const torch::Tensor& x) { return seg_->forward(x); }

 private:
  torch::nn::Sequential seg_{nullptr};
};

class SsnClassificationHeadImpl : public torch::nn::Module {
 public:
  SsnClassificationHeadImpl(const SsnClassificationHeadOptions& o, int64_t c) {
    dec_head_ = register_module(
        "dec_head", torch::nn::Sequential(conv(c + 1, o.hidden, o.kernel_size), bn(o.hidden), relu()));
    fc_score_ = register_module("fc_score", torch::nn::Linear(2 * o.hidden + 2, 1));
    xavier_init(*this);
  }
  torch::Tensor forward(const torch::Tensor& features, const torch::Tensor& map) {
    const torch::Tensor dec = dec_head_->forward(torch::cat({features, map}, 1));
    const auto gmax = [](const torch::Tensor& t) { return std::get<0>(t.flatten(2).max(2)); };
    const auto gavg = [](const torch::Tensor& t) { return t.flatten(2).mean(2); };
    const torch::Tensor pooled = torch::cat({gmax(dec), gavg(dec), gmax(map), gavg(map)}, 1);
    return fc_score_->forward(pooled).squeeze(1);
  }

 private:
  torch::nn::Sequential dec_head_{nullptr};
  torch::nn::Linear fc_score_{nullptr};
};

/// Linear + BatchNorm1d + LeakyReLU, children named "0" and "1" as the reference's Sequential.
class SimpleNetBlockImpl : public torch::nn::Module {
 public:
  SimpleNetBlockImpl(int64_t in, int64_t out, double slope) : slope_(slope) {
    linear_ = register_module("0", torch::nn::Linear(in, out));
    norm_ = register_module("1", torch::nn::BatchNorm1d(out));
  }
  torch::Tensor forward(const torch::Tensor& x) { return F::leaky_relu(norm_->forward(linear_->forward(x)),
                                                                       F::LeakyReLUFuncOptions().negative_slope(slope_)); }

 private:
  double slope_;
  torch::nn::Linear linear_{nullptr};
  torch::nn::BatchNorm1d norm_{nullptr};
};
TORCH_MODULE(SimpleNetBlock);

class SimpleNetDiscriminatorImpl : public torch::nn::Module {
 public:
  SimpleNetDiscriminatorImpl(const SimpleNetDiscriminatorOptions& o, int64_t c) : negate_(o.negate) {
    auto body = register_module("body", std::make_shared<torch::nn::Module>());
    int64_t width = c;
    for (int64_t i = 0; i + 1 < o.layers; ++i) {
      const int64_t in = width;
      width = o.hidden > 0 ? o.hidden : static_cast<int64_t>(std::floor(static_cast<double>(width) / 1.5));
      if (width < 1) throw ConfigError("simplenet_discriminator: layers = " + std::to_string(o.layers) +
                                       " shrinks the width below 1; use fewer layers or set hidden");
      blocks_.push_back(
          body->register_module("block" + std::to_string(i + 1), SimpleNetBlock(in, width, o.negative_slope)));
    }
    tail_ = register_module("tail", torch::nn::Linear(torch::nn::LinearOptions(width, 1).bias(false)));
    xavier_init(*this);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    if (x.dim() == 2) {
      torch::Tensor h = x;
      for (auto& b : blocks_) h = b->forward(h);
      return negate_ ? -tail_->forward(h) : tail_->forward(h);
    }
    const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
    const torch::Tensor rows = x.permute({0, 2, 3, 1}).reshape({n * h * w, x.size(1)});
    return forward(rows).reshape({n, h, w, 1}).permute({0, 3, 1, 2});
  }

 private:
  bool negate_;
  std::vector<SimpleNetBlock> blocks_;
  torch::nn::Linear tail_{nullptr};
};

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Public wrappers.

DraemReconstructive::DraemReconstructive(const Options& options)
    : options_(options), net_(std::make_shared<detail::DraemReconstructiveImpl>(options)) {}
torch::Tensor DraemReconstructive::forward(const torch::Tensor& x, const torch::Tensor&) {
  check_image("draem_reconstructive", x, options_.in_channels, 16);
  return net_->forward(x);
}
std::shared_ptr<torch::nn::Module> DraemReconstructive::module() { return net_; }

DraemDiscriminative::DraemDiscriminative(const Options& options)
    : options_(options), net_(std::make_shared<detail::DraemDiscriminativeImpl>(options)) {}
torch::Tensor DraemDiscriminative::forward(const torch::Tensor& x, const torch::Tensor&) {
  check_image("draem_discriminative", x, options_.in_channels, 32);
  return net_->forward(x);
}
std::shared_ptr<torch::nn::Module> DraemDiscriminative::module() { return net_; }

RiadUNet::RiadUNet(const Options& options)
    : options_(options), net_(std::make_shared<detail::RiadUNetImpl>(options)) {}
torch::Tensor RiadUNet::forward(const torch::Tensor& x, const torch::Tensor&) {
  check_image("riad_unet", x, options_.in_channels, 16);
  return net_->forward(x);
}
std::shared_ptr<torch::nn::Module> RiadUNet::module() { return net_; }

namespace {
template <class Impl, class O>
std::shared_ptr<Impl> make_checked(const char* net, const O& o) {
  // "auto" is settled by the method that builds the part (Slot::settle); on its own it needs a number.
  return std::make_shared<Impl>(o, o.in_channels.get(std::string(net) + ".in_channels"));
}
}  // namespace

FeatureAdaptor::FeatureAdaptor(const Options& options)
    : options_(options),
      net_(make_checked<detail::FeatureAdaptorImpl>("feature_adaptor", options)) {}
torch::Tensor FeatureAdaptor::forward(const torch::Tensor& x, const torch::Tensor&) {
  check_features("feature_adaptor", x, *options_.in_channels.value, true);
  return net_->forward(x);
}
std::shared_ptr<torch::nn::Module> FeatureAdaptor::module() { return net_; }

SsnSegmentationHead::SsnSegmentationHead(const Options& options)
    : options_(options),
      net_(make_checked<detail::SsnSegmentationHeadImpl>("ssn_segmentation_head", options)) {}
torch::Tensor SsnSegmentationHead::forward(const torch::Tensor& x, const torch::Tensor&) {
  check_features("ssn_segmentation_head", x, *options_.in_channels.value, false);
  return net_->forward(x);
}
std::shared_ptr<torch::nn::Module> SsnSegmentationHead::module() { return net_; }

SsnClassificationHead::SsnClassificationHead(const Options& options)
    : options_(options),
      net_(make_checked<detail::SsnClassificationHeadImpl>("ssn_classification_head", options)) {
  if (options.kernel_size % 2 == 0)
    throw ConfigError("ssn_classification_head: kernel_size must be odd for 'same' padding, got " +
                      std::to_string(options.kernel_size));
}
torch::Tensor SsnClassificationHead::forward(const torch::Tensor& x, const torch::Tensor& condition) {
  check_features("ssn_classification_head", x, *options_.in_channels.value, false);
  if (!condition.defined() || condition.dim() != 4 || condition.size(0) != x.size(0) || condition.size(1) != 1 ||
      condition.size(2) != x.size(2) || condition.size(3) != x.size(3))
    throw Error("ssn_classification_head: the condition must be the segmentation map (" +
                std::to_string(x.size(0)) + ",1," + std::to_string(x.size(2)) + "," + std::to_string(x.size(3)) +
                "), got " + (condition.defined() ? shape_str(condition) : std::string("none")));
  return net_->forward(x, condition);
}
std::shared_ptr<torch::nn::Module> SsnClassificationHead::module() { return net_; }

SimpleNetDiscriminator::SimpleNetDiscriminator(const Options& options)
    : options_(options),
      net_(make_checked<detail::SimpleNetDiscriminatorImpl>("simplenet_discriminator", options)) {}
torch::Tensor SimpleNetDiscriminator::forward(const torch::Tensor& x, const torch::Tensor&) {
  check_features("simplenet_discriminator", x, *options_.in_channels.value, true);
  return net_->forward(x);
}
std::shared_ptr<torch::nn::Module> SimpleNetDiscriminator::module() { return net_; }

}  // namespace adfw
