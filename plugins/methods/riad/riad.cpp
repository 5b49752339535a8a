#include "methods/riad/riad.hpp"

#include "adfw/core/error.hpp"
#include "adfw/core/rng.hpp"
#include "adfw/train/losses.hpp"

namespace adfw {

Riad::Options::Options() {
  trainer.epochs = 300;
  trainer.batch_size = 4;
  trainer.optimizer.kind = "adam";
  trainer.optimizer.lr = 1e-4;
  trainer.optimizer.weight_decay = 1e-5;
  // train.py adjust_learning_rate: lr x0.1 from (1-based) epoch 250 on; floor(0.83 * 300) = 249 is
  // the 250th epoch.
  trainer.scheduler.kind = "multistep";
  trainer.scheduler.milestones = {0.83};
  trainer.scheduler.gamma = 0.1;
  postprocess = upsample_gaussian_chain(7.0, 57);  // scipy gaussian_filter: radius int(4 sigma + 0.5) = 28
}

Riad::Riad(const Options& o) : TrainedMethod("riad"), opt_(o) {
  if (opt_.losses.empty()) {
    // train.py: MSELoss + MSGMS_Loss + SSIM_Loss (C1 = 0.01^2, C2 = 0.03^2: data range 1), weights 1.
    opt_.losses = {loss_term("type = 'l2'\nprediction = 'reconstruction'\ntarget = 'image'"),
                   loss_term("type = 'msgms'\nprediction = 'reconstruction'\ntarget = 'image'"),
                   loss_term("type = 'ssim'\ndata_range = 1.0\nprediction = 'reconstruction'\ntarget = 'image'")};
  }
  if (opt_.cutout_sizes.empty()) throw ConfigError("method.cutout_sizes: give at least one cell size (RIAD: [2, 4, 8, 16])");
  scoring_ = MapScoring(opt_.postprocess, opt_.image_score, "riad", false);
}

void Riad::build_parts(const RunContext& ctx) { net_ = make_part(ctx, "network", opt_.network); }

Network& Riad::part(const std::string& name) {
  if (name != "network" || !net_) throw Error("riad: no part '" + name + "' (parts: network; call build() first)");
  return *net_;
}

torch::Tensor Riad::to_network_range(const torch::Tensor& images) const {
  // datasets/mvtec.py: Normalize(mean 0.5, std 0.5) after ToTensor.
  return opt_.signed_range ? images * 2 - 1 : images;
}

torch::Tensor Riad::mosaic_masks(int64_t h, int64_t w, int64_t k, std::mt19937_64& rng) const {
  if (h % k != 0 || w % k != 0)
    throw Error("riad: image size " + std::to_string(h) + "x" + std::to_string(w) +
                " is not a multiple of the mosaic cell size " + std::to_string(k) +
                "; choose input sizes divisible by every method.cutout_sizes value");
  const int64_t gh = h / k, gw = w / k, cells = gh * gw, sets = opt_.num_masks;
  // utils/gen_mask.py: a permutation of the cells, padded with -1 to a multiple of n and reshaped
  // to n rows; row i is the set that mask i hides.
  std::vector<int64_t> order(static_cast<std::size_t>(cells));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  const int64_t per_set = (cells + sets - 1) / sets;
  std::vector<int64_t> hidden_by(static_cast<std::size_t>(cells));
  for (int64_t i = 0; i < cells; ++i) hidden_by[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])] = i / per_set;
  torch::Tensor grid = torch::tensor(hidden_by, torch::kInt64).view({1, gh, gw}).repeat_interleave(k, 1).repeat_interleave(k, 2);
  return (grid != torch::arange(sets, torch::kInt64).view({sets, 1, 1})).to(torch::kFloat32);
}

