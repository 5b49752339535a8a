#include "methods/dsr/dsr.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "adfw/core/checkpoint.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/log.hpp"
#include "adfw/core/rng.hpp"
#include "adfw/data/dataset.hpp"
#include "adfw/synth/perlin_blend.hpp"

namespace adfw {

namespace {

namespace F = torch::nn::functional;
namespace fs = std::filesystem;

const std::vector<std::string>& module_names() {
  static const std::vector<std::string> names{"vq", "sub_res_hi", "sub_res_lo", "image_recon", "anomaly_det", "upsample"};
  return names;
}

torch::Tensor flip_channels(const torch::Tensor& x, const std::string& order) {
  return order == "bgr" ? x.flip({x.dim() - 3}) : x;
}

// The networks halve the image three times (VQ-VAE lo level: 1/8) and the subspace modules pool
// the lo grid twice more: sides must be multiples of 32. Entry points that take exact tensors
// check; the pipeline's images are reflect-padded (kSideMultiple) and the maps cropped back.
constexpr int64_t kSideMultiple = 32;
void check_size(int64_t h, int64_t w, const std::string& who) {
  if (h % kSideMultiple != 0 || w % kSideMultiple != 0)
    throw Error(who + ": DSR needs image sides that are multiples of 32 (the lo code grid is 1/8 of the image "
                      "and the subspace modules pool it twice); got " + std::to_string(h) + " x " + std::to_string(w));
}

// max_pool(mask, r) brought back to image size by nearest-neighbour upsampling (train_dsr.py).
torch::Tensor block_mask(const torch::Tensor& mask, int64_t ratio) {
  torch::Tensor m = torch::max_pool2d(mask, {ratio, ratio});
  return F::interpolate(m, F::InterpolateFuncOptions()
                               .scale_factor(std::vector<double>{static_cast<double>(ratio), static_cast<double>(ratio)})
                               .mode(torch::kNearest));
}

void freeze(torch::nn::Module& m) {
  for (auto& p : m.parameters()) p.set_requires_grad(false);
}

}  // namespace

bool DsrCheckpointOptions::any() const {
  return !sub_res_hi.empty() || !sub_res_lo.empty() || !image_recon.empty() || !anomaly_det.empty() || !upsample.empty();
}
bool DsrCheckpointOptions::all() const {
  return !sub_res_hi.empty() && !sub_res_lo.empty() && !image_recon.empty() && !anomaly_det.empty() && !upsample.empty();
}

torch::Tensor dsr_crop(const torch::Tensor& x, int64_t size) {
  const int64_t mh = std::max<int64_t>(0, x.size(-2) - size) / 2, mw = std::max<int64_t>(0, x.size(-1) - size) / 2;
  return x.slice(-2, mh, x.size(-2) - mh).slice(-1, mw, x.size(-1) - mw);
}

// =================================================================================================
// DSR
// =================================================================================================

Dsr::Options::Options() {
  trainer.epochs = 100;
  trainer.batch_size = 8;
  trainer.optimizer.kind = "adam";
  trainer.optimizer.lr = 2e-4;
  trainer.scheduler.kind = "multistep";
  trainer.scheduler.milestones = {0.8};
  trainer.scheduler.gamma = 0.1;
  upsampling_trainer.epochs = 50;
  upsampling_trainer.batch_size = 8;
  upsampling_trainer.optimizer.kind = "adam";
  upsampling_trainer.optimizer.lr = 2e-4;
  upsampling_trainer.scheduler.kind = "constant";
  perlin.empty_probability = 0.5;
}

Dsr::Dsr(const Options& o) : TrainedMethod("dsr"), opt_(o) {
  if (opt_.losses.empty()) {
    // train_dsr.py train_on_device: loss_feat_hi + loss_feat_lo + 10 * l2(image) + FocalLoss() on
    // the softmax (gamma 2, smooth 1e-5).
    opt_.losses = {loss_term("type = 'l2'\nprediction = 'feat_hi'\ntarget = 'quantized_hi'"),
                   loss_term("type = 'l2'\nprediction = 'feat_lo'\ntarget = 'quantized_lo'"),
                   loss_term("type = 'l2'\nweight = 10.0\nprediction = 'image_recon'\ntarget = 'image'"),
                   loss_term("type = 'focal'\ngamma = 2.0\ninput = 'softmax'\nsmooth = 1e-5\n"
                             "prediction = 'segmentation'\ntarget = 'mask'")};
  }
  if (opt_.upsampling_losses.empty()) {
    opt_.upsampling_losses = {loss_term("type = 'focal'\ngamma = 2.0\ninput = 'softmax'\nsmooth = 1e-5\n"
                                        "prediction = 'refined'\ntarget = 'mask'")};
  }
  if (opt_.checkpoints.any() && !opt_.checkpoints.all())
    throw ConfigError("method.checkpoints: give all five trained modules (sub_res_hi, sub_res_lo, image_recon, "
                      "anomaly_det, upsample) or none");
  opt_.perlin.validate();
  latent_ = opt_.latent_anomaly.make();
  upsampling_synth_ = opt_.upsampling_synthesizer.make();
  scoring_ = MapScoring(opt_.postprocess, opt_.image_score.slot(), "dsr", false);
}

void Dsr::build_parts(const RunContext& ctx) {
  const PartRole frozen{false, ""};
  vq_ = make_part(ctx, "vq", [this] {
    DiscreteLatentModel vq(opt_.vq.model());
    if (opt_.vq_checkpoint.empty())
      throw ConfigError("method.vq_checkpoint: DSR needs a pretrained VQ-VAE: the reference's "
                        "vq_model_pretrained_128_4096.pckl or the vq_model.safetensors of an "
                        "experiments/dsr_vq_pretrain.toml run (\"random\" = untrained, for tests)");
    if (opt_.vq_checkpoint == "random") log_warn("dsr: the VQ-VAE is untrained (method.vq_checkpoint = \"random\")");
    else load_checkpoint(*vq, opt_.vq_checkpoint);
    return vq;
  }, frozen);
  const int64_t d = opt_.vq.embedding_dim;
  // train_dsr.py builds sub_res_lo, sub_res_hi, anomaly_det (+ weights_init), image_recon (+ weights_init).
  sub_res_lo_ = make_part(ctx, "sub_res_lo", [d] { return SubspaceRestrictionModule(d); });
  sub_res_hi_ = make_part(ctx, "sub_res_hi", [d] { return SubspaceRestrictionModule(d); });
  anomaly_det_ = make_part(ctx, "anomaly_det", [this] {
    DsrUnetModule m(6, opt_.unet_base_width);
    dsr_weights_init(*m);
    return m;
  });
  image_recon_ = make_part(ctx, "image_recon", [this, d] {
    ImageReconstructionNetwork m(2 * d, opt_.vq.num_hiddens, opt_.vq.num_residual_layers, opt_.vq.num_residual_hiddens,
                                 opt_.image_recon_bottleneck);
    dsr_weights_init(*m);
    return m;
  });
  upsample_ = make_part(ctx, "upsample", [this] { return DsrUnetModule(8, opt_.unet_base_width); });
  const auto& c = opt_.checkpoints;
  if (c.all()) {
    load_checkpoint(*sub_res_hi_, c.sub_res_hi);
    load_checkpoint(*sub_res_lo_, c.sub_res_lo);
    load_checkpoint(*image_recon_, c.image_recon);
    load_checkpoint(*anomaly_det_, c.anomaly_det);
    load_checkpoint(*upsample_, c.upsample);
  }
  freeze(*vq_);
  vq_->eval();
}

void Dsr::load(const StateDict& state, const std::string& source) {
  std::map<std::string, StateDict> parts;
  std::vector<std::string> stray;
  for (const auto& [k, v] : state) {
    const std::string head = k.substr(0, k.find('.'));
    if (std::find(module_names().begin(), module_names().end(), head) == module_names().end() || head == k)
      stray.push_back(k);
    else parts[head][k.substr(head.size() + 1)] = v;
  }
  if (!stray.empty())
    throw Error(source + ": keys outside the DSR modules (vq, sub_res_hi, sub_res_lo, image_recon, anomaly_det, "
                         "upsample): " + stray.front() + (stray.size() > 1 ? " and " + std::to_string(stray.size() - 1) + " more" : ""));
  for (const auto& [name, part] : parts) load_into(*module(name), part, source + " [" + name + "]");
}

torch::Tensor Dsr::to_network(const torch::Tensor& rgb) const { return flip_channels(rgb, opt_.channel_order); }

DsrStage1Draws Dsr::draw_stage1(int64_t n, int64_t h, int64_t w, std::mt19937_64& rng) const {
  const int64_t k = opt_.vq.num_embeddings;
  DsrStage1Draws d;
  d.lo = latent_->draw(n, (h / 8) * (w / 8), k, rng);
  d.hi = latent_->draw(n, (h / 4) * (w / 4), k, rng);
  d.hi_usebot = latent_->draw(n, (h / 4) * (w / 4), k, rng, d.hi.strength);
  d.levels = latent_->draw_levels(n, rng);
  return d;
}

DsrStage1Step Dsr::stage1_step(const torch::Tensor& x, const torch::Tensor& masks, const DsrStage1Draws& draws) {
  if (!vq_) throw Error("dsr: stage1_step() before build()");
  check_size(x.size(2), x.size(3), "dsr");
  vq_->eval();
  DsrStage1Step s;
  auto& top = *vq_->_vq_vae_top;
  auto& bot = *vq_->_vq_vae_bot;
  const torch::Tensor mask = masks.to(x.scalar_type());
  {
    // train_dsr.py train_on_device, the torch.no_grad() block.
    torch::NoGradGuard ng;
    s.enc_b = vq_->_encoder_b->forward(x);
    s.enc_t = vq_->_encoder_t->forward(s.enc_b);
    s.zt = vq_->_pre_vq_conv_top->forward(s.enc_t);
    VqOutput qt = top.forward(s.zt);
    s.quantized_t = qt.quantized, s.indices_t = qt.indices, s.loss_t = qt.loss;
    s.anomaly_lo = latent_->apply(s.zt, s.quantized_t, top.codebook(), mask, draws.lo);
    s.up_quantized_t = vq_->upsample_t->forward(s.anomaly_lo.features);
    s.up_quantized_t_real = vq_->upsample_t->forward(s.quantized_t);
    s.zb = vq_->_pre_vq_conv_bot->forward(torch::cat({s.enc_b, s.up_quantized_t}, 1));
    s.zb_real = vq_->_pre_vq_conv_bot->forward(torch::cat({s.enc_b, s.up_quantized_t_real}, 1));
    VqOutput qb = bot.forward(s.zb), qb_real = bot.forward(s.zb_real);
    s.quantized_b = qb.quantized, s.indices_b = qb.indices;
    s.quantized_b_real = qb_real.quantized, s.indices_b_real = qb_real.indices;
    s.anomaly_hi = latent_->apply(s.zb, s.quantized_b, bot.codebook(), mask, draws.hi);
    s.anomaly_hi_usebot = latent_->apply(s.zb_real, s.quantized_b_real, bot.codebook(), mask, draws.hi_usebot);
    const torch::Tensor both = draws.levels.use_both.to(x.device()).to(x.scalar_type());
    const torch::Tensor lo = draws.levels.use_lo.to(x.device()).to(x.scalar_type());
    const torch::Tensor hi = 1 - lo;
    // Both levels, or only one: the other level keeps its clean codes.
    s.anomaly_embedding_hi =
        s.anomaly_hi.features * both + (hi * s.anomaly_hi_usebot.features + lo * s.quantized_b_real) * (1.0 - both);
    s.anomaly_embedding_lo =
        s.anomaly_lo.features * both + (hi * s.quantized_t + lo * s.anomaly_lo.features) * (1.0 - both);
    s.recon_image_general = vq_->decode(s.anomaly_embedding_lo, s.anomaly_embedding_hi);
    // The target: the mask in code-sized blocks of the level(s) that got anomalies.
    const torch::Tensor mask_hi = block_mask(mask, x.size(3) / s.quantized_b.size(3));
    const torch::Tensor mask_lo = block_mask(mask, x.size(3) / s.quantized_t.size(3));
    s.anomaly_mask_target = mask_lo * both + (mask_lo * lo + mask_hi * hi) * (1.0 - both);
  }
  auto [feat_hi, q_hi] = sub_res_hi_->forward(s.anomaly_embedding_hi, bot);
  auto [feat_lo, q_lo] = sub_res_lo_->forward(s.anomaly_embedding_lo, top);
  s.recon_feat_hi = feat_hi, s.recon_embeddings_hi = q_hi.quantized, s.recon_indices_hi = q_hi.indices;
  s.recon_feat_lo = feat_lo, s.recon_embeddings_lo = q_lo.quantized, s.recon_indices_lo = q_lo.indices;
  s.sub_res_loss_hi = q_hi.loss, s.sub_res_loss_lo = q_lo.loss;
  s.recon_image_recon =
      image_recon_->forward(torch::cat({vq_->upsample_t->forward(s.recon_embeddings_lo), s.recon_embeddings_hi}, 1));
  // The detection module learns from the focal term alone.
  s.out_mask = anomaly_det_->forward({s.recon_image_recon.detach(), s.recon_image_general});
  s.losses = evaluate_losses(opt_.losses,
                             {{"feat_hi", s.recon_feat_hi},
                              {"feat_lo", s.recon_feat_lo},
                              {"image_recon", s.recon_image_recon},
                              {"segmentation", s.out_mask}},
                             {{"quantized_hi", s.quantized_b_real},
                              {"quantized_lo", s.quantized_t},
                              {"image", x},
                              {"mask", s.anomaly_mask_target}});
  return s;
}

DsrForward Dsr::forward(const torch::Tensor& x) {
  if (!vq_) throw Error("dsr: forward() before build()");
  check_size(x.size(2), x.size(3), "dsr");
  vq_->eval();
  DsrForward f;
  {
    // Everything before the upsampling module is frozen in stage 2 and at inference.
    torch::NoGradGuard ng;
    f.vq = vq_->forward(x);
    auto [feat_hi, q_hi] = sub_res_hi_->forward(f.vq.bot.quantized, *vq_->_vq_vae_bot);
    auto [feat_lo, q_lo] = sub_res_lo_->forward(f.vq.top.quantized, *vq_->_vq_vae_top);
    f.recon_feat_hi = feat_hi, f.recon_embeddings_hi = q_hi.quantized, f.recon_indices_hi = q_hi.indices;
    f.recon_feat_lo = feat_lo, f.recon_embeddings_lo = q_lo.quantized, f.recon_indices_lo = q_lo.indices;
    f.recon_image_recon = image_recon_->forward(
        torch::cat({vq_->upsample_t->forward(f.recon_embeddings_lo), f.recon_embeddings_hi}, 1));
    f.recon_image = vq_->decode(f.vq.top.quantized, f.vq.bot.quantized);
    f.out_mask = anomaly_det_->forward({f.recon_image_recon, f.recon_image});
  }
  f.refined_mask = upsample_->forward({f.recon_image_recon, f.recon_image, torch::softmax(f.out_mask, 1)});
  return f;
}

LossValues Dsr::stage2_losses(const DsrForward& f, const torch::Tensor& masks) const {
  return evaluate_losses(opt_.upsampling_losses, {{"refined", f.refined_mask}}, {{"mask", masks}});
}

Prediction Dsr::finish(const DsrForward& f) const {
  const torch::Tensor refined = torch::softmax(f.refined_mask, 1).slice(1, 1, 2).to(torch::kCPU).to(torch::kFloat32);
  const torch::Tensor det = torch::softmax(f.out_mask, 1).slice(1, 1, 2).to(torch::kCPU).to(torch::kFloat32);
  // test_dsr.py scores the anomaly detection module's map: the raw map of the image_score slot.
  const torch::Tensor map = scoring_.postprocess(refined, {{refined.size(2), refined.size(3)}});
  return {map, scoring_.scores(det, map)};
}

void Dsr::fit(FitContext& ctx) {
  build(ctx.run);
  if (opt_.checkpoints.all()) {
    log_info("dsr: evaluating the given trained checkpoints (method.checkpoints); no training");
    return;
  }
  const torch::Device device = ctx.run.device;
  std::vector<TrainStage> stages(2);

  TrainStage& s1 = stages[0];
  s1.name = "dsr";
  s1.options = trainer_options();
  // Not the parts' order (training_spec()): the checkpoint and optimiser layouts of earlier runs.
  s1.spec.modules = {{"sub_res_hi", sub_res_hi_.ptr()},
                     {"sub_res_lo", sub_res_lo_.ptr()},
                     {"image_recon", image_recon_.ptr()},
                     {"anomaly_det", anomaly_det_.ptr()}};
  // train_dsr.py: one Adam with four parameter groups, all at lr.
  s1.spec.groups = {{"sub_res_lo", sub_res_lo_->parameters()},
                    {"sub_res_hi", sub_res_hi_->parameters()},
                    {"image_recon", image_recon_->parameters()},
                    {"anomaly_det", anomaly_det_->parameters()}};
  configure_training(s1.spec, ctx);

  TrainStage& s2 = stages[1];
  s2.name = "upsampling";
  s2.options = opt_.upsampling_trainer;
  s2.spec.modules = {{"upsample", upsample_.ptr()}};
  s2.spec.groups = {{"upsample", upsample_->parameters()}};
  std::shared_ptr<Synthesizer> synth = upsampling_synth_;
  const double rot2 = opt_.upsampling_rotate_probability;
  s2.spec.hook = [synth, rot2](Sample& s, std::mt19937_64& rng) {
    // MVTecImageAnomTrainDataset: rotation with probability 0.3, then a solid colour through a
    // Perlin mask.
    if (rot2 > 0 && uniform01(rng) < rot2) s.image = rotate_about_centre(s.image, uniform(rng, -90.0, 90.0));
    SynthResult r = synth->apply(s.image, rng);
    s.image = r.image;
    s.mask = r.mask;
    s.has_mask = true;
  };
  s2.spec.step = [this, device](const Batch& b, std::mt19937_64&, int64_t) {
    return stage2_losses(forward(pad_to_multiple(to_network(b.images.to(device)), kSideMultiple)),
                         pad_to_multiple(b.masks.to(device), kSideMultiple));
  };
  s2.spec.score = s1.spec.score;
  s2.prepare = [this] {
    for (const auto& n : {"sub_res_hi", "sub_res_lo", "image_recon", "anomaly_det"}) module(n)->eval();
  };
  stages_ = train_stages(ctx, stages);
}

void Dsr::configure_training(TrainSpec& spec, FitContext& ctx) {
  const torch::Device device = ctx.run.device;
  const PerlinMaskGenerator perlin(opt_.perlin);
  const double rot1 = opt_.rotate_probability;
  spec.hook = [perlin, rot1](Sample& s, std::mt19937_64& rng) {
    // TrainWholeImageDataset: the image is rotated by U(-90, 90) with probability 0.4, and a
    // Perlin mask (empty half of the time) says where the latent anomalies go.
    if (rot1 > 0 && uniform01(rng) < rot1) s.image = rotate_about_centre(s.image, uniform(rng, -90.0, 90.0));
    s.mask = mask_to_tensor(perlin.mask(static_cast<int>(s.image.size(1)), static_cast<int>(s.image.size(2)), rng));
    s.has_mask = true;
  };
  spec.step = [this, device](const Batch& b, std::mt19937_64& rng, int64_t) {
    const torch::Tensor x = pad_to_multiple(to_network(b.images.to(device)), kSideMultiple);
    const DsrStage1Draws draws = draw_stage1(x.size(0), x.size(2), x.size(3), rng);
    return stage1_step(x, pad_to_multiple(b.masks.to(device), kSideMultiple), draws).losses;
  };
  spec.score = [this, &ctx](const Batch& b) { return predict(b, ctx.run).scores; };
}

Prediction Dsr::predict(const Batch& batch, const RunContext& ctx) {
  require_built("predict()");
  torch::NoGradGuard ng;
  eval_parts();
  const int64_t h = batch.images.size(2), w = batch.images.size(3);
  Prediction p = finish(forward(pad_to_multiple(to_network(batch.images.to(ctx.device)), kSideMultiple)));
  p.maps = crop_to(p.maps, h, w).contiguous();
  return p;
}

nlohmann::json Dsr::summary() const {
  nlohmann::json j = nlohmann::json::object();
  j["method"] = "dsr";
  if (stages_.empty()) {
    j["checkpoint"] = opt_.checkpoints.all() ? "given trained checkpoints (method.checkpoints)" : "untrained";
    return j;
  }
  j = stages_.back().to_json();
  j["method"] = "dsr";
  j["stages"] = {{"dsr", stages_.front().to_json()}, {"upsampling", stages_.back().to_json()}};
  j["checkpoint"] = "last step of each stage";
  return j;
}

// =================================================================================================
// VQ-VAE pretraining
// =================================================================================================

DsrVqPretrain::Options::Options() {
  trainer.epochs = 100;
  trainer.batch_size = 8;
  trainer.optimizer.kind = "adam";
  trainer.optimizer.lr = 2e-4;
}

DsrVqPretrain::DsrVqPretrain(const Options& o) : TrainedMethod("dsr_vq_pretrain", "dsr"), opt_(o) {
  scoring_ = MapScoring(opt_.postprocess, opt_.image_score, "dsr_vq_pretrain", false);
}

void DsrVqPretrain::build_parts(const RunContext& ctx) {
  vq_ = make_part(ctx, "vq", [this] { return DiscreteLatentModel(opt_.vq.model()); });
}

LossValues DsrVqPretrain::losses(const torch::Tensor& x) {
  check_size(x.size(2), x.size(3), "dsr_vq_pretrain");
  DiscreteLatentOutput o = vq_->forward(x);
  const torch::Tensor rec = F::mse_loss(o.recon, x);
  LossValues v;
  v.total = rec + o.bot.loss + o.top.loss;
  v.terms = {{"l2:reconstruction", rec.item<double>()},
             {"commitment:hi", o.bot.loss.item<double>()},
             {"commitment:lo", o.top.loss.item<double>()}};
  return v;
}

void DsrVqPretrain::configure_training(TrainSpec& spec, FitContext& ctx) {
  // The training images: the data set's and every image under the given folders.
  std::vector<SampleInfo>& images = images_;
  images = opt_.dataset_images ? ctx.train : std::vector<SampleInfo>{};
  for (std::size_t i = 0; i < opt_.folders.size(); ++i) {
    const fs::path dir = opt_.folders[i];
    const std::string key = "method.folders[" + std::to_string(i) + "]";
    if (!fs::is_directory(dir)) throw ConfigError(key + ": not a folder: " + dir.string());
    std::vector<std::string> found;
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      if (!e.is_regular_file()) continue;
      std::string ext = e.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
      for (const auto& x : default_image_extensions())
        if (ext == "." + x) found.push_back(e.path().string());
    }
    if (found.empty()) throw ConfigError(key + ": no images (png, jpg, jpeg, bmp, tif, tiff) under " + dir.string());
    std::sort(found.begin(), found.end());
    for (const auto& f : found) {
      SampleInfo s;
      s.path = f;
      s.defect_type = "good";
      s.split = Split::train;
      images.push_back(s);
    }
    log_info("dsr_vq_pretrain: " + std::to_string(found.size()) + " images from " + dir.string());
  }
  if (images.empty()) throw ConfigError("method.dataset_images = false needs at least one of method.folders");
  spec.groups = {{"vq", vq_->gradient_parameters()}};
  const torch::Device device = ctx.run.device;
  const std::string order = opt_.channel_order;
  spec.step = [this, device, order](const Batch& b, std::mt19937_64&, int64_t) {
    return losses(pad_to_multiple(flip_channels(b.images.to(device), order), kSideMultiple));
  };
}

