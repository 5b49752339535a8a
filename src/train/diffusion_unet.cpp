// TransFusion's denoising U-Net (Fučka, Zavrtanik, Skočaj, "TransFusion - A Transparency-Based
// Diffusion Model for Anomaly Detection", ECCV 2024), facts from MaticFuc/ECCV_TransFusion
// model/UNet.py (RGB mode, no grouped convs) and model/TransFusion.py (what goes in and out).
// Module names follow UNet.py ("image_proj", "time_emb.linear_1", "down.3.res.conv1",
// "middle.attn.projection", "final_seg.conv", ...). Torch's default initialisation, as the reference.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "adfw/core/error.hpp"
#include "adfw/train/networks/diffusion_unet.hpp"

namespace adfw {
namespace {

torch::nn::Conv2d conv3(int64_t in, int64_t out, int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1));
}

/// Sinusoidal embedding of the timesteps (dim/2 frequencies, sin then cos) and a 2-layer MLP
/// with SiLU between: dim/4 -> dim -> dim, dim = 4 * base.
class TimeEmbeddingImpl : public torch::nn::Module {
 public:
  explicit TimeEmbeddingImpl(int64_t dim) : dim_(dim) {
    linear_1_ = register_module("linear_1", torch::nn::Linear(dim / 4, dim));
    linear_2_ = register_module("linear_2", torch::nn::Linear(dim, dim));
  }
  torch::Tensor forward(const torch::Tensor& t) {
    const int64_t half = dim_ / 8;
    // log(10000) / (half - 1) as the reference; one frequency (half = 1) degenerates to exp(0).
    const double step = half > 1 ? std::log(10000.0) / static_cast<double>(half - 1) : 0.0;
    const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(t.device());
    const torch::Tensor freqs = torch::exp(torch::arange(half, opts) * -step);
    const torch::Tensor arg = t.to(torch::kFloat).unsqueeze(1) * freqs.unsqueeze(0);
    const torch::Tensor emb = torch::cat({arg.sin(), arg.cos()}, 1);
    return linear_2_->forward(torch::silu(linear_1_->forward(emb)));
  }

 private:
  int64_t dim_;
  torch::nn::Linear linear_1_{nullptr}, linear_2_{nullptr};
};
TORCH_MODULE(TimeEmbedding);

/// GroupNorm, SiLU, conv3x3, + projected time embedding, GroupNorm, SiLU, (dropout), conv3x3,
/// plus the input (1x1 conv when the width changes). The time embedding enters without an
/// activation, as UNet.py.
class ResidualBlockImpl : public torch::nn::Module {
 public:
  ResidualBlockImpl(int64_t in, int64_t out, int64_t time_channels, int64_t groups, double dropout)
      : dropout_(dropout) {
    norm1_ = register_module("norm1", torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, in)));
    conv1_ = register_module("conv1", conv3(in, out));
    norm2_ = register_module("norm2", torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, out)));
    conv2_ = register_module("conv2", conv3(out, out));
    if (in != out) shortcut_ = register_module("shortcut", torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1)));
    time_emb_ = register_module("time_emb", torch::nn::Linear(time_channels, out));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t) {
    torch::Tensor h = conv1_->forward(torch::silu(norm1_->forward(x)));
    h = h + time_emb_->forward(t).unsqueeze(-1).unsqueeze(-1);
    h = torch::silu(norm2_->forward(h));
    if (dropout_ > 0) h = torch::dropout(h, dropout_, is_training());
    h = conv2_->forward(h);
    return h + (shortcut_ ? shortcut_->forward(x) : x);
  }

 private:
  double dropout_;
  torch::nn::GroupNorm norm1_{nullptr}, norm2_{nullptr};
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, shortcut_{nullptr};
  torch::nn::Linear time_emb_{nullptr};
};
TORCH_MODULE(ResidualBlock);

/// Single-head self-attention over all positions with a residual, without normalisation (UNet.py
/// AttentionBlock: projection C -> 3C, softmax(q k^T / sqrt(C)) v, output C -> C).
class AttentionBlockImpl : public torch::nn::Module {
 public:
  explicit AttentionBlockImpl(int64_t c) : scale_(1.0 / std::sqrt(static_cast<double>(c))) {
    projection_ = register_module("projection", torch::nn::Linear(c, 3 * c));
    output_ = register_module("output", torch::nn::Linear(c, c));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    const torch::Tensor seq = x.reshape({n, c, h * w}).permute({0, 2, 1});  // (N, L, C)
    const auto qkv = projection_->forward(seq).chunk(3, -1);
    const torch::Tensor attn = torch::softmax(torch::bmm(qkv[0], qkv[1].transpose(1, 2)) * scale_, -1);
    const torch::Tensor res = output_->forward(torch::bmm(attn, qkv[2])) + seq;
    return res.permute({0, 2, 1}).reshape({n, c, h, w});
  }

 private:
  double scale_;
  torch::nn::Linear projection_{nullptr}, output_{nullptr};
};
TORCH_MODULE(AttentionBlock);

