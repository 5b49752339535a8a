// A complete method in one file: the anomaly map is each pixel's distance from the mean
// training image, in units of the training images' per-pixel standard deviation. A weak but
// honest baseline for aligned objects, and a template for writing your own component.
#include <adfw/core/registry.hpp>
#include <adfw/method/method.hpp>

namespace example {

class MeanImage : public adfw::Method {
 public:
  struct Options {
    double min_std = 0.02;  // floor on the per-pixel std, so flat training pixels do not explode
    int batch_size = 8;
    template <class V>
    void fields(V& v) {
      v("min_std", min_std, "lower bound of the per-pixel standard deviation (default 0.02)",
        adfw::Check::positive());
      v("batch_size", batch_size, "training batch size (default 8)", adfw::Check::at_least(1));
    }
  };
  explicit MeanImage(const Options& o) : opt_(o) {}

  std::string normalization() const override { return "none"; }

  void fit(adfw::FitContext& ctx) override {
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

  // The fitted state (written to model.safetensors; `adfw predict` and adfw::Predictor load it).
  adfw::StateDict state() const override { return {{"mean", mean_}, {"std", std_}}; }
  void load_state(const adfw::StateDict& s, const adfw::RunContext&, const std::string& source) override {
    for (const char* k : {"mean", "std"})
      if (!s.count(k)) throw adfw::Error(source + ": no tensor '" + k + "' (not a mean_image state)");
    mean_ = s.at("mean");
    std_ = s.at("std");
  }

  adfw::Prediction predict(const adfw::Batch& b, const adfw::RunContext&) override {
    auto z = ((b.images - mean_) / std_).abs().amax(1, /*keepdim=*/true);  // (N,1,H,W)
    return {z, z.flatten(1).amax(1)};
  }

 private:
  Options opt_;
  torch::Tensor mean_, std_;
};

}  // namespace example

ADFW_REGISTER(adfw::Method, example::MeanImage, "example_mean_image",
              "distance from the mean training image (out-of-tree plugin example)");
