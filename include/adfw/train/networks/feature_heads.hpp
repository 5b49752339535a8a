// Feature-level networks of SuperSimpleNet (Rolih et al., ICPR 2024, blaz-r/SuperSimpleNet
// model/supersimplenet.py) and SimpleNet (Liu et al., CVPR 2023, DonaldRR/SimpleNet simplenet.py),
// family "network". Parameter names follow the references.
//   feature_adaptor          SuperSimpleNet FeatureAdaptor / SimpleNet pre-projection     (N,C,h,w) -> (N,C,h,w)
//   ssn_segmentation_head    SuperSimpleNet Discriminator.seg   (N,C,h,w) -> (N,1,h,w) logits
//   ssn_classification_head  SuperSimpleNet Discriminator.dec_head + fc_score  (N,C,h,w) + map (N,1,h,w) -> (N) logits
//   simplenet_discriminator  SimpleNet Discriminator          (N,C,h,w) -> (N,1,h,w), (M,C) -> (M,1)
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
class FeatureAdaptorImpl;
class SsnSegmentationHeadImpl;
class SsnClassificationHeadImpl;
class SimpleNetDiscriminatorImpl;
}  // namespace detail

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

}  // namespace adfw
