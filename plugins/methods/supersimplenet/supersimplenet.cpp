#include "methods/supersimplenet/supersimplenet.hpp"

#include "adfw/core/error.hpp"
#include "adfw/method/features.hpp"

namespace adfw {

SuperSimpleNet::Options::Options() {
  trainer.epochs = 300;
  trainer.batch_size = 32;
  trainer.optimizer.kind = "adamw";
  trainer.optimizer.lr = 2e-4;
  trainer.optimizer.weight_decay = 1e-5;
  // model/supersimplenet.py get_optimizers: the adaptor group (lr 1e-4) keeps AdamW's default weight
  // decay 0.01; the segmentation and classification groups take the optimiser's 2e-4 and 1e-5.
  trainer.groups = {ParamGroupOptions{"adaptor", 1e-4, 1e-2}};
  trainer.scheduler.kind = "multistep";
  trainer.scheduler.milestones = {0.8, 0.9};
  trainer.scheduler.gamma = 0.4;
  // model/supersimplenet.py AnomalyMapGenerator: bilinear upsampling, then torchvision
  // GaussianBlur(2 * ceil(3 sigma) + 1, sigma 4), whose padding is torch's "reflect" (the edge pixel
  // not repeated).
  postprocess = upsample_gaussian_chain(4.0, 0, "reflect");
  // simplenet.py load(): pretrain_embed_dimension = target_embed_dimension = 1536 (run.sh).
  embedding.patch_size = 3;
  embedding.layer_dim = 1536;
  embedding.target_dim = 1536;
}

SuperSimpleNet::SuperSimpleNet(const Options& o) : TrainedMethod("supersimplenet"), opt_(o) {
  if (opt_.losses.empty()) {
    opt_.losses = {loss_term("type = 'truncated_l1'\nmargin = 0.5\nprediction = 'segmentation'\ntarget = 'mask'"),
                   loss_term("type = 'focal'\ngamma = 4.0\ninput = 'logits'\nprediction = 'segmentation'\n"
                             "target = 'mask'"),
                   loss_term("type = 'focal'\ngamma = 4.0\ninput = 'logits'\nprediction = 'score'\ntarget = 'label'")};
  }
  scoring_ = MapScoring(opt_.postprocess, opt_.image_score, "supersimplenet", opt_.classify);
  noise_ = opt_.noise.make();
  backbone_ = opt_.backbone.make();
  // The shape contract, checked now rather than at the first batch.
  std::string source;
  const int64_t c = feature_channels(&source);
  parts_ = settle_parts(c, source);
}

int64_t SuperSimpleNet::feature_channels(std::string* source) const {
  // Both aggregations need spatial taps; "supersimplenet" keeps their channels (resizing,
  // concatenation and average pooling), "simplenet" pools every patch to target_dim.
  const int64_t total = backbone::spatial_channels(*backbone_, backbone_->selected_taps(), "method.backbone.layers",
                                                   source);
  if (opt_.aggregation != "simplenet") return total;
  if (source) *source = "method.embedding.target_dim gives";
  return opt_.embedding.target_dim;
}

SuperSimpleNet::Parts SuperSimpleNet::settle_parts(int64_t channels, const std::string& source) const {
  Parts p{opt_.adaptor, opt_.segmentation, opt_.classification};
  p.adaptor.settle("in_channels", channels, source, "method.adaptor");
  // The adaptor maps C -> C: the heads take what it gives.
  const std::string adapted = "the adaptor's output (" + source + " " + std::to_string(channels) + " channels) gives";
  p.segmentation.settle("in_channels", channels, adapted, "method.segmentation");
  if (opt_.classify) p.classification.settle("in_channels", channels, adapted, "method.classification");
  return p;
}

std::string SuperSimpleNet::normalization() const { return backbone_->normalization().name; }

torch::Tensor SuperSimpleNet::features(const torch::Tensor& images) {
  torch::NoGradGuard ng;
  return aggregate(backbone_->forward(images.to(device_)));
}

torch::Tensor SuperSimpleNet::aggregate(const std::map<std::string, torch::Tensor>& maps, PatchAggregationTrace* trace) {
  torch::NoGradGuard ng;
  const auto taps = backbone_->selected_taps();
  if (taps.empty()) throw ConfigError("method.backbone.layers: choose at least one spatial tap");
  const auto first_it = maps.find(taps.front());
  if (first_it == maps.end()) throw Error("the backbone returned no feature map '" + taps.front() + "'");
  const torch::Tensor& first = first_it->second;
  if (first.dim() != 4)
    throw ConfigError("method.backbone.layers: tap '" + taps.front() + "' is not a spatial feature map");
  if (opt_.aggregation == "simplenet") {
    // simplenet.py _embed: 3x3 patches per layer on the first layer's grid, each layer's patch pooled
    // to layer_dim, the layers pooled together to target_dim (common.py Preprocessing, Aggregator).
    return aggregate_patches(maps, taps, opt_.embedding, trace).permute({0, 3, 1, 2}).contiguous();
  }
  // model/feature_extractor.py FeatureExtractor.forward: every layer resized bilinearly with
  // align_corners=True to twice the first layer's size, concatenated, then AvgPool2d(3, 1, 1), which
  // counts the zero padding in its means.
  const int64_t h = opt_.upscale ? first.size(2) * 2 : first.size(2);
  const int64_t w = opt_.upscale ? first.size(3) * 2 : first.size(3);
  torch::Tensor f = concat_taps(maps, taps, h, w, TapResize::bilinear_aligned);
  if (opt_.pool > 1)
    f = torch::avg_pool2d(f, opt_.pool, 1, opt_.pool / 2, /*ceil_mode=*/false, /*count_include_pad=*/true);
  return f;
}

void SuperSimpleNet::build(const RunContext& ctx, int64_t channels) {
  build_channels_ = channels;
  try {
    TrainedMethod::build(ctx);
  } catch (...) {
    build_channels_ = 0;
    throw;
  }
  build_channels_ = 0;
}

void SuperSimpleNet::build_parts(const RunContext& ctx) {
  device_ = ctx.device;
  backbone_->module().to(device_);
  backbone_->module().eval();
  const Parts parts =
      build_channels_ > 0 ? settle_parts(build_channels_, "the features given to build() have") : parts_;
  adaptor_ = make_part(ctx, "adaptor", parts.adaptor);
  seg_ = make_part(ctx, "segmentation", parts.segmentation);
  cls_.reset();
  // A group of its own, as the reference's dec_lr: a short run can give the classification head a
  // larger step than the segmentation head.
  if (opt_.classify) cls_ = make_part(ctx, "classification", parts.classification);
}

Network& SuperSimpleNet::part(const std::string& name) {
  Network* n = name == "adaptor" ? adaptor_.get()
               : name == "segmentation" ? seg_.get()
               : name == "classification" ? cls_.get()
                                          : nullptr;
  if (!n) throw Error("supersimplenet: no part '" + name + "' (built parts: adaptor, segmentation" +
                      (cls_ ? ", classification" : "") + "; call build() first)");
  return *n;
}

SuperSimpleNet::StepTensors SuperSimpleNet::step_tensors(const Batch& batch, std::mt19937_64& rng,
                                                         const torch::Device& device) {
  torch::Tensor f = features(batch.images.to(device));
  if (opt_.synthesis == "image") return step_tensors_image(f, batch);
  // The draws depend only on the shape, which the adaptor (C -> C) keeps.
  return step_tensors(f, batch, noise_->draw(f, rng));
}

torch::Tensor SuperSimpleNet::adapt(const torch::Tensor& f) {
  try {
    return adaptor_->forward(f);
  } catch (const c10::Error& e) {
    throw ConfigError("method.adaptor: cannot take the backbone's " + std::to_string(f.size(1)) +
                      " feature channels; set its in_channels to " + std::to_string(f.size(1)) + " (" +
                      e.what_without_backtrace() + ")");
  }
}

void SuperSimpleNet::run_heads(const torch::Tensor& features, StepTensors& st) {
  torch::Tensor seg = seg_->forward(features);
  st.outputs["segmentation"] = seg;
  // Stop-grad cuts only the map (model/supersimplenet.py, Discriminator.forward): the
  // classification loss still trains the adaptor through the features.
  if (cls_) st.outputs["score"] = cls_->forward(features, opt_.stop_grad ? seg.detach() : seg).reshape({-1});
}

SuperSimpleNet::StepTensors SuperSimpleNet::step_tensors(const torch::Tensor& f, const Batch& batch,
                                                         const FeatureNoiseDraws& draws) {
  const torch::Device device = f.device();
  torch::Tensor a = adapt(f);
  // Pixel labels only where the data has them: image-label-only anomalies get an all-zero mask
  // here and weight 0 in pixel losses below.
  const torch::Tensor pixel_weights = pixel_loss_weights(batch);
  torch::Tensor gt_masks = (batch.masks * pixel_weights).to(device);
  FeatureNoiseResult noisy = noise_->apply(a, gt_masks, batch.labels.to(device), draws);
  const int64_t copies = noisy.features.size(0) / a.size(0);
  StepTensors st;
  st.adapted = a;
  st.perturbed = noisy.features;
  run_heads(noisy.features, st);
  st.targets["mask"] = noisy.mask.to(torch::kFloat32);
  st.targets["label"] = noisy.labels.to(torch::kFloat32);
  st.weights["mask"] = pixel_weights.repeat({copies, 1, 1, 1}).to(device);
  return st;
}

SuperSimpleNet::StepTensors SuperSimpleNet::step_tensors_image(const torch::Tensor& f, const Batch& batch) {
  const torch::Device device = f.device();
  torch::Tensor a = adapt(f);
  // The anomalies are in the images already: their masks (synthetic or real) come to the feature
  // grid exactly as the feature noise brings real masks there (downscale_mask), image-label-only
  // anomalies keep weight 0 in pixel losses.
  const torch::Tensor pixel_weights = pixel_loss_weights(batch);
  StepTensors st;
  st.adapted = a;
  st.perturbed = a;
  run_heads(a, st);
  st.targets["mask"] = downscale_mask((batch.masks * pixel_weights).to(device), a.size(2), a.size(3));
  st.targets["label"] = batch.labels.to(device).to(torch::kFloat32);
  st.weights["mask"] = pixel_weights.to(device);
  return st;
}

SampleHook SuperSimpleNet::image_synthesis_hook() const {
  std::shared_ptr<Synthesizer> synth = opt_.synthesizer.make();
  return [synth](Sample& s, std::mt19937_64& rng) {
    if (s.info.label != 0) return;  // a real anomaly (supervised training) stays as it is
    SynthResult r = synth->apply(s.image, rng);
    s.image = r.image;
    s.mask = r.mask;
    s.has_mask = true;
    s.info.label = r.label;
    if (r.label) s.info.supervision = Supervision::pixel_mask;
  };
}

LossValues SuperSimpleNet::losses(const StepTensors& st) const {
  return evaluate_losses(opt_.losses, st.outputs, st.targets, st.weights);
}

void SuperSimpleNet::configure_training(TrainSpec& spec, FitContext& ctx) {
  const torch::Device device = ctx.run.device;
  spec.step = [this, device](const Batch& b, std::mt19937_64& rng, int64_t) {
    backbone_->module().eval();
    return losses(step_tensors(b, rng, device));
  };
  // Made here, not in the constructor: a fitted model loaded for prediction needs no textures.
  if (opt_.synthesis == "image") spec.hook = image_synthesis_hook();
}

SuperSimpleNet::Inference SuperSimpleNet::infer(const torch::Tensor& features, int64_t height, int64_t width) {
  require_built("predict()");
  torch::NoGradGuard ng;
  eval_parts();
  // model/supersimplenet.py SuperSimpleNet.forward (eval): the heads on the clean adapted features,
  // the raw map upsampled (bilinear) and blurred; simplenet.py _predict likewise.
  torch::Tensor a = adaptor_->forward(features);
  Inference r;
  r.adapted = a;
  torch::Tensor seg = seg_->forward(a);
  r.raw_map = seg.to(torch::kCPU).to(torch::kFloat32);
  r.map = scoring_.postprocess(r.raw_map, {{height, width}});
  if (cls_) r.score_logits = cls_->forward(a, seg).reshape({-1}).to(torch::kCPU).to(torch::kFloat32);
  r.scores = scoring_.scores(r.raw_map, r.map, cls_ ? torch::sigmoid(r.score_logits) : torch::Tensor());
  return r;
}

Prediction SuperSimpleNet::predict(const Batch& batch, const RunContext& ctx) {
  require_built("predict()");
  Inference r = infer(features(batch.images.to(ctx.device)), batch.images.size(2), batch.images.size(3));
  return {r.map, r.scores};
}

void SuperSimpleNet::describe(nlohmann::json& j) const {
  if (!opt_.classify) j["method"] = "supersimplenet (no classification head)";
  j["synthesis"] = opt_.synthesis == "image" ? "image space: synthesizer " + opt_.synthesizer.type()
                                             : "feature space: noise " + opt_.noise.type();
}

}  // namespace adfw
