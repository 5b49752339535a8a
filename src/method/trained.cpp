#include "adfw/method/trained.hpp"

#include <numeric>
#include <sstream>

#include "adfw/core/error.hpp"
#include "adfw/core/log.hpp"
#include "adfw/core/rng.hpp"
#include "adfw/train/losses.hpp"

namespace adfw {

LossTerm loss_term(const std::string& toml_text) {
  toml::table t = toml::parse(toml_text);
  LossTerm term;
  term.read_toml(t, "losses");
  return term;
}

torch::Tensor pad_to_multiple(const torch::Tensor& x, int64_t multiple) {
  const int64_t h = x.size(-2), w = x.size(-1);
  const int64_t ph = (multiple - h % multiple) % multiple, pw = (multiple - w % multiple) % multiple;
  if (ph == 0 && pw == 0) return x;
  // Reflection needs the pad to be smaller than the side; fall back to replication otherwise.
  const bool reflect = ph < h && pw < w;
  auto o = torch::nn::functional::PadFuncOptions({0, pw, 0, ph});
  if (reflect) o.mode(torch::kReflect);
  else o.mode(torch::kReplicate);
  return torch::nn::functional::pad(x, o);
}

torch::Tensor crop_to(const torch::Tensor& x, int64_t height, int64_t width) {
  if (x.size(-2) == height && x.size(-1) == width) return x;
  return x.slice(-2, 0, height).slice(-1, 0, width);
}

torch::Tensor pixel_loss_weights(const Batch& batch) {
  const int64_t n = batch.size();
  auto w = torch::ones({n, 1, 1, 1}, torch::kFloat32);
  for (int64_t i = 0; i < n; ++i)
    if (batch.info[static_cast<std::size_t>(i)].supervision == Supervision::image_label) w[i].fill_(0.0);
  return w;
}

namespace {

std::vector<torch::Tensor> params_of(Network& n) { return n.module()->parameters(); }

/// Seeds torch's generator for weight initialisation so a run's init depends only on its seed.
void seed_init(const RunContext& ctx, const std::string& part) { torch::manual_seed(derive_seed(ctx.seeds.init(), part)); }

nlohmann::json losses_json(const std::vector<LossTerm>& terms) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& t : terms)
    j.push_back({{"type", t.type()}, {"weight", t.weight()}, {"prediction", t.prediction()}, {"target", t.target()}});
  return j;
}

void require_losses(const std::vector<LossTerm>& terms, const std::string& method) {
  if (terms.empty()) throw ConfigError("method.losses: " + method + " needs at least one loss term");
}

}  // namespace

// =============================================================================================
// DRAEM
// =============================================================================================

Draem::Options::Options() {
  trainer.epochs = 700;
  trainer.batch_size = 8;
  trainer.optimizer.kind = "adam";
  trainer.optimizer.lr = 1e-4;
  trainer.scheduler.kind = "multistep";
  trainer.scheduler.milestones = {0.8, 0.9};
  trainer.scheduler.gamma = 0.2;
}

Draem::Draem(const Options& o) : opt_(o) {
  if (opt_.losses.empty()) {
    // loss.py SSIM() leaves val_range None: the data range comes from the reconstruction.
    opt_.losses = {loss_term("type = 'l2'\nprediction = 'reconstruction'\ntarget = 'image'"),
                   loss_term("type = 'ssim'\ndata_range = 0.0\nprediction = 'reconstruction'\ntarget = 'image'"),
                   loss_term("type = 'focal'\ngamma = 2.0\ninput = 'softmax'\nsmooth = 1e-5\n"
                             "prediction = 'segmentation'\ntarget = 'mask'")};
  }
  scoring_ = MapScoring(opt_.postprocess, opt_.image_score, "draem", false);
}

