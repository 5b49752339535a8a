#include "mean_image.hpp"

namespace example {

void MeanImage::fit(adfw::FitContext& ctx) {
  adfw::LoaderOptions lo;
  lo.batch_size = opt_.batch_size;
  auto loader = ctx.loader(ctx.train, lo);
  loader->start_epoch(0);
  torch::Tensor sum, sum_sq;
  int64_t n = 0;
  while (auto b = loader->next()) {
    auto x = b->images.to(torch::kFloat64);
    sum = sum.defined() ? sum + x.sum(0) : x.sum(0);
    sum_sq = sum_sq.defined() ? sum_sq + (x * x).sum(0) : (x * x).sum(0);
    n += b->size();
  }
  if (n == 0) throw adfw::Error("mean_image: the training split is empty");
  mean_ = (sum / n).to(torch::kFloat32);
  std_ = ((sum_sq / n) - (sum / n).pow(2)).clamp_min(0).sqrt().clamp_min(opt_.min_std).to(torch::kFloat32);
}

void MeanImage::load_state(const adfw::StateDict& s, const adfw::RunContext&, const std::string& source) {
  for (const char* k : {"mean", "std"})
    if (!s.count(k)) throw adfw::Error(source + ": no tensor '" + k + "' (not a mean_image state)");
  mean_ = s.at("mean");
  std_ = s.at("std");
}

adfw::Prediction MeanImage::predict(const adfw::Batch& b, const adfw::RunContext&) {
  auto z = ((b.images - mean_) / std_).abs().amax(1, /*keepdim=*/true);  // (N,1,H,W)
  return {z, z.flatten(1).amax(1)};
}

}  // namespace example
