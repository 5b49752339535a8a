// Trainable networks and heads (family "network"): U-Nets, autoencoders, segmentation and
// classification heads, adaptors, discriminators, the diffusion U-Net. A method holds them in
// Slot<Network> fields so an experiment can swap one for another with the same interface.
#pragma once

#include <memory>
#include <string>

#include <torch/torch.h>

#include "adfw/core/registry.hpp"

namespace adfw {

class Network {
 public:
  static constexpr const char* family = "network";
  virtual ~Network() = default;
  /// The network's output for input `x`. `condition` is a second input for networks that take
  /// one (the diffusion U-Net: timesteps (N,) int64 or float; the classification head: the
  /// segmentation map (N,1,h,w)); networks without one ignore it. Each network documents its
  /// shapes.
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& condition = {}) = 0;
  /// The torch module holding the parameters (for optimisers, checkpoints, train/eval mode,
  /// device moves).
  virtual std::shared_ptr<torch::nn::Module> module() = 0;
};

}  // namespace adfw