void Draem::build(const RunContext& ctx) {
  seed_init(ctx, "draem/reconstructive");
  rec_ = opt_.reconstructive.make();
  seed_init(ctx, "draem/discriminative");
  disc_ = opt_.discriminative.make();
  rec_->module()->to(ctx.device);
  disc_->module()->to(ctx.device);
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

void Draem::fit(FitContext& ctx) {
  require_losses(opt_.losses, "draem");
  build(ctx.run);

  TrainSpec spec;
  spec.modules = {{"reconstructive", rec_->module()}, {"discriminative", disc_->module()}};
  spec.groups = {{"reconstructive", params_of(*rec_)}, {"discriminative", params_of(*disc_)}};
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
  spec.score = [this, &ctx](const Batch& b) { return predict(b, ctx.run).scores; };
  trained_ = train(ctx, opt_.trainer, spec);
}

Prediction Draem::predict(const Batch& batch, const RunContext& ctx) {
  if (!rec_) throw Error("draem: predict() before fit()");
  torch::NoGradGuard ng;
  rec_->module()->eval();
  disc_->module()->eval();
  return finish(forward(batch.images.to(ctx.device)).segmentation);
}

StateLayout Draem::layout() {
  if (!rec_ || !disc_) throw Error("draem: no fitted state yet (fit() or load_state() first)");
  StateLayout l;
  l.module("reconstructive", *rec_->module());
  l.module("discriminative", *disc_->module());
  return l;
}

StateDict Draem::state() const { return const_cast<Draem*>(this)->layout().save(); }

void Draem::load_state(const StateDict& state, const RunContext& ctx, const std::string& source) {
  build(ctx);
  layout().load(state, source, ctx.device);
  rec_->module()->eval();
  disc_->module()->eval();
}

nlohmann::json Draem::summary() const {
  nlohmann::json j = trained_.to_json();
  j["method"] = "draem";
  j["losses"] = losses_json(opt_.losses);
  return j;
}

// =============================================================================================
// RIAD
// =============================================================================================

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

Riad::Riad(const Options& o) : opt_(o) {
  if (opt_.losses.empty()) {
    // train.py: MSELoss + MSGMS_Loss + SSIM_Loss (C1 = 0.01^2, C2 = 0.03^2: data range 1), weights 1.
    opt_.losses = {loss_term("type = 'l2'\nprediction = 'reconstruction'\ntarget = 'image'"),
                   loss_term("type = 'msgms'\nprediction = 'reconstruction'\ntarget = 'image'"),
                   loss_term("type = 'ssim'\ndata_range = 1.0\nprediction = 'reconstruction'\ntarget = 'image'")};
  }
  if (opt_.cutout_sizes.empty()) throw ConfigError("method.cutout_sizes: give at least one cell size (RIAD: [2, 4, 8, 16])");
  scoring_ = MapScoring(opt_.postprocess, opt_.image_score, "riad", false);
}

void Riad::build(const RunContext& ctx) {
  seed_init(ctx, "riad/network");
  net_ = opt_.network.make();
  net_->module()->to(ctx.device);
}

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

void Riad::fit(FitContext& ctx) {
  require_losses(opt_.losses, "riad");
  build(ctx.run);
  TrainSpec spec;
  spec.modules = {{"network", net_->module()}};
  spec.groups = {{"network", params_of(*net_)}};
  const torch::Device device = ctx.run.device;
  spec.step = [this, device](const Batch& b, std::mt19937_64& rng, int64_t) {
    torch::Tensor x = to_network_range(b.images.to(device));
    const int64_t k = opt_.cutout_sizes[std::uniform_int_distribution<std::size_t>(0, opt_.cutout_sizes.size() - 1)(rng)];
    torch::Tensor rec = crop_to(inpaint(pad_to_multiple(x, multiple()), k, rng), x.size(2), x.size(3));
    return losses(x, rec);
  };
  spec.score = [this, &ctx](const Batch& b) { return predict(b, ctx.run).scores; };
  trained_ = train(ctx, opt_.trainer, spec);
}

Prediction Riad::predict(const Batch& batch, const RunContext& ctx) {
  if (!net_) throw Error("riad: predict() before fit()");
  torch::NoGradGuard ng;
  net_->module()->eval();
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

StateLayout Riad::layout() {
  if (!net_) throw Error("riad: no fitted state yet (fit() or load_state() first)");
  StateLayout l;
  l.module("network", *net_->module());
  return l;
}

StateDict Riad::state() const { return const_cast<Riad*>(this)->layout().save(); }

void Riad::load_state(const StateDict& state, const RunContext& ctx, const std::string& source) {
  build(ctx);
  layout().load(state, source, ctx.device);
  net_->module()->eval();
}

nlohmann::json Riad::summary() const {
  nlohmann::json j = trained_.to_json();
  j["method"] = "riad";
  j["losses"] = losses_json(opt_.losses);
  return j;
}

// =============================================================================================
// SuperSimpleNet (and SimpleNet as a configuration)
// =============================================================================================

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

SuperSimpleNet::SuperSimpleNet(const Options& o) : opt_(o) {
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
  device_ = ctx.device;
  backbone_->module().to(device_);
  backbone_->module().eval();
  const Parts parts =
      channels > 0 ? settle_parts(channels, "the features given to build() have") : parts_;
  seed_init(ctx, "supersimplenet/adaptor");
  adaptor_ = parts.adaptor.make();
  seed_init(ctx, "supersimplenet/segmentation");
  seg_ = parts.segmentation.make();
  if (opt_.classify) {
    seed_init(ctx, "supersimplenet/classification");
    cls_ = parts.classification.make();
  }
  adaptor_->module()->to(device_);
  seg_->module()->to(device_);
  if (cls_) cls_->module()->to(device_);
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
  // The draws depend only on the shape, which the adaptor (C -> C) keeps.
  return step_tensors(f, batch, noise_->draw(f, rng));
}

SuperSimpleNet::StepTensors SuperSimpleNet::step_tensors(const torch::Tensor& f, const Batch& batch,
                                                         const FeatureNoiseDraws& draws) {
  const torch::Device device = f.device();
  torch::Tensor a;
  try {
    a = adaptor_->forward(f);
  } catch (const c10::Error& e) {
    throw ConfigError("method.adaptor: cannot take the backbone's " + std::to_string(f.size(1)) +
                      " feature channels; set its in_channels to " + std::to_string(f.size(1)) + " (" +
                      e.what_without_backtrace() + ")");
  }
  // Pixel labels only where the data has them: image-label-only anomalies get an all-zero mask
  // here and weight 0 in pixel losses below.
  const torch::Tensor pixel_weights = pixel_loss_weights(batch);
  torch::Tensor gt_masks = (batch.masks * pixel_weights).to(device);
  FeatureNoiseResult noisy = noise_->apply(a, gt_masks, batch.labels.to(device), draws);
  const int64_t copies = noisy.features.size(0) / a.size(0);
  StepTensors st;
  st.adapted = a;
  st.perturbed = noisy.features;
  torch::Tensor seg = seg_->forward(noisy.features);
  st.outputs["segmentation"] = seg;
  if (cls_) {
    // Stop-grad cuts only the map (model/supersimplenet.py, Discriminator.forward): the
    // classification loss still trains the adaptor through the features.
    torch::Tensor sin = opt_.stop_grad ? seg.detach() : seg;
    st.outputs["score"] = cls_->forward(noisy.features, sin).reshape({-1});
  }
  st.targets["mask"] = noisy.mask.to(torch::kFloat32);
  st.targets["label"] = noisy.labels.to(torch::kFloat32);
  st.weights["mask"] = pixel_weights.repeat({copies, 1, 1, 1}).to(device);
  return st;
}

LossValues SuperSimpleNet::losses(const StepTensors& st) const {
  return evaluate_losses(opt_.losses, st.outputs, st.targets, st.weights);
}

void SuperSimpleNet::fit(FitContext& ctx) {
  require_losses(opt_.losses, "supersimplenet");
  build(ctx.run);
  TrainSpec spec;
  spec.modules = {{"adaptor", adaptor_->module()}, {"segmentation", seg_->module()}};
  spec.groups = {{"adaptor", params_of(*adaptor_)}, {"segmentation", params_of(*seg_)}};
  if (cls_) {
    spec.modules.push_back({"classification", cls_->module()});
    // A group of its own, as the reference's dec_lr: a short run can give the classification
    // head a larger step than the segmentation head.
    spec.groups.push_back({"classification", params_of(*cls_)});
  }
  const torch::Device device = ctx.run.device;
  spec.step = [this, device](const Batch& b, std::mt19937_64& rng, int64_t) {
    backbone_->module().eval();
    return losses(step_tensors(b, rng, device));
  };
  spec.score = [this, &ctx](const Batch& b) { return predict(b, ctx.run).scores; };
  trained_ = train(ctx, opt_.trainer, spec);
}

SuperSimpleNet::Inference SuperSimpleNet::infer(const torch::Tensor& features, int64_t height, int64_t width) {
  if (!seg_) throw Error("supersimplenet: predict() before fit()");
  torch::NoGradGuard ng;
  adaptor_->module()->eval();
  seg_->module()->eval();
  if (cls_) cls_->module()->eval();
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
  if (!seg_) throw Error("supersimplenet: predict() before fit()");
  Inference r = infer(features(batch.images.to(ctx.device)), batch.images.size(2), batch.images.size(3));
  return {r.map, r.scores};
}

StateLayout SuperSimpleNet::layout() {
  if (!adaptor_ || !seg_) throw Error("supersimplenet: no fitted state yet (fit() or load_state() first)");
  StateLayout l;
  l.module("adaptor", *adaptor_->module());
  l.module("segmentation", *seg_->module());
  if (cls_) l.module("classification", *cls_->module());
  return l;
}

StateDict SuperSimpleNet::state() const { return const_cast<SuperSimpleNet*>(this)->layout().save(); }

void SuperSimpleNet::load_state(const StateDict& state, const RunContext& ctx, const std::string& source) {
  build(ctx);
  layout().load(state, source, ctx.device);
  adaptor_->module()->eval();
  seg_->module()->eval();
  if (cls_) cls_->module()->eval();
}

nlohmann::json SuperSimpleNet::summary() const {
  nlohmann::json j = trained_.to_json();
  j["method"] = opt_.classify ? "supersimplenet" : "supersimplenet (no classification head)";
  j["losses"] = losses_json(opt_.losses);
  return j;
}

}  // namespace adfw
