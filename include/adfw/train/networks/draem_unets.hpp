// DRAEM's two sub-networks (family "network"; Zavrtanik et al., ICCV 2021, VitjanZ/DRAEM
// model_unet.py). Parameter names follow the reference, so its state_dicts map key for key.
//   draem_reconstructive   ReconstructiveSubNetwork        (N,3,H,W) -> (N,3,H,W)
//   draem_discriminative   DiscriminativeSubNetwork        (N,6,H,W) -> (N,2,H,W) logits
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
class DraemReconstructiveImpl;
class DraemDiscriminativeImpl;
}  // namespace detail

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

}  // namespace adfw
