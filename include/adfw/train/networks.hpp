// The registered networks (family "network"), each a plain Options struct plus a class implementing
// adfw::Network. Parameter and buffer names follow the reference implementations (so released
// PyTorch state_dicts map key for key where the reference released weights).
//
//   name                     reference                                                   x -> output
//   draem_reconstructive     DRAEM (Zavrtanik et al., ICCV 2021), VitjanZ/DRAEM model_unet.py  (N,3,H,W) -> (N,3,H,W)
//   draem_discriminative     same file, DiscriminativeSubNetwork                          (N,6,H,W) -> (N,2,H,W) logits
//   riad_unet                RIAD (Zavrtanik et al., Pattern Recognition 2021), plutoyuxie/RIAD models/unet.py
//                                                                                        (N,3,H,W) -> (N,3,H,W)
//   feature_adaptor          SuperSimpleNet FeatureAdaptor / SimpleNet pre-projection     (N,C,h,w) -> (N,C,h,w)
//   ssn_segmentation_head    SuperSimpleNet (Rolih et al., ICPR 2024) Discriminator.seg   (N,C,h,w) -> (N,1,h,w) logits
//   ssn_classification_head  SuperSimpleNet Discriminator.dec_head + fc_score  (N,C,h,w) + map (N,1,h,w) -> (N) logits
//   simplenet_discriminator  SimpleNet (Liu et al., CVPR 2023) Discriminator          (N,C,h,w) -> (N,1,h,w), (M,C) -> (M,1)
//   diffusion_unet           TransFusion (Fučka et al., ECCV 2024), MaticFuc/ECCV_TransFusion model/UNet.py
//                            x (N,4,H,W) + timesteps (N) -> (N,7,H,W): see DiffusionUNetOptions for the layout
//
// Weights are drawn from torch's global generator at construction (a method seeds it with
// torch::manual_seed before building its networks), with each reference's initialisation.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "adfw/core/options.hpp"
#include "adfw/train/network.hpp"

namespace adfw {

namespace detail {
class DraemReconstructiveImpl;
class DraemDiscriminativeImpl;
class RiadUNetImpl;
class FeatureAdaptorImpl;
class SsnSegmentationHeadImpl;
class SsnClassificationHeadImpl;
class SimpleNetDiscriminatorImpl;
class DiffusionUNetImpl;
}  // namespace detail

// ---------------------------------------------------------------------------------------------
// DRAEM

struct DraemReconstructiveOptions {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t base_width = 128;

  template <class V>
  void fields(V& v) {
    v("in_channels", in_channels, "input image channels (default 3)", Check::at_least(1));
    v("out_channels", out_channels, "reconstructed image channels (default 3)", Check::at_least(1));
    v("base_width", base_width, "channels of the first encoder block; deeper blocks use 2x, 4x, 8x (default 128)",
      Check::at_least(1));
  }
};

/// DRAEM's reconstructive sub-network: a 5-block encoder (4 max-pools) and a 4-step bilinear
/// decoder without skip connections, BatchNorm + ReLU, linear 3x3 output conv. H and W must be
/// multiples of 16 (the encoder pools four times).
class DraemReconstructive final : public Network {
 public:
  using Options = DraemReconstructiveOptions;
  explicit DraemReconstructive(const Options& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& condition = {}) override;
  std::shared_ptr<torch::nn::Module> module() override;
  const Options& options() const { return options_; }

 private:
  Options options_;
  std::shared_ptr<detail::DraemReconstructiveImpl> net_;
};

struct DraemDiscriminativeOptions {
  int64_t in_channels = 6;
  int64_t out_channels = 2;
  int64_t base_width = 64;

  template <class V>
  void fields(V& v) {
    v("in_channels", in_channels,
      "input channels (default 6: the reconstruction and the input image, concatenated in that order as DRAEM "
      "does)",
      Check::at_least(1));
    v("out_channels", out_channels, "output channels (default 2: logits of normal / anomalous; softmax over dim 1)",
      Check::at_least(1));
    v("base_width", base_width, "channels of the first encoder block; deeper blocks use 2x, 4x, 8x (default 64)",
      Check::at_least(1));
  }
};

/// DRAEM's discriminative sub-network: a U-Net with a 6-block encoder (5 max-pools), skip
/// connections by concatenation, bilinear up-sampling, BatchNorm + ReLU. Returns logits.
/// H and W must be multiples of 32.
class DraemDiscriminative final : public Network {
 public:
  using Options = DraemDiscriminativeOptions;
  explicit DraemDiscriminative(const Options& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& condition = {}) override;
  std::shared_ptr<torch::nn::Module> module() override;
  const Options& options() const { return options_; }

