// TransFusion (Fučka, Zavrtanik, Skočaj, "TransFusion – A Transparency-Based Diffusion Model for
// Anomaly Detection", ECCV 2024; MaticFuc/ECCV_TransFusion model/TransFusion.py,
// model/SyntAnomGenerator.py, utils/EvaluationUtils.py) assembled from registered parts: a
// diffusion U-Net (family "network"), the transparency synthesizer (family "synthesizer") and the
// loss terms. Images are in [-1, 1] inside the method (the reference's range); the pipeline hands
// it [0, 1] images (normalize = "none"). Recipe, options and sources: README.md in this folder.
//
// Transparency forward process (TransFusion.py q_sample). With an anomaly-free image x0, an
// anomaly appearance A, a binary mask M and eps = M*A, step t of T makes the anomaly more opaque:
//   x_t = (1 - M) x0 + (1 - beta_t) M x0 + beta_t M eps,   beta_t = t / (T - 1),  t = 0 .. T-1
// so x_0 = x0, nothing changes outside M, and inside M the image moves linearly to A.
// Reverse process (TransFusion.py get_next_step): the network's first head estimates
// n = beta_t * M * A (not A), so with d = beta_t - beta_{t-1}
//   x_{t-1} = x_t - (d / beta_t) * M_t * n_t + d * M_t * x0_t
// which with exact estimates is exactly x_{t-1} of the forward process. The reference uses the
// estimated mask thresholded at 0.5 (M_t = [sigmoid(logit) > 0.5]).
#pragma once

#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "adfw/core/registry.hpp"
#include "adfw/method/method.hpp"
#include "adfw/method/trained.hpp"
#include "adfw/synth/synthesizer.hpp"