torch::Tensor Riad::inpaint(const torch::Tensor& x, const torch::Tensor& masks) {
  if (masks.dim() != 3 || masks.size(1) != x.size(2) || masks.size(2) != x.size(3))
    throw Error("riad: masks " + c10::str(masks.sizes()) + " must be (S,H,W) for images " + c10::str(x.sizes()));
  // train.py / test.py: outputs = model(data * M_i); output = sum_i outputs_i * (1 - M_i).
  const torch::Tensor m = masks.to(x.device(), x.scalar_type());
  torch::Tensor out;
  for (int64_t i = 0; i < m.size(0); ++i) {
    const torch::Tensor visible = m[i].view({1, 1, x.size(2), x.size(3)});
    const torch::Tensor part = net_->forward(x * visible) * (1 - visible);
    out = out.defined() ? out + part : part;
  }
  return out;
}

torch::Tensor Riad::inpaint(const torch::Tensor& x, int64_t k, std::mt19937_64& rng) {
  return inpaint(x, mosaic_masks(x.size(2), x.size(3), k, rng));
}

int64_t Riad::multiple() const {
  int64_t m = opt_.pad_multiple;
  for (int64_t k : opt_.cutout_sizes) m = std::lcm(m, k);
  return m;
}

torch::Tensor Riad::raw_map(const torch::Tensor& x, const std::vector<torch::Tensor>& masks) {
  if (masks.size() != opt_.cutout_sizes.size())
    throw Error("riad: " + std::to_string(masks.size()) + " mask sets for " +
                std::to_string(opt_.cutout_sizes.size()) + " cutout sizes");
  const int64_t h = x.size(2), w = x.size(3);
  const torch::Tensor xp = pad_to_multiple(x, multiple());
  torch::Tensor map;
  for (std::size_t i = 0; i < masks.size(); ++i) {
    const int64_t k = opt_.cutout_sizes[i];
    const torch::Tensor rec = crop_to(inpaint(xp, masks[i]), h, w);
    // test.py: score += MSGMS_Score(data, output) / N^2, N = img_size // k.
    const double n = static_cast<double>(xp.size(3) / k);
    const double weight = opt_.cell_weighting == "cells" ? 1.0 / (n * n) : 1.0 / static_cast<double>(masks.size());
    const torch::Tensor term = msgms_map(x, rec, static_cast<int>(opt_.msgms_scales)) * weight;
    map = map.defined() ? map + term : term;
  }
  return map;
}

Prediction Riad::finish(const torch::Tensor& raw, int64_t height, int64_t width) const {
  const torch::Tensor r = raw.to(torch::kCPU).to(torch::kFloat32);
  torch::Tensor map = scoring_.postprocess(r, {{height, width}});
  return {map, scoring_.scores(r, map)};
}

LossValues Riad::losses(const torch::Tensor& x, const torch::Tensor& reconstruction) const {
  return evaluate_losses(opt_.losses, {{"reconstruction", reconstruction}}, {{"image", x}});
}

void Riad::configure_training(TrainSpec& spec, FitContext& ctx) {
  const torch::Device device = ctx.run.device;
  spec.step = [this, device](const Batch& b, std::mt19937_64& rng, int64_t) {
    torch::Tensor x = to_network_range(b.images.to(device));
    const int64_t k = opt_.cutout_sizes[std::uniform_int_distribution<std::size_t>(0, opt_.cutout_sizes.size() - 1)(rng)];
    torch::Tensor rec = crop_to(inpaint(pad_to_multiple(x, multiple()), k, rng), x.size(2), x.size(3));
    return losses(x, rec);
  };
}

Prediction Riad::predict(const Batch& batch, const RunContext& ctx) {
  require_built("predict()");
  torch::NoGradGuard ng;
  eval_parts();
  torch::Tensor x = to_network_range(batch.images.to(ctx.device));
  const int64_t m = multiple();
  const int64_t hp = (x.size(2) + m - 1) / m * m, wp = (x.size(3) + m - 1) / m * m;
  // Every cell size, each with a fixed mask draw so scores do not depend on batch composition.
  std::vector<torch::Tensor> masks;
  for (int64_t k : opt_.cutout_sizes) {
    std::mt19937_64 rng(derive_seed(ctx.seeds.experiment, "riad/inference", static_cast<uint64_t>(k)));
    masks.push_back(mosaic_masks(hp, wp, k, rng));
  }
  return finish(raw_map(x, masks), x.size(2), x.size(3));
}

}  // namespace adfw
