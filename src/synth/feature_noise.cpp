#include "adfw/synth/feature_noise.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include "adfw/core/error.hpp"

namespace adfw {

namespace {

void check_features(const torch::Tensor& f) {
  if (!f.defined() || f.dim() != 4) throw Error("feature noise: expected (N,C,h,w) features");
}

// Gaussian noise of `shape`, drawn on the CPU from a seed taken from `rng` (identical on every
// device), then moved next to the features.
torch::Tensor gaussian(at::IntArrayRef shape, double mean, double std, std::mt19937_64& rng,
                       const torch::TensorOptions& like) {
  at::Generator gen = at::detail::createCPUGenerator(rng());
  torch::Tensor n = at::normal(mean, std, shape, gen, torch::TensorOptions().dtype(torch::kFloat32));
  return n.to(like.device(), like.dtype().toScalarType());
}

torch::Tensor gt_at(const torch::Tensor& gt, int64_t n, int64_t h, int64_t w, const torch::Device& dev) {
  if (!gt.defined()) return torch::zeros({n, 1, h, w}, torch::TensorOptions().device(dev));
  if (gt.dim() != 4 || gt.size(0) != n || gt.size(1) != 1)
    throw Error("feature noise: ground-truth masks must be (N,1,H,W) with N = " + std::to_string(n));
  return downscale_mask(gt.to(dev), h, w);
}

torch::Tensor labels_at(const torch::Tensor& labels, int64_t n, const torch::Device& dev) {
  if (!labels.defined()) return torch::zeros({n}, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  if (labels.numel() != n) throw Error("feature noise: expected " + std::to_string(n) + " labels");
  return labels.reshape({n}).to(dev, torch::kInt64);
}

}  // namespace

torch::Tensor downscale_mask(const torch::Tensor& masks, int64_t h, int64_t w) {
  torch::Tensor m = masks.to(torch::kFloat32);
  if (m.size(2) != h || m.size(3) != w)
    m = torch::nn::functional::interpolate(
        m, torch::nn::functional::InterpolateFuncOptions()
               .size(std::vector<int64_t>{h, w})
               .mode(torch::kBilinear)
               .align_corners(false));
  return (m >= 0.5).to(torch::kFloat32);
}

FeatureNoiseResult SimpleNetNoise::apply(const torch::Tensor& features, const torch::Tensor& gt_masks,
                                         const torch::Tensor& labels, std::mt19937_64& rng) const {
  check_features(features);
  const int64_t n = features.size(0), h = features.size(2), w = features.size(3);
  const auto dev = features.device();
  torch::Tensor gt = gt_at(gt_masks, n, h, w, dev);
  torch::Tensor lab = labels_at(labels, n, dev);
  torch::Tensor noise = gaussian(features.sizes(), options_.noise_mean, options_.noise_std, rng, features.options());
  FeatureNoiseResult r;
  r.features = torch::cat({features, features + noise});
  r.mask = torch::cat({gt, torch::ones_like(gt)});
  r.labels = torch::cat({lab, torch::ones_like(lab)});
  return r;
}

SuperSimpleNetNoise::SuperSimpleNetNoise(const Options& options) : options_(options), perlin_(options.perlin) {}

FeatureNoiseResult SuperSimpleNetNoise::apply(const torch::Tensor& features, const torch::Tensor& gt_masks,
                                              const torch::Tensor& labels, std::mt19937_64& rng) const {
  check_features(features);
  const int64_t n = features.size(0), h = features.size(2), w = features.size(3);
  const auto dev = features.device();
  torch::Tensor input = features, gt = gt_at(gt_masks, n, h, w, dev), lab = labels_at(labels, n, dev);
  if (options_.duplicate) {
    input = torch::cat({input, input});
    gt = torch::cat({gt, gt});
    lab = torch::cat({lab, lab});
  }
  const int64_t b = input.size(0);
  std::vector<torch::Tensor> masks;
  masks.reserve(b);
  for (int64_t i = 0; i < b; ++i) masks.push_back(mask_to_tensor(perlin_.mask(static_cast<int>(h), static_cast<int>(w), rng)));
  torch::Tensor noise_mask = torch::stack(masks).to(dev);
  if (options_.duplicate && options_.clean_first_half) noise_mask.slice(0, 0, n).zero_();
  if (!options_.bad) noise_mask = noise_mask * (1 - lab.to(torch::kFloat32)).reshape({b, 1, 1, 1});
  if (!options_.overlap) noise_mask = noise_mask * (1 - gt);
  torch::Tensor noise = gaussian(input.sizes(), options_.noise_mean, options_.noise_std, rng, input.options());
  FeatureNoiseResult r;
  r.features = input + noise * noise_mask.to(input.dtype());
  r.mask = ((gt + noise_mask) > 0).to(torch::kFloat32);
  r.labels = ((lab + r.mask.reshape({b, -1}).amax(1).to(torch::kInt64)) > 0).to(torch::kInt64);
  return r;
}

}  // namespace adfw