namespace adfw {

/// beta_t = t / (steps - 1).
double transparency_beta(int64_t t, int64_t steps);
/// x_t for per-sample steps `t` (N,) int64 (or one step for all when t has one element):
/// (1 - M) x0 + (1 - beta_t) M x0 + beta_t M (M A). x0, source A: (N,C,H,W); mask M: (N,1,H,W),
/// binary in TransFusion.
torch::Tensor transparency_forward(const torch::Tensor& x0, const torch::Tensor& source, const torch::Tensor& mask,
                                   const torch::Tensor& t, int64_t steps);
/// One reverse step from step `t` >= 1 (same for the batch) to t-1:
/// x_t - (d / beta_t) * mask * noise + d * mask * x0_est, d = beta_t - beta_{t-1}, where `noise`
/// estimates beta_t * M * A. The mask is used as given (threshold it first for the reference).
torch::Tensor transparency_reverse_step(const torch::Tensor& xt, const torch::Tensor& noise_est,
                                        const torch::Tensor& mask_est, const torch::Tensor& x0_est, int64_t t,
                                        int64_t steps);
/// The same for per-sample steps `t` (N,) int64, each sample with its own step (training, where
/// each sample is shown at a drawn step).
torch::Tensor transparency_reverse_step(const torch::Tensor& xt, const torch::Tensor& noise_est,
                                        const torch::Tensor& mask_est, const torch::Tensor& x0_est,
                                        const torch::Tensor& t, int64_t steps);

/// What the network estimates at one step.
struct TransparencyEstimates {
  torch::Tensor noise;   ///< (N,C,H,W) beta_t * M * A, the anomaly's contribution at step t
  torch::Tensor mask;    ///< (N,1,H,W) probability M_t (sigmoid of the logit)
  torch::Tensor normal;  ///< (N,C,H,W) anomaly-free image x0_t
  torch::Tensor logits;  ///< (N,1,H,W) mask logit (when the estimator has one)
};

/// The reverse loop's result.
struct TransparencyRestoration {
  torch::Tensor image;     ///< x after the step t = 1
  torch::Tensor mask_sum;  ///< sum over the steps of the estimated (soft) masks
  TransparencyEstimates last;
  int64_t steps_run = 0;
};

/// The reverse loop from step `from` (inclusive) down to 1 (utils/EvaluationUtils.py
/// get_transparentfussion_sample). At each step estimate(x_t, mask_in, t) gives the estimates;
/// the first mask_in is zero. With `soft` false (the reference) the update and the next step's
/// mask_in use the estimated mask thresholded at 0.5; with `soft` true the mask itself.
/// `on_step(t, mask_in, estimates, x_{t-1})`, when given, sees every step.
using TransparencyEstimator =
    std::function<TransparencyEstimates(const torch::Tensor& xt, const torch::Tensor& mask_in, int64_t t)>;
using TransparencyObserver = std::function<void(int64_t t, const torch::Tensor& mask_in,
                                                const TransparencyEstimates& estimates, const torch::Tensor& next)>;
TransparencyRestoration transparency_restore(const torch::Tensor& image, int64_t from, int64_t steps, bool soft,
                                             const TransparencyEstimator& estimate,
                                             const TransparencyObserver& on_step = {});

/// One TransFusion training batch before the forward process (all on one device).
struct TransFusionTrainInput {
  torch::Tensor x0;      ///< (N,3,H,W) anomaly-free images in [-1, 1]
  torch::Tensor source;  ///< (N,3,H,W) anomaly appearance A in [-1, 1] (outside the mask: anything)
  torch::Tensor mask;    ///< (N,1,H,W) binary anomaly mask M
  torch::Tensor hint;    ///< (N,1,H,W) binary hint mask M_c, the network's mask input
  torch::Tensor t;       ///< (N,) int64 steps in [1, steps)
};

/// Everything one training step computes (TransFusion.py TransFusion.loss).
struct TransFusionTrainStep {
  torch::Tensor eps, mask, hint, x0;         ///< after the first-half rule and the rotation
  torch::Tensor x_t, net_input;              ///< forward process; [x_t, hint]
  torch::Tensor noise, normal, mask_logits;  ///< the three heads
  torch::Tensor noise_target;                ///< beta_t * eps
  torch::Tensor next_actual, next_predicted; ///< x_{t-1} from the truth and from the estimates
  LossValues losses;
};

/// The inference of TransFusion for (N,3,H,W) images in [-1, 1].
struct TransFusionMaps {
  torch::Tensor restored;        ///< (N,3,H,W) x after the last reverse step, [-1, 1] scale
  torch::Tensor mask;            ///< (N,1,H,W) the discriminative map (mean of the soft masks)
  torch::Tensor reconstruction;  ///< (N,3,H,W) clip(restored / 2 + 0.5, 0, 1)
  torch::Tensor recon_error;     ///< (N,1,H,W) channel mean of the squared error on [0, 1]
  torch::Tensor raw_map;         ///< (N,1,H,W) w * mask + (1 - w) * recon_error
  /// (N,1,H,W) w * P(mask) + (1 - w) * P(recon_error), P the postprocess chain (TransFusion: the 7 x 7
  /// mean filter with zero borders)
  torch::Tensor map;
};

class TransFusion : public TrainedMethod {
 public:
  struct Options {
    Slot<Network> network{"diffusion_unet"};
    Slot<Synthesizer> synthesizer{"transparency"};
    int64_t steps = 20;
    std::vector<LossTerm> losses;
    TrainerOptions trainer;
    double rotation_probability = 0.3;
    double max_rotation = 20.0;
    double discriminative_weight = 0.95;
    PostprocessChain postprocess;
    std::string mask_reduction = "mean";
    bool soft_masks = false;
    bool start_at_last_step = false;
    Slot<ImageScoreReducer> image_score{"max"};
    int64_t pad_multiple = 8;
    Options();
    template <class V>
    void fields(V& v) {
      v("network", network,
        "diffusion U-Net; input [x_t (3), previous mask (1)] = 4 channels and the step, output [noise "
        "beta_t*M*A (3), normal image (3), mask logit (1)] = 7 channels (TransFusion: base 64, multipliers "
        "[1,2,2,2], attention at the two deepest levels)");
      v("synthesizer", synthesizer,
        "transparency synthesizer: mask, appearance, step and hint mask (TransFusion: DTD or self-structure "
        "sources); only the first half of each training batch keeps its anomaly (TransFusion.py set_noise); "
        "its steps must equal method.steps");
      v("steps", steps, "diffusion steps T (TransFusion: 20)", Check::at_least(2));
      v("losses", losses,
        "loss terms; outputs: noise (N,3,H,W), mask_logits and mask (sigmoid) (N,1,H,W), normal (N,3,H,W), "
        "next (x_{t-1} from the estimates); targets: noise (beta_t*M*A), mask, image (clean, [-1,1]), next "
        "(x_{t-1} from the truth). TransFusion: l2 noise, 5 x focal (alpha 0.25, gamma 2) + smooth_l1 on the "
        "mask, ssim (data_range 0: L from the prediction) + l1 on the normal image, l2 on the next step");
      v("trainer", trainer, "training (TransFusion: AdamW 1e-5, batch 8, 1500 epochs, x0.1 after 800 epochs)");
      v("rotation_probability", rotation_probability,
        "training: probability that a sample (x_t, x0, anomaly, masks) is rotated after the forward step "
        "(nearest, zero fill; TransFusion.py loss: 0.3)",
        Check::range(0, 1));
      v("max_rotation", max_rotation, "training: the rotation angle is drawn from U(-a, a) degrees (TransFusion: 20)",
        Check::range(0, 180));
      v("discriminative_weight", discriminative_weight,
        "final map = w * P(mask) + (1 - w) * P(squared error of the [0,1]-clipped input and restoration, channel "
        "mean), P the postprocess chain (TransFusion: 0.95)",
        Check::range(0, 1));
      v("postprocess", postprocess,
        "map post-processing parts, in order, applied to the mask map and to the error map before they are mixed, "
        "as Experiment.py filters each (TransFusion: mean_filter kernel 7, border \"zeros\": scipy convolve2d "
        "\"same\")");
      v("mask_reduction", mask_reduction,
        "mask map from the reverse loop: mean = sum of the soft masks over the steps / (steps - 1) "
        "(TransFusion EvaluationUtils.py); last = the last step's soft mask (default \"mean\")",
        Check::one_of({"mean", "last"}));
      v("soft_masks", soft_masks,
        "use the soft mask (sigmoid) in the reverse update, in the training next-step estimate (with its "
        "gradient) and as the next step's mask input; TransFusion thresholds it at 0.5 (default false)");
      v("start_at_last_step", start_at_last_step,
        "start the reverse loop at t = steps - 1; TransFusion starts at steps - 2 (default false)");
      v("image_score", image_score,
        "image score from the final map (TransFusion: max); map = \"raw\" reads the mix before the postprocess "
        "chain");
      v("pad_multiple", pad_multiple,
        "inputs are reflect-padded to a multiple of this for the U-Net (3 halvings: 8), outputs cropped back",
        Check::at_least(1));
      retired_key(v, "mean_filter",
                  "the mean filter is a part of method.postprocess; write\n  [[method.postprocess]]\n"
                          "  type = \"mean_filter\"\n  kernel = 7\n  border = \"zeros\"");
    }
  };
  explicit TransFusion(const Options& o);
  std::string normalization() const override { return "none"; }
  Prediction predict(const Batch& batch, const RunContext& ctx) override;