std::optional<FitContext> DsrVqPretrain::training_data(FitContext& ctx) {
  return FitContext{ctx.run, images_, ctx.val, ctx.test, ctx.transforms};
}

void DsrVqPretrain::after_training(FitContext& ctx) {
  if (!ctx.run.dir.empty()) {
    save_checkpoint(*vq_, ctx.run.dir / "vq_model.safetensors",
                    {{"format", "DSR DiscreteLatentModel state_dict (discrete_model.py keys)"}});
    log_info("dsr_vq_pretrain: wrote " + (ctx.run.dir / "vq_model.safetensors").string() +
             " (use it as method.vq_checkpoint of experiments/dsr.toml)");
  }
}

Prediction DsrVqPretrain::predict(const Batch& batch, const RunContext& ctx) {
  require_built("predict()");
  torch::NoGradGuard ng;
  eval_parts();
  const int64_t h = batch.images.size(2), w = batch.images.size(3);
  const torch::Tensor x = pad_to_multiple(flip_channels(batch.images.to(ctx.device), opt_.channel_order), kSideMultiple);
  const torch::Tensor err = (vq_->forward(x).recon - x).pow(2).mean(1, true);
  const torch::Tensor raw = crop_to(err, h, w).to(torch::kCPU).to(torch::kFloat32).contiguous();
  const torch::Tensor map = scoring_.postprocess(raw, {{h, w}});
  return {map, scoring_.scores(raw, map)};
}

}  // namespace adfw