 private:
  Options options_;
  std::shared_ptr<detail::DraemDiscriminativeImpl> net_;
};

// ---------------------------------------------------------------------------------------------
// RIAD

struct RiadUNetOptions {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t base_width = 64;
  std::string up_mode = "transpose";
  std::string output_activation = "tanh";

  template <class V>
  void fields(V& v) {
    v("in_channels", in_channels, "input image channels (default 3)", Check::at_least(1));
    v("out_channels", out_channels, "output image channels (default 3)", Check::at_least(1));
    v("base_width", base_width,
      "channels of the first block; the others use 2x, 4x, 8x, 8x (default 64, as the reference)",
      Check::at_least(1));
    v("up_mode", up_mode,
      "decoder up-sampling: \"transpose\" (4x4 stride-2 transposed conv, the reference default) or \"bilinear\" "
      "(bilinear x2 then 1x1 conv)",
      Check::one_of({"transpose", "bilinear"}));
    v("output_activation", output_activation,
      "activation of the output conv: \"tanh\" (reference), \"sigmoid\" or \"none\"",
      Check::one_of({"tanh", "sigmoid", "none"}));
  }
};

/// RIAD's inpainting U-Net: a 3x3 stem block then four stride-2 4x4 conv blocks (BatchNorm + ReLU),
/// four up blocks with concatenated skips, 3x3 output conv + tanh. H and W must be multiples of 16.
class RiadUNet final : public Network {
 public:
  using Options = RiadUNetOptions;
  explicit RiadUNet(const Options& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& condition = {}) override;
  std::shared_ptr<torch::nn::Module> module() override;
  const Options& options() const { return options_; }

 private:
  Options options_;
  std::shared_ptr<detail::RiadUNetImpl> net_;
};

// ---------------------------------------------------------------------------------------------
// Feature-level heads (SuperSimpleNet, SimpleNet)

struct FeatureAdaptorOptions {
  AutoInt in_channels;
  bool bias = true;

  template <class V>
  void fields(V& v) {
    v("in_channels", in_channels,
      "feature channels C, in and out; \"auto\" (default) = what the method feeds it (the backbone's "
      "aggregated patch-feature width, e.g. 1536 for WRN50 layer2+layer3)",
      Check::at_least(1));
    v("bias", bias, "learn a bias (default true, as SuperSimpleNet's Conv2d and SimpleNet's Linear)");
  }
};

/// A C -> C linear map of each feature vector, as a 1x1 conv: SuperSimpleNet's feature adaptor and
/// SimpleNet's one-layer pre-projection (a Linear on patch features). Weights xavier-normal as both
/// references. Accepts (N,C,h,w) or patch rows (M,C).
class FeatureAdaptor final : public Network {
 public:
  using Options = FeatureAdaptorOptions;
  explicit FeatureAdaptor(const Options& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& condition = {}) override;
  std::shared_ptr<torch::nn::Module> module() override;
  const Options& options() const { return options_; }

 private:
  Options options_;
  std::shared_ptr<detail::FeatureAdaptorImpl> net_;
};

struct SsnSegmentationHeadOptions {
  AutoInt in_channels;
  int64_t hidden = 1024;
  double negative_slope = 0.2;

  template <class V>
  void fields(V& v) {
    v("in_channels", in_channels, "feature channels C; \"auto\" (default) = what the method feeds it (e.g. 1536)",
      Check::at_least(1));
    v("hidden", hidden, "hidden channels of the 1x1 conv (default 1024)", Check::at_least(1));
    v("negative_slope", negative_slope, "LeakyReLU slope after the BatchNorm (default 0.2, as the reference)",
      Check::range(0, 1));
  }
};

/// SuperSimpleNet's segmentation head: 1x1 conv C->hidden (bias), BatchNorm2d, LeakyReLU(0.2),
/// 1x1 conv hidden->1 without bias. (N,C,h,w) -> (N,1,h,w) logits.
class SsnSegmentationHead final : public Network {
 public:
  using Options = SsnSegmentationHeadOptions;
  explicit SsnSegmentationHead(const Options& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& condition = {}) override;
  std::shared_ptr<torch::nn::Module> module() override;
  const Options& options() const { return options_; }

