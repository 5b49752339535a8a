// TransFusion's denoising U-Net (family "network"; Fučka et al., ECCV 2024,
// MaticFuc/ECCV_TransFusion model/UNet.py). Module names follow the reference.
//   diffusion_unet   x (N,4,H,W) + timesteps (N) -> (N,7,H,W): see DiffusionUNetOptions for the layout
//
// Weights are drawn from torch's global generator at construction (a method seeds it with
// torch::manual_seed before building its networks), with each reference's initialisation.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "adfw/core/options.hpp"
#include "adfw/train/network.hpp"

namespace adfw {

namespace detail {
class DiffusionUNetImpl;
}  // namespace detail

struct DiffusionUNetOptions {
  int64_t in_channels = 4;
  int64_t out_channels = 7;
  int64_t base = 64;
  std::vector<int64_t> multipliers = {1, 2, 2, 2};
  std::vector<int64_t> attention_levels = {2, 3};
  int64_t res_blocks = 2;
  int64_t groups = 32;
  double dropout = 0.0;
  bool position_channel = true;

  template <class V>
  void fields(V& v) {
    v("in_channels", in_channels,
      "input channels (default 4: TransFusion feeds the current image x_t (3) and the current mask "
      "estimate (1), concatenated in that order)",
      Check::at_least(1));
    v("out_channels", out_channels,
      "output channels, odd: with k = (out_channels-1)/2, channels [0,k) are the noise estimate, [k,2k) the "
      "normal-image estimate, channel 2k the anomaly-mask logit (default 7 = 3 + 3 + 1, TransFusion's RGB "
      "mode)",
      Check::at_least(3));
    v("base", base, "channels after the input projection (default 64)", Check::at_least(1));
    v("multipliers", multipliers,
      "per level, the factor from the previous level's channels (cumulative, as TransFusion: [1,2,2,2] gives "
      "64, 128, 256, 512); one level per entry, a stride-2 down-sampling between levels",
      Check::at_least(1));
    v("attention_levels", attention_levels,
      "levels (0 = full resolution) whose residual blocks are followed by single-head self-attention "
      "(default [2, 3], the two deepest); the middle block always has attention",
      Check::at_least(0));
    v("res_blocks", res_blocks, "residual blocks per level on the way down (up: one more) (default 2)",
      Check::at_least(1));
    v("groups", groups, "GroupNorm groups in the residual blocks (default 32)", Check::at_least(1));
    v("dropout", dropout, "dropout before the second conv of each residual block (default 0, as TransFusion)",
      Check::range(0, 1));
    v("position_channel", position_channel,
      "append TransFusion's positional channel sin(row index) to the input before the first conv (default "
      "true)");
  }
};

/// TransFusion's denoising U-Net (a DDPM U-Net): 3x3 input projection, per level `res_blocks`
/// residual blocks (GroupNorm, SiLU, 3x3 convs, timestep embedding added after the first conv),
/// optional self-attention, stride-2 3x3 conv down-sampling; middle res + attention + res; decoder
/// of res_blocks+1 blocks per level taking skips by concatenation, 4x4 transposed-conv
/// up-sampling. condition = timesteps (N) (int64 or float), embedded by sinusoids (base/2
/// frequencies) and a 2-layer SiLU MLP to 4*base channels.
/// Output heads, concatenated on dim 1: noise = conv(SiLU(GroupNorm8(h))), normal image =
/// conv(h), mask logit = conv(SiLU(BatchNorm(h))). H and W must be multiples of
/// 2^(levels-1).
class DiffusionUNet final : public Network {
 public:
  using Options = DiffusionUNetOptions;
  explicit DiffusionUNet(const Options& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& condition = {}) override;
  std::shared_ptr<torch::nn::Module> module() override;
  const Options& options() const { return options_; }
  /// Channels per estimate, k = (out_channels - 1) / 2.
  int64_t image_channels() const { return (options_.out_channels - 1) / 2; }

 private:
  Options options_;
  std::shared_ptr<detail::DiffusionUNetImpl> net_;
};

}  // namespace adfw
