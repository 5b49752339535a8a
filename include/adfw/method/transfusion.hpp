// TransFusion (Fučka, Zavrtanik, Skočaj, "TransFusion – A Transparency-Based Diffusion Model for
// Anomaly Detection", ECCV 2024; MaticFuc/ECCV_TransFusion model/TransFusion.py,
// model/SyntAnomGenerator.py) assembled from registered parts: a diffusion U-Net (family
// "network"), the transparency synthesizer (family "synthesizer") and the loss terms.
//
// Transparency forward process. With an anomaly-free image x0, an anomaly appearance e and a
// mask M, step t of T makes the anomaly more opaque:
//   x_t = x0 + beta_t * M * (e - x0),   beta_t = t / (T - 1),  t = 0 .. T-1
// so x_0 = x0, nothing changes outside M, and inside M the image moves linearly to e.
// Reverse process (the paper's update): from estimates e_t, M_t, x0_t of the network at step t,
//   x_{t-1} = x_t - (beta_t - beta_{t-1}) * M_t * e_t + (beta_t - beta_{t-1}) * M_t * x0_t
// which with exact estimates is exactly x_{t-1} of the forward process.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "adfw/core/registry.hpp"
#include "adfw/method/method.hpp"
#include "adfw/method/trained.hpp"

namespace adfw {

/// beta_t = t / (steps - 1).
double transparency_beta(int64_t t, int64_t steps);
/// x_t for per-sample steps `t` (N,) int64 (or one step for all when t has one element).
/// x0, source: (N,C,H,W); mask: (N,1,H,W) in [0,1].
torch::Tensor transparency_forward(const torch::Tensor& x0, const torch::Tensor& source, const torch::Tensor& mask,
                                   const torch::Tensor& t, int64_t steps);
/// One reverse step from step `t` (same for the batch) to t-1.
torch::Tensor transparency_reverse_step(const torch::Tensor& xt, const torch::Tensor& source_est,
                                        const torch::Tensor& mask_est, const torch::Tensor& x0_est, int64_t t,
                                        int64_t steps);
/// The same for per-sample steps `t` (N,) int64: x_{t-1} = x_t - (beta_t - beta_{t-1}) M (e - x0),
/// each sample with its own step (training, where each sample is shown at a drawn step).
torch::Tensor transparency_reverse_step(const torch::Tensor& xt, const torch::Tensor& source_est,
                                        const torch::Tensor& mask_est, const torch::Tensor& x0_est,
                                        const torch::Tensor& t, int64_t steps);

/// What the network estimates at one step.
struct TransparencyEstimates {
  torch::Tensor source;  ///< (N,C,H,W) anomaly appearance e_t
  torch::Tensor mask;    ///< (N,1,H,W) probability M_t
  torch::Tensor normal;  ///< (N,C,H,W) anomaly-free image x0_t
};
/// The reverse loop from step `from` (inclusive) down to 1: returns the restored image and the
/// last estimates. `estimate(x_t, previous_mask, t)` gives the estimates at step t; the first
/// previous mask is zero.
std::pair<torch::Tensor, TransparencyEstimates> transparency_restore(
    const torch::Tensor& image, int64_t from, int64_t steps,
    const std::function<TransparencyEstimates(const torch::Tensor&, const torch::Tensor&, int64_t)>& estimate);

class TransFusion : public Method {
 public:
  struct Options {
    Slot<Network> network{"diffusion_unet"};
    Slot<Synthesizer> synthesizer{"transparency"};
    int64_t steps = 20;
    std::vector<LossTerm> losses;
    TrainerOptions trainer;
    double discriminative_weight = 0.95;
    int64_t mean_filter = 7;
    Slot<ImageScoreReducer> image_score{"max"};
    int64_t pad_multiple = 8;
    Options();
    template <class V>
    void fields(V& v) {
      v("network", network,
        "diffusion U-Net; input [x_t (3), previous mask (1)] = 4 channels and the step, output [anomaly "
        "appearance (3), normal image (3), mask logit (1)] = 7 channels (TransFusion: base 64, multipliers "
        "[1,2,2,2], attention at the two deepest levels)");
      v("synthesizer", synthesizer,
        "transparency synthesizer: mask, appearance, step and previous-step hint mask (TransFusion: DTD or "
        "self-structure sources); its steps must equal method.steps");
      v("steps", steps, "diffusion steps T (TransFusion: 20)", Check::at_least(2));
      v("losses", losses,
        "loss terms; outputs: source (N,3,H,W), mask_logits and mask (sigmoid) (N,1,H,W), normal (N,3,H,W), "
        "next (the reverse step's x_{t-1}); targets: source, mask, image (clean), next. The source target is "
        "weighted by the mask (the appearance only matters inside it). TransFusion: l2 source, 5 x focal + "
        "smooth_l1 on the mask, ssim + l1 on the normal image, l2 on the next step");
      v("trainer", trainer, "training (TransFusion: AdamW 1e-5, batch 8, 1500 epochs, x0.1 after 800 epochs)");
      v("discriminative_weight", discriminative_weight,
        "final map = w * mean(mask) + (1 - w) * mean(|input - restored|) (TransFusion: 0.95)", Check::range(0, 1));
      v("mean_filter", mean_filter, "side of the mean filter on both maps (TransFusion: 7)", Check::at_least(1));
      v("image_score", image_score, "image score from the final map (TransFusion: max)");
      v("pad_multiple", pad_multiple,
        "inputs are reflect-padded to a multiple of this for the U-Net (3 halvings: 8), outputs cropped back",
        Check::at_least(1));
    }
  };
  explicit TransFusion(const Options& o);
  std::string normalization() const override { return "none"; }
  void fit(FitContext& ctx) override;
  Prediction predict(const Batch& batch, const RunContext& ctx) override;
  nlohmann::json summary() const override;

  /// Network estimates at step t for (N,3,H,W) images and (N,1,H,W) previous masks.
  TransparencyEstimates estimate(const torch::Tensor& xt, const torch::Tensor& previous_mask,
                                 const torch::Tensor& t, torch::Tensor* mask_logits = nullptr);
  /// Builds the network (fit() does this; tests and benchmarks call it).
  void build(const RunContext& ctx);
  /// The U-Net's parameters and buffers (after build()).
  std::shared_ptr<torch::nn::Module> module() { return net_ ? net_->module() : nullptr; }

 private:
  Options opt_;
  std::unique_ptr<Network> net_;
  std::shared_ptr<Synthesizer> synth_;
  std::unique_ptr<ImageScoreReducer> reducer_;
  TrainSummary trained_;
};

}  // namespace adfw
