#include "methods/draem/draem.hpp"

#include "adfw/core/error.hpp"

namespace adfw {

Draem::Options::Options() {
  trainer.epochs = 700;
  trainer.batch_size = 8;
  trainer.optimizer.kind = "adam";
  trainer.optimizer.lr = 1e-4;
  trainer.scheduler.kind = "multistep";
  trainer.scheduler.milestones = {0.8, 0.9};
  trainer.scheduler.gamma = 0.2;
}

Draem::Draem(const Options& o) : TrainedMethod("draem"), opt_(o) {
  if (opt_.losses.empty()) {
    // loss.py SSIM() leaves val_range None: the data range comes from the reconstruction.
    opt_.losses = {loss_term("type = 'l2'\nprediction = 'reconstruction'\ntarget = 'image'"),
                   loss_term("type = 'ssim'\ndata_range = 0.0\nprediction = 'reconstruction'\ntarget = 'image'"),
                   loss_term("type = 'focal'\ngamma = 2.0\ninput = 'softmax'\nsmooth = 1e-5\n"
                             "prediction = 'segmentation'\ntarget = 'mask'")};
  }
  scoring_ = MapScoring(opt_.postprocess, opt_.image_score, "draem", false);
}

void Draem::build_parts(const RunContext& ctx) {
  rec_ = make_part(ctx, "reconstructive", opt_.reconstructive);
  disc_ = make_part(ctx, "discriminative", opt_.discriminative);
}

Network& Draem::part(const std::string& name) {
  Network* n = name == "reconstructive" ? rec_.get() : name == "discriminative" ? disc_.get() : nullptr;
  if (!n) throw Error("draem: no part '" + name + "' (parts: reconstructive, discriminative; call build() first)");
  return *n;
}

Draem::Outputs Draem::forward(const torch::Tensor& images) {
  const int64_t h = images.size(2), w = images.size(3);
  torch::Tensor xp = pad_to_multiple(images, opt_.pad_multiple);
  torch::Tensor recp = rec_->forward(xp);
  // train_DRAEM.py: joined_in = torch.cat((gray_rec, aug_gray_batch), dim=1).
  torch::Tensor seg = disc_->forward(torch::cat({recp, xp}, 1));
  return {crop_to(recp, h, w), crop_to(seg, h, w)};
}

torch::Tensor Draem::segment(const torch::Tensor& reconstruction, const torch::Tensor& images) {
  const int64_t h = images.size(2), w = images.size(3);
  torch::Tensor in = pad_to_multiple(torch::cat({reconstruction, images}, 1), opt_.pad_multiple);
  return crop_to(disc_->forward(in), h, w);
}

Prediction Draem::finish(const torch::Tensor& segmentation) const {
  // test_DRAEM.py: softmax channel 1 is the map; the image score pools it (avgpool_max).
  torch::Tensor raw = torch::softmax(segmentation, 1).slice(1, 1, 2).to(torch::kCPU).to(torch::kFloat32);
  torch::Tensor map = scoring_.postprocess(raw, {{segmentation.size(2), segmentation.size(3)}});
  return {map, scoring_.scores(raw, map)};
}

LossValues Draem::losses(const Batch& batch, const torch::Device& device) {
  auto it = batch.extras.find("image_clean");
  if (it == batch.extras.end())
    throw Error("draem: training batches must carry the clean image (the synthesizer hook adds it)");
  return losses(forward(batch.images.to(device)), it->second.to(device), batch.masks.to(device));
}

LossValues Draem::losses(const Outputs& out, const torch::Tensor& clean, const torch::Tensor& masks) const {
  return evaluate_losses(opt_.losses, {{"reconstruction", out.reconstruction}, {"segmentation", out.segmentation}},
                         {{"image", clean}, {"mask", masks}});
}

void Draem::configure_training(TrainSpec& spec, FitContext& ctx) {
  // Made here, not in the constructor: a fitted model loaded for prediction needs no textures.
  std::shared_ptr<Synthesizer> synth = opt_.synthesizer.make();
  spec.hook = [synth](Sample& s, std::mt19937_64& rng) {
    SynthResult r = synth->apply(s.image, rng);
    // The reconstruction target is the normal image the anomaly was added to (rotated by
    // perlin_texture as DRAEM's data_loader.py does).
    s.extras["image_clean"] = r.clean.defined() ? r.clean : s.image;
    s.image = r.image;
    s.mask = r.mask;
    s.has_mask = true;
  };
  const torch::Device device = ctx.run.device;
  spec.step = [this, device](const Batch& b, std::mt19937_64&, int64_t) { return losses(b, device); };
}

Prediction Draem::predict(const Batch& batch, const RunContext& ctx) {
  require_built("predict()");
  torch::NoGradGuard ng;
  eval_parts();
  return finish(forward(batch.images.to(ctx.device)).segmentation);
}

}  // namespace adfw