/// A residual block optionally followed by attention (UNet.py DownBlock / UpBlock).
class ResAttnBlockImpl : public torch::nn::Module {
 public:
  ResAttnBlockImpl(int64_t in, int64_t out, int64_t time_channels, bool attention, int64_t groups, double dropout) {
    res_ = register_module("res", ResidualBlock(in, out, time_channels, groups, dropout));
    if (attention) attn_ = register_module("attn", AttentionBlock(out));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t) {
    torch::Tensor h = res_->forward(x, t);
    return attn_ ? attn_->forward(h) : h;
  }

 private:
  ResidualBlock res_{nullptr};
  AttentionBlock attn_{nullptr};
};
TORCH_MODULE(ResAttnBlock);

/// A `down` / `up` list entry: a block, or a stride-2 resampling conv.
struct Stage {
  ResAttnBlock block{nullptr};
  torch::nn::Conv2d down{nullptr};
  torch::nn::ConvTranspose2d up{nullptr};
};

std::string shape_str(const torch::Tensor& x) {
  std::ostringstream s;
  for (int64_t d = 0; d < x.dim(); ++d) s << (d ? "x" : "") << x.size(d);
  return s.str();
}

}  // namespace

namespace detail {

class DiffusionUNetImpl : public torch::nn::Module {
 public:
  explicit DiffusionUNetImpl(const DiffusionUNetOptions& o) : position_channel_(o.position_channel) {
    const int64_t levels = static_cast<int64_t>(o.multipliers.size());
    const int64_t time_channels = 4 * o.base;
    const auto has_attn = [&](int64_t level) {
      return std::find(o.attention_levels.begin(), o.attention_levels.end(), level) != o.attention_levels.end();
    };
    const auto check_groups = [&](int64_t c, const std::string& where) {
      if (c % o.groups != 0)
        throw ConfigError("diffusion_unet: " + where + " has " + std::to_string(c) +
                          " channels, not divisible by groups = " + std::to_string(o.groups) +
                          "; change base, multipliers or groups");
    };
    auto res_block = [&](int64_t in, int64_t out, int64_t level, const std::string& where) {
      check_groups(in, where + " input");
      check_groups(out, where + " output");
      return ResAttnBlock(in, out, time_channels, has_attn(level), o.groups, o.dropout);
    };

    image_proj_ = register_module("image_proj", conv3(o.in_channels + (o.position_channel ? 1 : 0), o.base));
    time_emb_ = register_module("time_emb", TimeEmbedding(time_channels));

    // Encoder: widths multiply cumulatively; every entry's output is kept as a skip.
    auto down = register_module("down", torch::nn::ModuleList());
    int64_t in = o.base, out = o.base;
    for (int64_t i = 0; i < levels; ++i) {
      out = in * o.multipliers[static_cast<size_t>(i)];
      for (int64_t b = 0; b < o.res_blocks; ++b) {
        Stage s;
        s.block = res_block(in, out, i, "level " + std::to_string(i) + " encoder block");
        down->push_back(s.block);
        down_.push_back(s);
        in = out;
      }
      if (i + 1 < levels) {
        Stage s;
        auto holder = std::make_shared<torch::nn::Module>();  // "down.<i>.conv" as UNet.py's Downsample
        s.down = holder->register_module("conv", conv3(in, in, 2));
        down->push_back(holder);
        down_.push_back(s);
      }
    }
    check_groups(out, "the middle block");
    middle_res1_ = ResidualBlock(out, out, time_channels, o.groups, o.dropout);
    middle_attn_ = AttentionBlock(out);
    middle_res2_ = ResidualBlock(out, out, time_channels, o.groups, o.dropout);
    auto middle = register_module("middle", std::make_shared<torch::nn::Module>());
    middle->register_module("res1", middle_res1_);
    middle->register_module("attn", middle_attn_);
    middle->register_module("res2", middle_res2_);

    // Decoder: res_blocks blocks at the level's width taking same-width skips, one more that
    // narrows to the previous level's width taking the skip from before the level.
    auto up = register_module("up", torch::nn::ModuleList());
    in = out;
    for (int64_t i = levels - 1; i >= 0; --i) {
      const std::string where = "level " + std::to_string(i) + " decoder block";
      for (int64_t b = 0; b < o.res_blocks; ++b) {
        Stage s;
        s.block = res_block(in + in, in, i, where);
        up->push_back(s.block);
        up_.push_back(s);
      }
      const int64_t narrow = in / o.multipliers[static_cast<size_t>(i)];
      Stage s;
      s.block = res_block(in + narrow, narrow, i, where);
      up->push_back(s.block);
      up_.push_back(s);
      in = narrow;
      if (i > 0) {
        Stage u;
        auto holder = std::make_shared<torch::nn::Module>();  // "up.<i>.conv" as UNet.py's Upsample
        u.up = holder->register_module(
            "conv", torch::nn::ConvTranspose2d(torch::nn::ConvTranspose2dOptions(in, in, 4).stride(2).padding(1)));
        up->push_back(holder);
        up_.push_back(u);
      }
    }

    const int64_t k = (o.out_channels - 1) / 2;
    norm_ = register_module("norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(8, in)));
    final_ = register_module("final", conv3(in, k));
    final_mean_ = register_module("final_mean", conv3(in, k));
    auto seg = register_module("final_seg", std::make_shared<torch::nn::Module>());
    seg_norm_ = seg->register_module("norm", torch::nn::BatchNorm2d(in));
    seg_conv_ = seg->register_module("conv", conv3(in, 1));
    if (in % 8 != 0)
      throw ConfigError("diffusion_unet: the output GroupNorm uses 8 groups; base = " + std::to_string(in) +
                        " is not divisible by 8");
  }

  torch::Tensor forward(const torch::Tensor& input, const torch::Tensor& timesteps) {
    torch::Tensor x = input;
    if (position_channel_) {
      // TransFusion appends PositionalEncodingPermute2D(1) of a zero map: its single channel is
      // sin(row index) (positional_encodings' 2-D encoding, first frequency of the first axis).
      const auto opts = torch::TensorOptions().dtype(x.dtype()).device(x.device());
      const torch::Tensor pe = torch::arange(x.size(2), opts).sin().view({1, 1, x.size(2), 1});
      x = torch::cat({x, pe.expand({x.size(0), 1, x.size(2), x.size(3)})}, 1);
    }
    const torch::Tensor t = time_emb_->forward(timesteps);
    x = image_proj_->forward(x);

    std::vector<torch::Tensor> skips{x};
    for (auto& s : down_) {
      x = s.block ? s.block->forward(x, t) : s.down->forward(x);
      skips.push_back(x);
    }
    x = middle_res2_->forward(middle_attn_->forward(middle_res1_->forward(x, t)), t);
    for (auto& s : up_) {
      if (s.up) {
        x = s.up->forward(x);
        continue;
      }
      x = s.block->forward(torch::cat({x, skips.back()}, 1), t);
      skips.pop_back();
    }
    const torch::Tensor noise = final_->forward(torch::silu(norm_->forward(x)));
    const torch::Tensor mean = final_mean_->forward(x);
    const torch::Tensor mask = seg_conv_->forward(torch::silu(seg_norm_->forward(x)));
    return torch::cat({noise, mean, mask}, 1);
  }

 private:
  bool position_channel_;
  torch::nn::Conv2d image_proj_{nullptr};
  TimeEmbedding time_emb_{nullptr};
  std::vector<Stage> down_, up_;
  ResidualBlock middle_res1_{nullptr}, middle_res2_{nullptr};
  AttentionBlock middle_attn_{nullptr};
  torch::nn::GroupNorm norm_{nullptr};
  torch::nn::Conv2d final_{nullptr}, final_mean_{nullptr}, seg_conv_{nullptr};
  torch::nn::BatchNorm2d seg_norm_{nullptr};
};

}  // namespace detail

namespace {
const DiffusionUNetOptions& validated(const DiffusionUNetOptions& o) {
  if (o.out_channels % 2 != 1)
    throw ConfigError("diffusion_unet: out_channels must be odd (k noise + k normal-image + 1 mask channels), got " +
                      std::to_string(o.out_channels));
  if (o.multipliers.empty()) throw ConfigError("diffusion_unet: multipliers must name at least one level");
  for (int64_t l : o.attention_levels)
    if (l >= static_cast<int64_t>(o.multipliers.size()))
      throw ConfigError("diffusion_unet: attention level " + std::to_string(l) + " does not exist (levels 0.." +
                        std::to_string(o.multipliers.size() - 1) + ")");
  return o;
}
}  // namespace

DiffusionUNet::DiffusionUNet(const Options& options)
    : options_(validated(options)), net_(std::make_shared<detail::DiffusionUNetImpl>(options)) {}

torch::Tensor DiffusionUNet::forward(const torch::Tensor& x, const torch::Tensor& condition) {
  if (!x.defined() || x.dim() != 4 || x.size(1) != options_.in_channels)
    throw Error("diffusion_unet: expected input (N," + std::to_string(options_.in_channels) + ",H,W), got " +
                (x.defined() ? shape_str(x) : std::string("none")));
  const int64_t multiple = int64_t{1} << (options_.multipliers.size() - 1);
  if (x.size(2) % multiple != 0 || x.size(3) % multiple != 0)
    throw Error("diffusion_unet: input size " + std::to_string(x.size(2)) + "x" + std::to_string(x.size(3)) +
                " is not a multiple of " + std::to_string(multiple) + " (2^(levels-1)) in height and width");
  if (!condition.defined() || condition.dim() != 1 || condition.size(0) != x.size(0))
    throw Error("diffusion_unet: the condition must be the timesteps (" + std::to_string(x.size(0)) + "), got " +
                (condition.defined() ? shape_str(condition) : std::string("none")));
  return net_->forward(x, condition);
}

std::shared_ptr<torch::nn::Module> DiffusionUNet::module() { return net_; }

}  // namespace adfw
