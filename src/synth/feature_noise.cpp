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

void check_draw(const char* what, const torch::Tensor& t, at::IntArrayRef shape) {
  if (!t.defined() || t.sizes() != shape)
    throw Error(std::string("feature noise: the ") + what + " draw must have shape " + c10::str(shape) + ", got " +
                (t.defined() ? c10::str(t.sizes()) : std::string("none")));
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

FeatureNoiseDraws SimpleNetNoise::draw(const torch::Tensor& features, std::mt19937_64& rng) const {
  check_features(features);
  return {gaussian(features.sizes(), options_.noise_mean, options_.noise_std, rng, features.options()), {}};
}

FeatureNoiseResult SimpleNetNoise::apply(const torch::Tensor& features, const torch::Tensor& gt_masks,
                                         const torch::Tensor& labels, const FeatureNoiseDraws& draws) const {
  check_features(features);
  const int64_t n = features.size(0), h = features.size(2), w = features.size(3);
  const auto dev = features.device();
  check_draw("noise", draws.noise, features.sizes());
  torch::Tensor gt = gt_at(gt_masks, n, h, w, dev);
  torch::Tensor lab = labels_at(labels, n, dev);
  // simplenet.py _train_discriminator: scores of cat(true_feats, true_feats + noise).
  FeatureNoiseResult r;
  r.features = torch::cat({features, features + draws.noise.to(features.device(), features.scalar_type())});
  r.mask = torch::cat({gt, torch::ones_like(gt)});
  r.labels = torch::cat({lab, torch::ones_like(lab)});
  return r;
}

SuperSimpleNetNoise::SuperSimpleNetNoise(const Options& options) : options_(options), perlin_(options.perlin) {}

FeatureNoiseDraws SuperSimpleNetNoise::draw(const torch::Tensor& features, std::mt19937_64& rng) const {
  check_features(features);
  const int64_t b = options_.duplicate ? 2 * features.size(0) : features.size(0);
  const int64_t h = features.size(2), w = features.size(3);
  std::vector<torch::Tensor> masks;
  masks.reserve(static_cast<std::size_t>(b));
  for (int64_t i = 0; i < b; ++i) masks.push_back(mask_to_tensor(perlin_.mask(static_cast<int>(h), static_cast<int>(w), rng)));
  FeatureNoiseDraws d;
  d.perlin = torch::stack(masks).to(features.device());
  d.noise = gaussian({b, features.size(1), h, w}, options_.noise_mean, options_.noise_std, rng, features.options());
  return d;
}

FeatureNoiseResult SuperSimpleNetNoise::apply(const torch::Tensor& features, const torch::Tensor& gt_masks,
                                              const torch::Tensor& labels, const FeatureNoiseDraws& draws) const {
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
  check_draw("noise", draws.noise, input.sizes());
  check_draw("perlin", draws.perlin, {b, 1, h, w});
  // model/supersimplenet.py AnomalyGenerator.forward: noise mask = [bad] x [overlap] x Perlin.
  torch::Tensor noise_mask = draws.perlin.to(dev, torch::kFloat32).clone();
  if (options_.duplicate && options_.clean_first_half) noise_mask.slice(0, 0, n).zero_();
  if (!options_.bad) noise_mask = noise_mask * (1 - lab.to(torch::kFloat32)).reshape({b, 1, 1, 1});
  if (!options_.overlap) noise_mask = noise_mask * (1 - gt);
  FeatureNoiseResult r;
  r.features = input + draws.noise.to(dev, input.scalar_type()) * noise_mask.to(input.dtype());
  r.mask = ((gt + noise_mask) > 0).to(torch::kFloat32);
  r.labels = ((lab + r.mask.reshape({b, -1}).amax(1).to(torch::kInt64)) > 0).to(torch::kInt64);
  return r;
}

}  // namespace adfw
