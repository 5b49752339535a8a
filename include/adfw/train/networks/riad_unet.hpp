// RIAD's inpainting U-Net (family "network"; Zavrtanik et al., Pattern Recognition 2021,
// plutoyuxie/RIAD models/unet.py). Parameter names follow the reference.
//   riad_unet   (N,3,H,W) -> (N,3,H,W) (tanh)
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
class RiadUNetImpl;
}  // namespace detail

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

}  // namespace adfw