 private:
  Options options_;
  std::shared_ptr<detail::SsnSegmentationHeadImpl> net_;
};

struct SsnClassificationHeadOptions {
  AutoInt in_channels;
  int64_t hidden = 128;
  int64_t kernel_size = 5;

  template <class V>
  void fields(V& v) {
    v("in_channels", in_channels,
      "feature channels C, without the map channel; \"auto\" (default) = what the method feeds it (e.g. 1536)",
      Check::at_least(1));
    v("hidden", hidden, "channels of the conv block (default 128)", Check::at_least(1));
    v("kernel_size", kernel_size, "odd kernel size of the conv block, 'same' padding (default 5)",
      Check::at_least(1));
  }
};

/// SuperSimpleNet's classification head. forward(features (N,C,h,w), condition = segmentation map
/// (N,1,h,w) logits) -> (N) logits: concat [features, map] -> conv kxk (C+1 -> hidden) + BatchNorm +
/// ReLU -> global max and average pooling of that output and of the map -> Linear(2*hidden + 2 -> 1)
/// on [conv max, conv avg, map max, map avg]. Gradients flow into the map unless the caller detaches
/// it (the reference's stop_grad option).
class SsnClassificationHead final : public Network {
 public:
  using Options = SsnClassificationHeadOptions;
  explicit SsnClassificationHead(const Options& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& condition = {}) override;
  std::shared_ptr<torch::nn::Module> module() override;
  const Options& options() const { return options_; }

 private:
  Options options_;
  std::shared_ptr<detail::SsnClassificationHeadImpl> net_;
};

struct SimpleNetDiscriminatorOptions {
  AutoInt in_channels;
  int64_t layers = 2;
  int64_t hidden = 1024;
  double negative_slope = 0.2;
  bool negate = true;

  template <class V>
  void fields(V& v) {
    v("in_channels", in_channels, "feature channels C; \"auto\" (default) = what the method feeds it (e.g. 1536)",
      Check::at_least(1));
    v("layers", layers,
      "layers in all: layers-1 blocks of Linear + BatchNorm1d + LeakyReLU, then Linear -> 1 without bias "
      "(default 2)",
      Check::at_least(1));
    v("hidden", hidden,
      "hidden width of every block (default 1024); 0 = the reference's rule without dsc_hidden: each block "
      "divides the width by 1.5 (floor)",
      Check::at_least(0));
    v("negative_slope", negative_slope, "LeakyReLU slope (default 0.2)", Check::range(0, 1));
    v("negate", negate,
      "output -D, the reference's patch anomaly score (simplenet.py _predict: -discriminator(features)), so that "
      "larger means more anomalous and SuperSimpleNet's truncated L1 applies to it; weights load from the "
      "reference's Discriminator unchanged (default true; false = D itself)");
  }
};

/// SimpleNet's discriminator, an MLP over patch features. On a map (N,C,h,w) every position is one
/// patch: the map is flattened to (N*h*w, C) rows, so BatchNorm1d normalises over all patches of
/// the batch exactly as the reference (which flattens patches before the discriminator), and the
/// output is reshaped to (N,1,h,w). Patch rows (M,C) give (M,1). Linear weights xavier-normal.
/// The output is -D by default (see `negate`).
class SimpleNetDiscriminator final : public Network {
 public:
  using Options = SimpleNetDiscriminatorOptions;
  explicit SimpleNetDiscriminator(const Options& options);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& condition = {}) override;
  std::shared_ptr<torch::nn::Module> module() override;
  const Options& options() const { return options_; }

 private:
  Options options_;
  std::shared_ptr<detail::SimpleNetDiscriminatorImpl> net_;
};

// ---------------------------------------------------------------------------------------------
// Diffusion U-Net (TransFusion)

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
