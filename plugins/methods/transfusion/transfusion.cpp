#include "methods/transfusion/transfusion.hpp"

#include <cmath>

#include "adfw/core/error.hpp"
#include "adfw/core/rng.hpp"
#include "adfw/synth/perlin.hpp"
#include "adfw/synth/transparency.hpp"

namespace adfw {

namespace {

namespace F = torch::nn::functional;

void check_steps(int64_t steps) {
  if (steps < 2) throw Error("transparency process: steps must be >= 2, got " + std::to_string(steps));
}

// beta_t = t / (steps - 1) for per-sample steps t (N,), as (N,1,1,1) on the device and dtype of `like`.
torch::Tensor betas(const torch::Tensor& t, int64_t steps, const torch::Tensor& like) {
  return t.to(like.device()).to(like.scalar_type()).reshape({-1, 1, 1, 1}) / static_cast<double>(steps - 1);
}

// TransFusion.py get_next_step: x_t - (d / beta_t) M n + d M x0, d = beta_t - beta_{t-1}, in the
// reference's order of operations. `beta`, `d`: doubles or (N,1,1,1) tensors.
template <class B>
torch::Tensor next_step(const torch::Tensor& xt, const torch::Tensor& noise, const torch::Tensor& mask,
                        const torch::Tensor& x0, const B& beta, const B& d) {
  return xt - (d / beta) * mask * noise + d * mask * x0;
}

// The reference's binarisation of a mask probability (TransFusion.py get_next_step,
// EvaluationUtils.py get_transparentfussion_sample): [p > 0.5], no gradient.
torch::Tensor threshold(const torch::Tensor& p) { return (p.detach() > 0.5).to(p.scalar_type()); }

// torchvision.transforms.functional.rotate on a (C,H,W) tensor as TransFusion.py loss calls it:
// counter-clockwise by `degrees` about the image centre, nearest neighbour, zero outside, same
// size (torchvision 0.14 _get_inverse_affine_matrix / _gen_affine_grid, grid_sample with
// align_corners = false).
torch::Tensor rotate_image(const torch::Tensor& img, double degrees) {
  const int64_t h = img.size(1), w = img.size(2);
  const double a = degrees * M_PI / 180.0, c = std::cos(a), s = std::sin(a);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(img.device());
  // Output pixel centres relative to the image centre; the inverse rotation maps them into the
  // input, normalised by half the input size.
  const torch::Tensor xs = torch::linspace(-0.5 * w + 0.5, 0.5 * w - 0.5, w, opts).view({1, w}).expand({h, w});
  const torch::Tensor ys = torch::linspace(-0.5 * h + 0.5, 0.5 * h - 0.5, h, opts).view({h, 1}).expand({h, w});
  const torch::Tensor gx = (c * xs - s * ys) / (0.5 * w);
  const torch::Tensor gy = (s * xs + c * ys) / (0.5 * h);
  const torch::Tensor grid = torch::stack({gx, gy}, -1).unsqueeze(0).to(img.scalar_type());
  return F::grid_sample(img.unsqueeze(0), grid,
                        F::GridSampleFuncOptions().mode(torch::kNearest).padding_mode(torch::kZeros).align_corners(false))
      .squeeze(0);
}

}  // namespace

double transparency_beta(int64_t t, int64_t steps) {
  check_steps(steps);
  return static_cast<double>(t) / static_cast<double>(steps - 1);
}

torch::Tensor transparency_forward(const torch::Tensor& x0, const torch::Tensor& source, const torch::Tensor& mask,
                                   const torch::Tensor& t, int64_t steps) {
  check_steps(steps);
  // TransFusion.py q_sample with eps = M * A (SyntAnomGenerator.py returns the masked appearance).
  const torch::Tensor beta = betas(t, steps, x0);
  const torch::Tensor eps = mask * source;
  return (1 - mask) * x0 + (1 - beta) * mask * x0 + beta * mask * eps;
}

torch::Tensor transparency_reverse_step(const torch::Tensor& xt, const torch::Tensor& noise_est,
                                        const torch::Tensor& mask_est, const torch::Tensor& x0_est, int64_t t,
                                        int64_t steps) {
  if (t < 1) throw Error("transparency reverse step: t must be >= 1, got " + std::to_string(t));
  const double b = transparency_beta(t, steps);
  return next_step(xt, noise_est, mask_est, x0_est, b, b - transparency_beta(t - 1, steps));
}

torch::Tensor transparency_reverse_step(const torch::Tensor& xt, const torch::Tensor& noise_est,
                                        const torch::Tensor& mask_est, const torch::Tensor& x0_est,
                                        const torch::Tensor& t, int64_t steps) {
  check_steps(steps);
  const torch::Tensor b = betas(t, steps, xt);
  return next_step(xt, noise_est, mask_est, x0_est, b, b - betas(t - 1, steps, xt));
}

TransparencyRestoration transparency_restore(const torch::Tensor& image, int64_t from, int64_t steps, bool soft,
                                             const TransparencyEstimator& estimate,
                                             const TransparencyObserver& on_step) {
  TransparencyRestoration r;
  r.image = image;
  torch::Tensor mask_in = torch::zeros({image.size(0), 1, image.size(2), image.size(3)}, image.options());
  r.mask_sum = torch::zeros_like(mask_in);
  for (int64_t t = from; t >= 1; --t) {
    TransparencyEstimates e = estimate(r.image, mask_in, t);
    // TransFusion.p_sample: the update uses [sigmoid > 0.5]; get_transparentfussion_sample sums the
    // soft masks and feeds the thresholded one back.
    const torch::Tensor m = soft ? e.mask : threshold(e.mask);
    torch::Tensor next = transparency_reverse_step(r.image, e.noise, m, e.normal, t, steps);
    if (on_step) on_step(t, mask_in, e, next);
    r.mask_sum = r.mask_sum + e.mask;
    r.image = next;
    mask_in = m;
    r.last = e;
    ++r.steps_run;
  }
  return r;
}

TransFusion::Options::Options() {
  trainer.epochs = 1500;
  trainer.batch_size = 8;
  trainer.optimizer.kind = "adamw";
  trainer.optimizer.lr = 1e-5;
  trainer.scheduler.kind = "step";
  trainer.scheduler.step_every = 800;
  trainer.scheduler.gamma = 0.1;
  // Experiment.py evaluate: scipy convolve2d with ones(7, 7) / 49, mode "same", zero fill.
  postprocess = PostprocessChain({"type = 'mean_filter'\nkernel = 7\nborder = 'zeros'\n"});
}

TransFusion::TransFusion(const Options& o) : TrainedMethod("transfusion"), opt_(o) {
  if (opt_.losses.empty()) {
    // TransFusion.py loss (RGB mode): mse(noise, beta*eps) + 5 * torchvision sigmoid_focal_loss
    // (defaults alpha 0.25, gamma 2, mean) + smooth_l1(sigmoid, M) + (1 - SSIM) + l1 on the
    // normal image (MathUtils.SSIM: L from the prediction) + mse of the next step.
    opt_.losses = {loss_term("type = 'l2'\nprediction = 'noise'\ntarget = 'noise'"),
                   loss_term("type = 'focal'\ngamma = 2.0\nalpha = 0.25\ninput = 'logits'\nweight = 5.0\n"
                             "prediction = 'mask_logits'\ntarget = 'mask'"),
                   loss_term("type = 'smooth_l1'\nprediction = 'mask'\ntarget = 'mask'"),
                   loss_term("type = 'ssim'\ndata_range = 0.0\nprediction = 'normal'\ntarget = 'image'"),
                   loss_term("type = 'l1'\nprediction = 'normal'\ntarget = 'image'"),
                   loss_term("type = 'l2'\nprediction = 'next'\ntarget = 'next'")};
  }
  if (opt_.synthesizer.type() == "transparency") {
    const int s = opt_.synthesizer.options<TransparencyOptions>().steps;
    if (s != opt_.steps)
      throw ConfigError("method.synthesizer.steps (" + std::to_string(s) + ") must equal method.steps (" +
                        std::to_string(opt_.steps) + "): the synthesizer draws the step the network is trained on");
  }
  scoring_ = MapScoring(opt_.postprocess, opt_.image_score, "transfusion", false);
}

void TransFusion::build_parts(const RunContext& ctx) { net_ = make_part(ctx, "network", opt_.network); }

TransparencyEstimates TransFusion::estimate(const torch::Tensor& xt, const torch::Tensor& mask_in,
                                            const torch::Tensor& t) {
  const int64_t h = xt.size(2), w = xt.size(3);
  torch::Tensor in = pad_to_multiple(torch::cat({xt, mask_in}, 1), opt_.pad_multiple);
  torch::Tensor out = crop_to(net_->forward(in, t.to(xt.device()).to(torch::kFloat32)), h, w);
  if (out.size(1) != 7)
    throw ConfigError("method.network: transfusion needs 7 output channels (noise 3, normal image 3, mask 1), "
                      "the network gives " + std::to_string(out.size(1)) + "; set method.network.out_channels = 7");
  TransparencyEstimates e;
  // Channel layout of the diffusion U-Net: [noise (3), normal image (3), mask logit (1)].
  e.noise = out.slice(1, 0, 3);
  e.normal = out.slice(1, 3, 6);
  e.logits = out.slice(1, 6, 7);
  e.mask = torch::sigmoid(e.logits);
  return e;
}

TransFusionTrainStep TransFusion::train_step(const TransFusionTrainInput& in, std::mt19937_64& rng) {
  const int64_t n = in.x0.size(0), steps = opt_.steps;
  TransFusionTrainStep s;
  // TransFusion.py set_noise: anomalies for the first batch // 2 samples (1 of a batch of 1), and
  // a zero hint where t = steps - 1 ("the diffusion process always starts with a zero mask").
  const int64_t anomalous = n > 1 ? n / 2 : 1;
  const torch::Tensor keep =
      (torch::arange(n, in.x0.options().dtype(torch::kLong)) < anomalous).to(in.x0.scalar_type()).view({n, 1, 1, 1});
  const torch::Tensor t = in.t.to(in.x0.device()).to(torch::kLong).reshape({-1});
  const torch::Tensor not_last = (t != steps - 1).to(in.x0.scalar_type()).view({n, 1, 1, 1});
  s.mask = in.mask * keep;
  s.hint = in.hint * keep * not_last;
  s.eps = s.mask * in.source;
  s.x0 = in.x0;
  s.x_t = transparency_forward(s.x0, in.source, s.mask, t, steps);
  // TransFusion.py loss: each sample is rotated with probability 0.3 by U(-20, 20) degrees after
  // the forward step (image, clean image, anomaly, mask and hint alike).
  if (opt_.rotation_probability > 0) {
    std::vector<torch::Tensor> rows;
    bool any = false;
    for (int64_t b = 0; b < n; ++b) {
      torch::Tensor all = torch::cat({s.x_t[b], s.x0[b], s.eps[b], s.mask[b], s.hint[b]}, 0);
      if (uniform01(rng) < opt_.rotation_probability) {
        all = rotate_image(all, uniform(rng, -opt_.max_rotation, opt_.max_rotation));
        any = true;
      }
      rows.push_back(all);
    }
    if (any) {
      const auto parts = torch::stack(rows).split_with_sizes({3, 3, 3, 1, 1}, 1);
      s.x_t = parts[0], s.x0 = parts[1], s.eps = parts[2], s.mask = parts[3], s.hint = parts[4];
    }
  }
  s.net_input = torch::cat({s.x_t, s.hint}, 1);
  const TransparencyEstimates e = estimate(s.x_t, s.hint, t);
  s.noise = e.noise;
  s.normal = e.normal;
  s.mask_logits = e.logits;
  // The noise head learns beta_t * M * A (mse over every pixel, normal samples included).
  const torch::Tensor beta = betas(t, steps, s.x0), d = beta - betas(t - 1, steps, s.x0);
  s.noise_target = beta * s.eps;
  // next_predicted uses the thresholded mask (no gradient through it); next_actual the true mask.
  s.next_predicted = next_step(s.x_t, e.noise, opt_.soft_masks ? e.mask : threshold(e.mask), e.normal, beta, d);
  s.next_actual = next_step(s.x_t, s.noise_target, s.mask, s.x0, beta, d);
  s.losses = evaluate_losses(opt_.losses,
                             {{"noise", e.noise},
                              {"mask_logits", e.logits},
                              {"mask", e.mask},
                              {"normal", e.normal},
                              {"next", s.next_predicted}},
                             {{"noise", s.noise_target}, {"mask", s.mask}, {"image", s.x0}, {"next", s.next_actual}});
  return s;
}

void TransFusion::configure_training(TrainSpec& spec, FitContext& ctx) {
  const int64_t steps = opt_.steps;
  // Made here, not in the constructor: a fitted model loaded for prediction needs no textures.
  std::shared_ptr<Synthesizer> synth = opt_.synthesizer.make();
  spec.hook = [synth, steps](Sample& s, std::mt19937_64& rng) {
    // The synthesizer gives mask, appearance, hint and step; train_step makes x_t (and keeps the
    // anomalies of the first half of the batch only).
    SynthResult r = synth->apply(s.image, rng);
    int64_t t = r.step;
    // A sample without an anomaly is shown at a random step (TransFusion.py loss draws t for all).
    if (t < 1) t = std::uniform_int_distribution<int64_t>(1, steps - 1)(rng);
    // perlin_texture rotates the normal image before placing the anomaly (DRAEM's augmentation):
    // x_0 is that rotated image, so the synthesizer's augmentation is kept, as DRAEM keeps it.
    if (r.clean.defined()) s.image = r.clean;
    s.extras["source"] = r.source.defined() ? r.source : s.image;
    s.extras["hint"] = r.hint_mask.defined() ? r.hint_mask : torch::zeros_like(r.mask);
    s.extras["step"] = torch::full({1}, t, torch::kInt64);
    s.mask = r.mask;
    s.has_mask = true;
  };
  const torch::Device device = ctx.run.device;
  spec.step = [this, device](const Batch& b, std::mt19937_64& rng, int64_t) {
    // [0, 1] pipeline images -> the reference's [-1, 1].
    TransFusionTrainInput in;
    in.x0 = b.images.to(device) * 2 - 1;
    in.source = b.extras.at("source").to(device) * 2 - 1;
    in.mask = b.masks.to(device);
    in.hint = b.extras.at("hint").to(device);
    in.t = b.extras.at("step").reshape({-1}).to(device);
    return train_step(in, rng).losses;
  };
}

TransFusionMaps TransFusion::infer(const torch::Tensor& x, const TransparencyObserver& on_step) {
  require_built("predict()");
  torch::NoGradGuard ng;
  eval_parts();
  const int64_t steps = opt_.steps;
  // EvaluationUtils.py calculate_transfussion_results calls get_transparentfussion_sample(net,
  // steps - 1, x), whose loop is reversed(range(1, steps - 1)): t = steps - 2 .. 1.
  const int64_t from = opt_.start_at_last_step ? steps - 1 : steps - 2;
  TransparencyRestoration r = transparency_restore(
      x, from, steps, opt_.soft_masks,
      [&](const torch::Tensor& xt, const torch::Tensor& mask_in, int64_t t) {
        return estimate(xt, mask_in, torch::full({xt.size(0)}, t, torch::kInt64));
      },
      on_step);
  TransFusionMaps m;
  m.restored = r.image;
  // The reference divides the sum by steps - 1 although its loop runs steps - 2 steps.
  m.mask = opt_.mask_reduction == "last" ? r.last.mask : r.mask_sum / static_cast<double>(steps - 1);
  m.reconstruction = (r.image / 2 + 0.5).clamp(0, 1);
  m.recon_error = ((x / 2 + 0.5).clamp(0, 1) - m.reconstruction).pow(2).mean(1, true);
  // Experiment.py evaluate filters both maps before mixing them (the default chain: its mean filter).
  const double w = opt_.discriminative_weight;
  const MapContext mc{{x.size(2), x.size(3)}};
  m.raw_map = w * m.mask + (1 - w) * m.recon_error;
  m.map = w * scoring_.postprocess(m.mask, mc) + (1 - w) * scoring_.postprocess(m.recon_error, mc);
  return m;
}

Prediction TransFusion::predict(const Batch& batch, const RunContext& ctx) {
  const TransFusionMaps m = infer(batch.images.to(ctx.device) * 2 - 1);
  const torch::Tensor map = m.map.to(torch::kCPU).to(torch::kFloat32);
  return {map, scoring_.scores(m.raw_map.to(torch::kCPU).to(torch::kFloat32), map)};
}

}  // namespace adfw