  /// Network estimates at steps t (N,) for (N,3,H,W) images in [-1, 1] and (N,1,H,W) mask inputs.
  TransparencyEstimates estimate(const torch::Tensor& xt, const torch::Tensor& mask_in, const torch::Tensor& t);
  /// One training step without the synthesizer: the first-half rule, the forward process, the
  /// random rotation (draws from `rng`), the network in its current mode and the loss terms.
  TransFusionTrainStep train_step(const TransFusionTrainInput& in, std::mt19937_64& rng);
  /// The reverse loop and the maps for (N,3,H,W) images in [-1, 1] (eval mode, no gradient);
  /// `on_step` sees every reverse step. predict() is this on 2 * image - 1.
  TransFusionMaps infer(const torch::Tensor& x, const TransparencyObserver& on_step = {});
  /// The options in use (with the default loss terms filled in).
  const Options& options() const { return opt_; }
  /// The U-Net's parameters and buffers (after build()).
  std::shared_ptr<torch::nn::Module> module() { return net_ ? net_->module() : nullptr; }

 protected:
  void build_parts(const RunContext& ctx) override;
  void configure_training(TrainSpec& spec, FitContext& ctx) override;
  const TrainerOptions& trainer_options() const override { return opt_.trainer; }
  const std::vector<LossTerm>* loss_terms() const override { return &opt_.losses; }
  void describe(nlohmann::json& summary) const override { summary["steps"] = opt_.steps; }

 private:
  Options opt_;
  std::unique_ptr<Network> net_;
  MapScoring scoring_;
};

}  // namespace adfw
