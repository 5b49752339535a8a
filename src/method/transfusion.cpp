#include "adfw/method/transfusion.hpp"

#include "adfw/core/error.hpp"
#include "adfw/core/rng.hpp"
#include "adfw/synth/image_synth.hpp"

namespace adfw {

namespace {

// The paper's reverse update (transfusion.hpp): with d = beta_t - beta_{t-1},
//   x_{t-1} = x_t - d * M * source + d * M * x0.
// `d` is one step for the batch (double) or one per sample ((N,1,1,1) tensor).
template <class Step>
torch::Tensor reverse_update(const torch::Tensor& xt, const torch::Tensor& source_est, const torch::Tensor& mask_est,
                             const torch::Tensor& x0_est, const Step& d) {
  return xt - d * (mask_est * source_est) + d * (mask_est * x0_est);
}

// beta_t = t / (steps - 1) for per-sample steps t (N,), as (N,1,1,1) on the device and dtype of `like`.
torch::Tensor betas(const torch::Tensor& t, int64_t steps, const torch::Tensor& like) {
  return t.to(like.device()).to(like.scalar_type()).reshape({-1, 1, 1, 1}) / static_cast<double>(steps - 1);
}

}  // namespace

double transparency_beta(int64_t t, int64_t steps) {
  if (steps < 2) throw Error("transparency process: steps must be >= 2, got " + std::to_string(steps));
  return static_cast<double>(t) / static_cast<double>(steps - 1);
}

torch::Tensor transparency_forward(const torch::Tensor& x0, const torch::Tensor& source, const torch::Tensor& mask,
                                   const torch::Tensor& t, int64_t steps) {
  return x0 + betas(t, steps, x0) * mask * (source - x0);
}

torch::Tensor transparency_reverse_step(const torch::Tensor& xt, const torch::Tensor& source_est,
                                        const torch::Tensor& mask_est, const torch::Tensor& x0_est, int64_t t,
                                        int64_t steps) {
  return reverse_update(xt, source_est, mask_est, x0_est, transparency_beta(t, steps) - transparency_beta(t - 1, steps));
}

torch::Tensor transparency_reverse_step(const torch::Tensor& xt, const torch::Tensor& source_est,
                                        const torch::Tensor& mask_est, const torch::Tensor& x0_est,
                                        const torch::Tensor& t, int64_t steps) {
  if (steps < 2) throw Error("transparency process: steps must be >= 2, got " + std::to_string(steps));
  return reverse_update(xt, source_est, mask_est, x0_est, betas(t, steps, xt) - betas(t - 1, steps, xt));
}

std::pair<torch::Tensor, TransparencyEstimates> transparency_restore(
    const torch::Tensor& image, int64_t from, int64_t steps,
    const std::function<TransparencyEstimates(const torch::Tensor&, const torch::Tensor&, int64_t)>& estimate) {
  torch::Tensor x = image;
  torch::Tensor previous = torch::zeros({image.size(0), 1, image.size(2), image.size(3)}, image.options());
  TransparencyEstimates last;
  for (int64_t t = from; t >= 1; --t) {
    last = estimate(x, previous, t);
    x = transparency_reverse_step(x, last.source, last.mask, last.normal, t, steps);
    previous = last.mask;
  }
  return {x, last};
}

TransFusion::Options::Options() {
  trainer.epochs = 1500;
  trainer.batch_size = 8;
  trainer.optimizer.kind = "adamw";
  trainer.optimizer.lr = 1e-5;
  trainer.scheduler.kind = "step";
  trainer.scheduler.step_every = 800;
  trainer.scheduler.gamma = 0.1;
}

TransFusion::TransFusion(const Options& o) : opt_(o) {
  if (opt_.losses.empty()) {
    opt_.losses = {loss_term("type = 'l2'\nprediction = 'source'\ntarget = 'source'"),
                   loss_term("type = 'focal'\ngamma = 2.0\ninput = 'logits'\nweight = 5.0\n"
                             "prediction = 'mask_logits'\ntarget = 'mask'"),
                   loss_term("type = 'smooth_l1'\nprediction = 'mask'\ntarget = 'mask'"),
                   loss_term("type = 'ssim'\nprediction = 'normal'\ntarget = 'image'"),
                   loss_term("type = 'l1'\nprediction = 'normal'\ntarget = 'image'"),
                   loss_term("type = 'l2'\nprediction = 'next'\ntarget = 'next'")};
  }
  if (opt_.mean_filter % 2 == 0)
    throw ConfigError("method.mean_filter: use an odd side (TransFusion: 7), got " + std::to_string(opt_.mean_filter));
  if (opt_.synthesizer.type() == "transparency") {
    const int s = opt_.synthesizer.options<TransparencyOptions>().steps;
    if (s != opt_.steps)
      throw ConfigError("method.synthesizer.steps (" + std::to_string(s) + ") must equal method.steps (" +
                        std::to_string(opt_.steps) + "): the synthesizer draws the step the network is trained on");
  }
  synth_ = opt_.synthesizer.make();
  reducer_ = opt_.image_score.make();
  if (reducer_->uses_method_scores())
    throw ConfigError("method.image_score: transfusion scores images from its map; choose e.g. \"max\"");
}

void TransFusion::build(const RunContext& ctx) {
  torch::manual_seed(derive_seed(ctx.seeds.init(), "transfusion/network"));
  net_ = opt_.network.make();
  net_->module()->to(ctx.device);
}

TransparencyEstimates TransFusion::estimate(const torch::Tensor& xt, const torch::Tensor& previous_mask,
                                            const torch::Tensor& t, torch::Tensor* mask_logits) {
  const int64_t h = xt.size(2), w = xt.size(3);
  torch::Tensor in = pad_to_multiple(torch::cat({xt, previous_mask}, 1), opt_.pad_multiple);
  torch::Tensor out = crop_to(net_->forward(in, t.to(xt.device()).to(torch::kFloat32)), h, w);
  if (out.size(1) != 7)
    throw ConfigError("method.network: transfusion needs 7 output channels (appearance 3, normal image 3, mask 1), "
                      "the network gives " + std::to_string(out.size(1)) + "; set method.network.out_channels = 7");
  TransparencyEstimates e;
  // Channel layout of the diffusion U-Net: [appearance (3), normal image (3), mask logit (1)].
  e.source = out.slice(1, 0, 3);
  e.normal = out.slice(1, 3, 6);
  torch::Tensor logits = out.slice(1, 6, 7);
  e.mask = torch::sigmoid(logits);
  if (mask_logits) *mask_logits = logits;
  return e;
}

void TransFusion::fit(FitContext& ctx) {
  if (opt_.losses.empty()) throw ConfigError("method.losses: transfusion needs at least one loss term");
  build(ctx.run);
  const int64_t steps = opt_.steps;
  std::shared_ptr<Synthesizer> synth = synth_;
  TrainSpec spec;
  spec.modules = {{"network", net_->module()}};
  spec.groups = {{"network", net_->module()->parameters()}};
  spec.hook = [synth, steps](Sample& s, std::mt19937_64& rng) {
    SynthResult r = synth->apply(s.image, rng);
    int64_t t = r.step;
    // A normal sample looks the same at every step; it is shown at a random one.
    if (t < 1) t = std::uniform_int_distribution<int64_t>(1, steps - 1)(rng);
    s.extras["image_clean"] = s.image;
    s.extras["source"] = r.source.defined() ? r.source : s.image;
    s.extras["hint"] = r.hint_mask.defined() ? r.hint_mask : torch::zeros_like(r.mask);
    s.extras["step"] = torch::full({1}, t, torch::kInt64);
    s.image = r.image;
    s.mask = r.mask;
    s.has_mask = true;
  };
  const torch::Device device = ctx.run.device;
  spec.step = [this, device, steps](const Batch& b, std::mt19937_64&, int64_t) {
    torch::Tensor xt = b.images.to(device);
    torch::Tensor clean = b.extras.at("image_clean").to(device);
    torch::Tensor source = b.extras.at("source").to(device);
    torch::Tensor hint = b.extras.at("hint").to(device);
    torch::Tensor t = b.extras.at("step").reshape({-1}).to(device);
    torch::Tensor mask = b.masks.to(device);
    torch::Tensor logits;
    TransparencyEstimates e = estimate(xt, hint, t, &logits);
    torch::Tensor next = transparency_reverse_step(xt, e.source, e.mask, e.normal, t, steps);
    torch::Tensor next_true = transparency_forward(clean, source, mask, t - 1, steps);
    return evaluate_losses(
        opt_.losses,
        {{"source", e.source}, {"mask_logits", logits}, {"mask", e.mask}, {"normal", e.normal}, {"next", next}},
        {{"source", source}, {"mask", mask}, {"image", clean}, {"next", next_true}}, {{"source", mask}});
  };
  spec.score = [this, &ctx](const Batch& b) { return predict(b, ctx.run).scores; };
  trained_ = train(ctx, opt_.trainer, spec);
}

Prediction TransFusion::predict(const Batch& batch, const RunContext& ctx) {
  if (!net_) throw Error("transfusion: predict() before fit()");
  torch::NoGradGuard ng;
  net_->module()->eval();
  torch::Tensor x = batch.images.to(ctx.device);
  auto [restored, last] = transparency_restore(
      x, opt_.steps - 1, opt_.steps, [&](const torch::Tensor& xt, const torch::Tensor& prev, int64_t t) {
        return estimate(xt, prev, torch::full({xt.size(0)}, t, torch::kInt64));
      });
  const int64_t k = opt_.mean_filter;
  auto mean = [k](const torch::Tensor& m) { return torch::avg_pool2d(m, k, 1, k / 2, false, false); };
  torch::Tensor err = (x - restored).abs().mean(1, true);
  torch::Tensor map = opt_.discriminative_weight * mean(last.mask) + (1 - opt_.discriminative_weight) * mean(err);
  map = map.to(torch::kCPU).to(torch::kFloat32);
  return {map, reducer_->reduce(map)};
}

nlohmann::json TransFusion::summary() const {
  nlohmann::json j = trained_.to_json();
  j["method"] = "transfusion";
  j["steps"] = opt_.steps;
  return j;
}

}  // namespace adfw
