// example_mean_image: the anomaly map is each pixel's distance from the mean training image, in
// units of the training images' per-pixel standard deviation. A weak but honest baseline for
// aligned objects, and a template for a method of your own laid out as adfw's built-in ones are
// (plugins/methods/<name>/: header, implementation, register.cpp, README.md).
#pragma once

#include <string>

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
  void fit(adfw::FitContext& ctx) override;
  // The fitted state (written to model.safetensors; `adfw predict` and adfw::Predictor load it).
  adfw::StateDict state() const override { return {{"mean", mean_}, {"std", std_}}; }
  void load_state(const adfw::StateDict& s, const adfw::RunContext& ctx, const std::string& source) override;
  adfw::Prediction predict(const adfw::Batch& b, const adfw::RunContext& ctx) override;

 private:
  Options opt_;
  torch::Tensor mean_, std_;
};

}  // namespace example
