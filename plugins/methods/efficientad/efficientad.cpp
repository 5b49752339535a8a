#include "methods/efficientad/efficientad.hpp"

#include <algorithm>
#include <cmath>

#include <ATen/CPUGeneratorImpl.h>

#include "adfw/core/checkpoint.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/log.hpp"
#include "adfw/core/rng.hpp"
#include "adfw/method/trained.hpp"
#include "adfw/synth/perlin.hpp"
#include "adfw/synth/preview.hpp"

namespace adfw {

namespace {

namespace F = torch::nn::functional;

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t pad = 0) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(pad));
}

torch::Tensor resize_bilinear(const torch::Tensor& x, int64_t h, int64_t w) {
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{h, w})
                               .mode(torch::kBilinear)
                               .align_corners(false));
}

// Channel mean of a squared difference, keeping the channel dimension (predict()'s maps).
torch::Tensor channel_mse(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).pow(2).mean(1, true); }

// 8-bit values of a (3,H,W) image in 0..1 (the pipeline's images hold k / 255).
torch::Tensor to_u8_values(const torch::Tensor& x01) { return (x01 * 255).round().clamp(0, 255).to(torch::kFloat64); }

// PIL's L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16 on 8-bit values (Convert.c rgb2l).
torch::Tensor pil_luma(const torch::Tensor& u) {
  const torch::Tensor v = u[0].to(torch::kInt64) * 19595 + u[1].to(torch::kInt64) * 38470 +
                          u[2].to(torch::kInt64) * 7471 + 0x8000;
  return torch::floor_divide(v, 65536).to(torch::kFloat64);
}

// Image.blend(degenerate, image, f) on 8-bit values (Blend.c): degenerate + f (image - degenerate),
// computed in double, stored through float when extrapolating, clipped to 0..255 and truncated.
torch::Tensor pil_blend(const torch::Tensor& degenerate, const torch::Tensor& image, double f) {
  torch::Tensor out = degenerate + f * (image - degenerate);
  if (f < 0 || f > 1) out = out.to(torch::kFloat32).to(torch::kFloat64);
  return out.clamp(0, 255).floor();
}

void check_pdn_size(const std::string& size) {
  if (size != "small" && size != "medium")
    throw ConfigError("efficientad: model_size must be \"small\" or \"medium\", got \"" + size + "\"");
}

std::unique_ptr<Loader> plain_loader(const FitContext& ctx, const std::vector<SampleInfo>& samples) {
  LoaderOptions lo;
  lo.batch_size = 1;
  lo.shuffle = false;
  lo.drop_last = false;
  lo.augment = false;
  return ctx.loader(samples, lo);
}

std::vector<SampleInfo> pick(const std::vector<SampleInfo>& all, const std::vector<int64_t>& idx) {
  std::vector<SampleInfo> out;
  for (int64_t i : idx) out.push_back(all[static_cast<std::size_t>(i)]);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Networks
// ---------------------------------------------------------------------------------------------

PdnImpl::PdnImpl(const std::string& size, int64_t out_channels, int64_t width, bool padding)
    : size_(size), out_channels_(out_channels), pool_padding_(padding ? 1 : 0) {
  check_pdn_size(size);
  const int64_t p = padding ? 1 : 0;
  // common.py get_pdn_small / get_pdn_medium; the indices are the nn.Sequential positions.
  if (size == "small") {
    convs_ = {{0, conv(3, width, 4, 1, 3 * p)},
              {3, conv(width, 2 * width, 4, 1, 3 * p)},
              {6, conv(2 * width, 2 * width, 3, 1, p)},
              {8, conv(2 * width, out_channels, 4)}};
  } else {
    convs_ = {{0, conv(3, 2 * width, 4, 1, 3 * p)},
              {3, conv(2 * width, 4 * width, 4, 1, 3 * p)},
              {6, conv(4 * width, 4 * width, 1)},
              {8, conv(4 * width, 4 * width, 3, 1, p)},
              {10, conv(4 * width, out_channels, 4)},
              {12, conv(out_channels, out_channels, 1)}};
  }
  for (auto& [i, c] : convs_) register_module(std::to_string(i), c);
}

torch::Tensor PdnImpl::forward(const torch::Tensor& x) {
  // AvgPool2d(2, 2, padding) counts the zero padding (count_include_pad, torch's default).
  auto pool = [this](const torch::Tensor& v) {
    return F::avg_pool2d(v, F::AvgPool2dFuncOptions(2).stride(2).padding(pool_padding_));
  };
  torch::Tensor h = pool(torch::relu(convs_[0].second->forward(x)));
  h = pool(torch::relu(convs_[1].second->forward(h)));
  const std::size_t n = convs_.size();
  for (std::size_t i = 2; i + 1 < n; ++i) h = torch::relu(convs_[i].second->forward(h));
  return convs_[n - 1].second->forward(h);
}

EfficientAdAutoencoderImpl::EfficientAdAutoencoderImpl(int64_t out_channels, int64_t width, double dropout)
    : dropout_(dropout) {
  const int64_t a = width, b = 2 * width;
  // Encoder: Sequential indices 0, 2, 4, 6, 8 (4x4, stride 2, padding 1) and 10 (8x8).
  const std::vector<std::pair<int64_t, int64_t>> enc = {{3, a}, {a, a}, {a, b}, {b, b}, {b, b}};
  for (std::size_t i = 0; i < enc.size(); ++i) {
    enc_.push_back(register_module(std::to_string(2 * i), conv(enc[i].first, enc[i].second, 4, 2, 1)));
  }
  enc_.push_back(register_module("10", conv(b, b, 8)));
  // Decoder: Upsample at 11, 15, ..., conv at 12, 16, ..., 32 (4x4, padding 2), ReLU, Dropout.
  for (int i = 0; i < 6; ++i) dec_.push_back(register_module(std::to_string(12 + 4 * i), conv(b, b, 4, 1, 2)));
  last1_ = register_module("36", conv(b, b, 3, 1, 1));
  last2_ = register_module("38", conv(b, out_channels, 3, 1, 1));
}

torch::Tensor EfficientAdAutoencoderImpl::forward(const torch::Tensor& x, const std::vector<torch::Tensor>* keep) {
  if (keep && !keep->empty() && keep->size() != dec_.size())
    throw Error("efficientad autoencoder: " + std::to_string(dec_.size()) + " dropout masks expected, got " +
                std::to_string(keep->size()));
  torch::Tensor h = x;
  for (std::size_t i = 0; i + 1 < enc_.size(); ++i) h = torch::relu(enc_[i]->forward(h));
  h = enc_.back()->forward(h);
  // common.py: Upsample sizes 3, 8, 15, 32, 63, 127, then 56 (bilinear, align_corners False).
  static const int64_t sizes[] = {3, 8, 15, 32, 63, 127};
  for (std::size_t i = 0; i < dec_.size(); ++i) {
    h = torch::relu(dec_[i]->forward(resize_bilinear(h, sizes[i], sizes[i])));
    if (is_training() && dropout_ > 0) {
      if (keep && !keep->empty()) h = h * ((*keep)[i].to(h.device(), h.scalar_type()) / (1.0 - dropout_));
      else h = F::dropout(h, F::DropoutFuncOptions().p(dropout_).training(true));
    }
  }
  h = torch::relu(last1_->forward(resize_bilinear(h, 56, 56)));
  return last2_->forward(h);
}

// ---------------------------------------------------------------------------------------------
// Pieces
// ---------------------------------------------------------------------------------------------

torch::Tensor efficientad_normalize(const torch::Tensor& images01) {
  const auto o = images01.options();
  const torch::Tensor mean = torch::tensor({0.485, 0.456, 0.406}, o).view({1, 3, 1, 1});
  const torch::Tensor std = torch::tensor({0.229, 0.224, 0.225}, o).view({1, 3, 1, 1});
  return (images01 - mean) / std;
}

EfficientAdSplit efficientad_split(int64_t n, double validation_fraction, uint64_t seed) {
  if (n < 2) throw ConfigError("efficientad: at least two training images are needed (one is held out), got " +
                               std::to_string(n));
  // random_split(full_train_set, [int(0.9 * n), n - int(0.9 * n)], Generator().manual_seed(seed)).
  int64_t train_size = static_cast<int64_t>(std::floor((1.0 - validation_fraction) * static_cast<double>(n)));
  train_size = std::clamp<int64_t>(train_size, 1, n - 1);
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const torch::Tensor perm = torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kInt64));
  EfficientAdSplit s;
  for (int64_t i = 0; i < n; ++i) (i < train_size ? s.train : s.validation).push_back(perm[i].item<int64_t>());
  return s;
}

torch::Tensor quantile_normalize(const torch::Tensor& map, double q_start, double q_end) {
  // The reference keeps the quantiles as float32 tensors: (map - qa) / (qb - qa) in float32.
  const float a = static_cast<float>(q_start), b = static_cast<float>(q_end);
  // Flat held-out maps (q_end == q_start) would divide by zero; the floor keeps the map's order.
  return 0.1 * (map - a) / std::max(b - a, 1e-12f);
}

torch::Tensor pil_color_jitter(const torch::Tensor& image01, int kind, double factor) {
  if (image01.dim() != 3 || image01.size(0) != 3)
    throw Error("color jitter: expected a (3,H,W) image, got " + std::to_string(image01.dim()) + " dims");
  const torch::Tensor u = to_u8_values(image01);
  torch::Tensor out;
  if (kind == 0) {  // ImageEnhance.Brightness: blend with black
    out = pil_blend(torch::zeros_like(u), u, factor);
  } else if (kind == 1) {  // ImageEnhance.Contrast: blend with the rounded mean grey level
    const double mean = std::floor(pil_luma(u).mean().item<double>() + 0.5);
    out = pil_blend(torch::full_like(u, mean), u, factor);
  } else if (kind == 2) {  // ImageEnhance.Color: blend with the grey image
    out = pil_blend(pil_luma(u).unsqueeze(0).expand_as(u), u, factor);
  } else {
    throw Error("color jitter: kind must be 0 (brightness), 1 (contrast) or 2 (saturation), got " +
                std::to_string(kind));
  }
  return (out / 255).to(image01.scalar_type());
}

torch::Tensor pil_grayscale(const torch::Tensor& image01) {
  const torch::Tensor l = pil_luma(to_u8_values(image01));
  return (l / 255).to(image01.scalar_type()).unsqueeze(0).expand({3, -1, -1}).contiguous();
}

ChannelStats channel_statistics(const FeatureSource& source) {
  torch::NoGradGuard ng;
  torch::Tensor sum;
  int64_t n = 0;
  source(0, [&](const torch::Tensor& t) {
    const torch::Tensor m = t.mean({0, 2, 3});
    sum = sum.defined() ? sum + m : m;
    ++n;
  });
  if (n == 0) throw Error("channel statistics: no feature maps given");
  ChannelStats s;
  s.mean = (sum / static_cast<double>(n)).view({1, -1, 1, 1});
  torch::Tensor var;
  int64_t k = 0;
  source(1, [&](const torch::Tensor& t) {
    const torch::Tensor v = (t - s.mean).pow(2).mean({0, 2, 3});
    var = var.defined() ? var + v : v;
    ++k;
  });
  if (k == 0) throw Error("channel statistics: no feature maps given for the variance");
  s.std = (var / static_cast<double>(k)).view({1, -1, 1, 1}).sqrt();
  return s;
}

ChannelStats channel_statistics(const std::vector<torch::Tensor>& maps) {
  return channel_statistics([&](int, const std::function<void(const torch::Tensor&)>& visit) {
    for (const auto& m : maps) visit(m);
  });
}

// ---------------------------------------------------------------------------------------------
// EfficientAD
// ---------------------------------------------------------------------------------------------

EfficientAd::Options::Options() {
  // efficientad.py main(): Adam(lr 1e-4, weight_decay 1e-5), StepLR(int(0.95 * steps), 0.1),
  // 70000 iterations of a batch-1 loader (epochs only bound the step count here).
  trainer.epochs = 1000000;
  trainer.steps = 70000;
  trainer.batch_size = 1;
  trainer.optimizer.kind = "adam";
  trainer.optimizer.lr = 1e-4;
  trainer.optimizer.weight_decay = 1e-5;
  trainer.scheduler.kind = "multistep";
  trainer.scheduler.unit = "step";
  trainer.scheduler.milestones = {0.95};
  trainer.scheduler.gamma = 0.1;
  trainer.augment = false;
}

EfficientAd::EfficientAd(const Options& o) : TrainedMethod("efficientad"), opt_(o) {
  check_pdn_size(opt_.model_size);
  if (opt_.losses.empty()) {
    opt_.losses = {loss_term("type = 'hard_feature'\nquantile = 0.999\nprediction = 'student_st'\ntarget = 'teacher_st'"),
                   loss_term("type = 'l2'\nprediction = 'student_penalty'\ntarget = 'zero'"),
                   loss_term("type = 'l2'\nprediction = 'autoencoder'\ntarget = 'teacher_ae'"),
                   loss_term("type = 'l2'\nprediction = 'student_ae'\ntarget = 'autoencoder'")};
  }
  if (opt_.q_end <= opt_.q_start)
    throw ConfigError("method.q_end (" + std::to_string(opt_.q_end) + ") must be above method.q_start (" +
                      std::to_string(opt_.q_start) + ")");
  if (opt_.teacher_weights.empty())
    throw ConfigError("method.teacher_weights: give the teacher's state_dict (.pth or .safetensors, e.g. the "
                      "teacher.safetensors of an efficientad_teacher run) or \"random\"");
  if (opt_.trainer.selection != "last")
    throw ConfigError("method.trainer.selection: efficientad keeps the last step (its held-out images normalise "
                      "the maps); got \"" + opt_.trainer.selection + "\"");
  scoring_ = MapScoring(opt_.postprocess, opt_.image_score, "efficientad", false);
}

void EfficientAd::build_parts(const RunContext& ctx) {
  device_ = ctx.device;
  // One init stream for the three networks, made in this order.
  seed_part(ctx, "networks");
  teacher_ = Pdn(opt_.model_size, opt_.out_channels, opt_.pdn_width);
  student_ = Pdn(opt_.model_size, 2 * opt_.out_channels, opt_.pdn_width);
  ae_ = EfficientAdAutoencoder(opt_.out_channels, opt_.ae_width, opt_.dropout);
  if (opt_.teacher_weights != "random") {
    const std::filesystem::path p = opt_.teacher_weights;
    if (!std::filesystem::exists(p))
      throw ConfigError("method.teacher_weights: file '" + p.string() + "' does not exist");
    load_checkpoint(*teacher_, p, true);
  }
  for (auto& t : teacher_->parameters()) t.set_requires_grad(false);
  teacher_->eval();
  add_part("teacher", teacher_.ptr(), device_, PartRole{false, ""});
  add_part("student", student_.ptr(), device_);
  add_part("autoencoder", ae_.ptr(), device_);
}

ChannelStats EfficientAd::teacher_statistics(const ImageSource& images01) {
  torch::NoGradGuard ng;
  teacher_->eval();
  // teacher_normalization: two passes over the training images, the second around the first's mean.
  return channel_statistics([&](int, const std::function<void(const torch::Tensor&)>& visit) {
    images01([&](const torch::Tensor& x) { visit(teacher_->forward(efficientad_normalize(x.to(device_)))); });
  });
}

ChannelStats EfficientAd::teacher_statistics(const std::vector<torch::Tensor>& images01) {
  return teacher_statistics([&](const std::function<void(const torch::Tensor&)>& visit) {
    for (const auto& x : images01) visit(x);
  });
}

torch::Tensor EfficientAd::normalized_teacher(const torch::Tensor& x) {
  if (!stats_.mean.defined()) throw Error("efficientad: the teacher statistics are not set");
  torch::NoGradGuard ng;
  return (teacher_->forward(x) - stats_.mean) / stats_.std;
}

EfficientAdTrainStep EfficientAd::train_step(const EfficientAdTrainInput& in) {
  const int64_t c = opt_.out_channels;
  EfficientAdTrainStep s;
  const torch::Tensor x_st = efficientad_normalize(in.image_st.to(device_));
  const torch::Tensor x_ae = efficientad_normalize(in.image_ae.to(device_));
  {
    torch::NoGradGuard ng;
    s.teacher_st = teacher_->forward(x_st);
    s.teacher_ae = teacher_->forward(x_ae);
  }
  s.teacher_st_norm = (s.teacher_st - stats_.mean) / stats_.std;
  s.teacher_ae_norm = (s.teacher_ae - stats_.mean) / stats_.std;
  s.student_st = student_->forward(x_st).slice(1, 0, c);
  TensorMap outputs, targets;
  if (in.image_penalty.defined()) {
    s.student_penalty = student_->forward(efficientad_normalize(in.image_penalty.to(device_))).slice(1, 0, c);
    outputs["student_penalty"] = s.student_penalty;
    targets["zero"] = torch::zeros_like(s.student_penalty);
  }
  s.autoencoder = ae_->forward(x_ae, &in.ae_keep);
  s.student_ae = student_->forward(x_ae).slice(1, c, 2 * c);
  if (s.autoencoder.sizes() != s.teacher_ae.sizes())
    throw ConfigError("efficientad: the autoencoder gives " + std::to_string(s.autoencoder.size(2)) + "x" +
                      std::to_string(s.autoencoder.size(3)) + " maps and the PDN " + std::to_string(s.teacher_ae.size(2)) +
                      "x" + std::to_string(s.teacher_ae.size(3)) +
                      ": the reference's networks need 256 x 256 inputs (input.resize = 256)");
  outputs["student_st"] = s.student_st;
  outputs["autoencoder"] = s.autoencoder;
  outputs["student_ae"] = s.student_ae;
  targets["teacher_st"] = s.teacher_st_norm;
  targets["teacher_ae"] = s.teacher_ae_norm;
  targets["autoencoder"] = s.autoencoder;
  std::vector<LossTerm> terms;
  for (const auto& t : opt_.losses)
    if (t.prediction() != "student_penalty" || in.image_penalty.defined()) terms.push_back(t);
  s.losses = evaluate_losses(terms, outputs, targets);
  return s;
}

EfficientAdMaps EfficientAd::maps(const torch::Tensor& images01) {
  torch::NoGradGuard ng;
  eval_parts();
  const int64_t c = opt_.out_channels;
  const torch::Tensor x = efficientad_normalize(images01.to(device_));
  const torch::Tensor t = normalized_teacher(x);
  const torch::Tensor s = student_->forward(x);
  const torch::Tensor a = ae_->forward(x);
  EfficientAdMaps m;
  m.map_st = channel_mse(t, s.slice(1, 0, c));
  m.map_ae = channel_mse(a, s.slice(1, c, 2 * c));
  m.st = has_quantiles_ ? quantile_normalize(m.map_st, q_st_a_, q_st_b_) : m.map_st;
  m.ae = has_quantiles_ ? quantile_normalize(m.map_ae, q_ae_a_, q_ae_b_) : m.map_ae;
  m.combined = opt_.st_weight * m.st + (1 - opt_.st_weight) * m.ae;
  return m;
}

void EfficientAd::fit_quantiles(const std::vector<torch::Tensor>& images01) {
  fit_quantiles([&](const std::function<void(const torch::Tensor&)>& visit) {
    for (const auto& x : images01) visit(x);
  });
}

void EfficientAd::fit_quantiles(const ImageSource& images01) {
  has_quantiles_ = false;
  std::vector<torch::Tensor> st, ae;
  images01([&](const torch::Tensor& x) {
    EfficientAdMaps m = maps(x);
    st.push_back(m.map_st);
    ae.push_back(m.map_ae);
  });
  if (st.empty()) throw Error("efficientad: no held-out images for the map quantiles");
  // map_normalization: torch.quantile over every value of the concatenated maps.
  const torch::Tensor all_st = torch::cat(st).reshape({-1}), all_ae = torch::cat(ae).reshape({-1});
  q_st_a_ = torch::quantile(all_st, opt_.q_start).item<double>();
  q_st_b_ = torch::quantile(all_st, opt_.q_end).item<double>();
  q_ae_a_ = torch::quantile(all_ae, opt_.q_start).item<double>();
  q_ae_b_ = torch::quantile(all_ae, opt_.q_end).item<double>();
  has_quantiles_ = true;
  if (!(static_cast<float>(q_st_b_) > static_cast<float>(q_st_a_)) ||
      !(static_cast<float>(q_ae_b_) > static_cast<float>(q_ae_a_)))
    log_warn("efficientad: the held-out maps are flat (quantiles st [" + std::to_string(q_st_a_) + ", " +
             std::to_string(q_st_b_) + "], ae [" + std::to_string(q_ae_a_) + ", " + std::to_string(q_ae_b_) +
             "]); the normalisation divides by a floor of 1e-12 instead of zero");
}

Prediction EfficientAd::infer(const torch::Tensor& images01, int64_t height, int64_t width) {
  if (!has_quantiles_) throw Error("efficientad: predict() before fit() (the map quantiles are not set)");
  EfficientAdMaps m = maps(images01);
  // test(): zero padding by 4, bilinear (align_corners False) to the image's size.
  const int64_t p = opt_.map_padding;
  torch::Tensor map = F::pad(m.combined, F::PadFuncOptions({p, p, p, p}));
  map = resize_bilinear(map, height, width).to(torch::kCPU).to(torch::kFloat32);
  map = scoring_.postprocess(map, {{height, width}});
  return {map, scoring_.scores(m.combined.to(torch::kCPU).to(torch::kFloat32), map)};
}

torch::Tensor EfficientAd::penalty_image(const std::vector<std::string>& files, std::mt19937_64& rng) const {
  // penalty_transform: Resize((512, 512)), RandomGrayscale(0.3), CenterCrop(256), as 0..1.
  TransformOptions t;
  t.resize = ImageSize(512);
  t.center_crop = ImageSize(256);
  t.interpolation = "area";
  t.normalize = "none";
  const std::size_t i = std::uniform_int_distribution<std::size_t>(0, files.size() - 1)(rng);
  SampleInfo info;
  info.path = files[i];
  info.split = Split::train;
  torch::Tensor img = Transform(t)(info).image;
  if (uniform01(rng) < opt_.penalty_grayscale) img = pil_grayscale(img);
  return img;
}

namespace {
/// The PDNs and the autoencoder assume 256 x 256 inputs (efficientad.py resizes every image so);
/// other sizes would fail deep inside a convolution.
void require_256(int64_t height, int64_t width) {
  if (height != 256 || width != 256)
    throw ConfigError("efficientad: the networks are built for 256 x 256 inputs (efficientad.py resizes every "
                      "image to 256), got " + std::to_string(height) + " x " + std::to_string(width) +
                      ": set input.resize = 256 and no input.center_crop");
}

// Images streamed one at a time in file order (teacher statistics, quantiles).
EfficientAd::ImageSource stream(FitContext& ctx, const std::vector<SampleInfo>& samples) {
  return [&ctx, samples](const std::function<void(const torch::Tensor&)>& visit) {
    auto l = plain_loader(ctx, samples);
    l->start_epoch(0);
    while (auto b = l->next()) visit(b->images);
  };
}
}  // namespace

void EfficientAd::fit(FitContext& ctx) {
  const ImageSize in = ctx.transforms.center_crop.empty() ? ctx.transforms.resize : ctx.transforms.center_crop;
  if (!in.empty()) require_256(in.height, in.width);
  TrainedMethod::fit(ctx);
}

void EfficientAd::configure_training(TrainSpec& spec, FitContext& ctx) {
  if (!ctx.val.empty()) {
    // A data set's own validation images (MVTec LOCO in the reference).
    train_set_ = ctx.train;
    val_set_ = ctx.val;
  } else {
    const EfficientAdSplit split =
        efficientad_split(static_cast<int64_t>(ctx.train.size()), opt_.validation_fraction, opt_.split_seed);
    train_set_ = pick(ctx.train, split.train);
    val_set_ = pick(ctx.train, split.validation);
  }
  n_train_ = static_cast<int64_t>(train_set_.size());
  n_validation_ = static_cast<int64_t>(val_set_.size());
  log_info("efficientad: " + std::to_string(n_train_) + " training images, " + std::to_string(n_validation_) +
           " held out for the map quantiles");
  stats_ = teacher_statistics(stream(ctx, train_set_));

  std::vector<std::string> penalty_files;
  if (!opt_.penalty_folder.empty()) {
    try {
      penalty_files = list_images(opt_.penalty_folder);
    } catch (const ConfigError& e) {
      throw ConfigError(std::string("method.penalty_folder: ") + e.what());
    }
  }
  spec.step = [this, penalty_files](const Batch& b, std::mt19937_64& rng, int64_t) {
    EfficientAdTrainInput in;
    in.image_st = b.images;
    std::vector<torch::Tensor> jittered, penalty;
    for (int64_t i = 0; i < b.size(); ++i) {
      torch::Tensor x = b.images[i];
      if (opt_.ae_jitter > 0) {
        // transform_ae: RandomChoice of ColorJitter(brightness | contrast | saturation = 0.2).
        const int kind = std::uniform_int_distribution<int>(0, 2)(rng);
        x = pil_color_jitter(x, kind, uniform(rng, 1 - opt_.ae_jitter, 1 + opt_.ae_jitter));
      }
      jittered.push_back(x);
      if (!penalty_files.empty()) penalty.push_back(penalty_image(penalty_files, rng));
    }
    in.image_ae = torch::stack(jittered);
    if (!penalty.empty()) in.image_penalty = torch::stack(penalty);
    return train_step(in).losses;
  };
}

std::optional<FitContext> EfficientAd::training_data(FitContext& ctx) {
  return FitContext{ctx.run, train_set_, {}, {}, ctx.transforms};
}

void EfficientAd::after_training(FitContext& ctx) {
  fit_quantiles(stream(ctx, val_set_));
  log_info("efficientad: quantiles st [" + std::to_string(q_st_a_) + ", " + std::to_string(q_st_b_) + "], ae [" +
           std::to_string(q_ae_a_) + ", " + std::to_string(q_ae_b_) + "]");
}

Prediction EfficientAd::predict(const Batch& batch, const RunContext&) {
  require_256(batch.images.size(2), batch.images.size(3));
  return infer(batch.images, batch.images.size(2), batch.images.size(3));
}

StateDict EfficientAd::save_extra_state() const {
  return {{"teacher_mean", stats_.mean},
          {"teacher_std", stats_.std},
          {"quantiles", torch::tensor({q_st_a_, q_st_b_, q_ae_a_, q_ae_b_}, torch::kFloat64)}};
}

void EfficientAd::load_extra_state(const StateDict& extra, const std::string& source) {
  const torch::Tensor& q = extra.at("quantiles");
  if (q.numel() != 4) throw Error(source + ": 'quantiles' must hold 4 values (st start/end, ae start/end)");
  stats_ = {extra.at("teacher_mean"), extra.at("teacher_std")};
  const auto v = q.to(torch::kCPU, torch::kFloat64).contiguous();
  const double* d = v.data_ptr<double>();
  q_st_a_ = d[0], q_st_b_ = d[1], q_ae_a_ = d[2], q_ae_b_ = d[3];
  has_quantiles_ = true;
}

void EfficientAd::describe(nlohmann::json& j) const {
  j["model_size"] = opt_.model_size;
  j["student_images"] = n_train_;
  j["quantile_images"] = n_validation_;
  j["quantiles"] = {{"st", {q_st_a_, q_st_b_}}, {"ae", {q_ae_a_, q_ae_b_}}};
  j["teacher_weights"] = opt_.teacher_weights;
}

// ---------------------------------------------------------------------------------------------
// Teacher pretraining
// ---------------------------------------------------------------------------------------------

EfficientAdTeacher::Options::Options() {
  // pretraining.py: Adam(lr 1e-4, weight_decay 1e-5), batch 16, 60000 iterations, no schedule.
  trainer.epochs = 1000000;
  trainer.steps = 60000;
  trainer.batch_size = 16;
  trainer.optimizer.kind = "adam";
  trainer.optimizer.lr = 1e-4;
  trainer.optimizer.weight_decay = 1e-5;
  trainer.augment = false;
  embedding.patch_size = 3;
  embedding.layer_dim = 1024;
}

EfficientAdTeacher::EfficientAdTeacher(const Options& o)
    : TrainedMethod("efficientad_teacher"), opt_(o), scoring_(o.postprocess, o.image_score, "efficientad_teacher", false) {
  check_pdn_size(opt_.model_size);
  opt_.embedding.target_dim = opt_.out_channels;
  if (opt_.losses.empty()) opt_.losses = {loss_term("type = 'l2'\nprediction = 'prediction'\ntarget = 'target'")};
  if (!opt_.train_split && opt_.folders.empty())
    throw ConfigError("method.folders: give at least one image folder when method.train_split = false");
  if (opt_.trainer.selection != "last")
    throw ConfigError("method.trainer.selection: efficientad_teacher keeps the last step, got \"" +
                      opt_.trainer.selection + "\"");
}

void EfficientAdTeacher::build_parts(const RunContext& ctx) {
  device_ = ctx.device;
  backbone_ = opt_.backbone.make();
  backbone_->module().to(device_);
  backbone_->module().eval();
  pdn_ = make_part(ctx, "pdn", [this] { return Pdn(opt_.model_size, opt_.out_channels, opt_.pdn_width, true); });
}

torch::Tensor EfficientAdTeacher::embed(const std::map<std::string, torch::Tensor>& taps) const {
  if (!backbone_) throw Error("efficientad_teacher: embed() before build()");
  // FeatureExtractor.embed: PatchCore's patch aggregation, then (N, h, w, C) -> NCHW.
  return aggregate_patches(taps, backbone_->selected_taps(), opt_.embedding).permute({0, 3, 1, 2}).contiguous();
}

torch::Tensor EfficientAdTeacher::embed_images(const torch::Tensor& images01) {
  torch::NoGradGuard ng;
  torch::Tensor x = images01.to(device_);
  const int64_t s = opt_.extractor_size;
  if (x.size(2) != s || x.size(3) != s) x = resize_bilinear(x, s, s);
  return embed(backbone_->forward(backbone_->normalization().apply(x * 255)));
}

TeacherDistillStep EfficientAdTeacher::train_step(const torch::Tensor& embed, const torch::Tensor& pdn_images01) {
  if (!stats_.mean.defined()) throw Error("efficientad_teacher: the feature statistics are not set");
  TeacherDistillStep s;
  s.embed = embed.to(device_);
  s.target = (s.embed - stats_.mean) / stats_.std;
  s.prediction = pdn_->forward(efficientad_normalize(pdn_images01.to(device_)));
  if (s.prediction.sizes() != s.target.sizes())
    throw ConfigError("efficientad_teacher: the PDN gives " + std::to_string(s.prediction.size(2)) + "x" +
                      std::to_string(s.prediction.size(3)) + " maps and the backbone's patch grid is " +
                      std::to_string(s.target.size(2)) + "x" + std::to_string(s.target.size(3)) +
                      "; choose method.extractor_size / method.pdn_size so that they agree (pretraining.py: 512 "
                      "with a stride-8 first tap, and 256)");
  s.losses = evaluate_losses(opt_.losses, {{"prediction", s.prediction}}, {{"target", s.target}});
  return s;
}

void EfficientAdTeacher::configure_training(TrainSpec& spec, FitContext& ctx) {
  std::vector<SampleInfo>& samples = samples_;
  samples.clear();
  if (opt_.train_split) samples = ctx.train;
  for (const auto& folder : opt_.folders) {
    std::vector<std::string> files;
    try {
      files = list_images(folder);
    } catch (const ConfigError& e) {
      throw ConfigError(std::string("method.folders: ") + e.what());
    }
    for (const auto& f : files) {
      SampleInfo info;
      info.path = f;
      info.split = Split::train;
      info.defect_type = "good";
      samples.push_back(info);
    }
  }
  if (samples.empty()) throw Error("efficientad_teacher: no images to distil on");
  log_info("efficientad_teacher: distilling on " + std::to_string(samples.size()) + " images");
  const double gray = opt_.grayscale;
  const int64_t pdn_size = opt_.pdn_size;
  // Both networks see the same (possibly grey) image: the backbone at extractor_size, the PDN at
  // pdn_size (area-averaged, an exact 2 x 2 mean for 512 -> 256).
  auto prepare = [gray, pdn_size](const torch::Tensor& images, std::mt19937_64& rng) {
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < images.size(0); ++i)
      rows.push_back(uniform01(rng) < gray ? pil_grayscale(images[i]) : images[i]);
    torch::Tensor x = torch::stack(rows);
    torch::Tensor small = F::interpolate(
        x, F::InterpolateFuncOptions().size(std::vector<int64_t>{pdn_size, pdn_size}).mode(torch::kArea));
    return std::make_pair(x, small);
  };

  // feature_normalization: the mean over the first K images of a shuffled stream, the variance
  // around it over the next K.
  {
    LoaderOptions lo;
    lo.batch_size = 1;
    lo.shuffle = true;
    lo.drop_last = false;
    lo.augment = false;
    lo.seed = derive_seed(ctx.run.seeds.data_order(), "efficientad_teacher/normalization");
    auto loader = ctx.loader(samples, lo);
    int64_t epoch = 0;
    loader->start_epoch(epoch);
    std::mt19937_64 rng(derive_seed(ctx.run.seeds.augment(), "efficientad_teacher/normalization"));
    const int64_t k = std::min<int64_t>(opt_.normalization_images, static_cast<int64_t>(samples.size()));
    stats_ = channel_statistics([&](int, const std::function<void(const torch::Tensor&)>& visit) {
      for (int64_t i = 0; i < k; ++i) {
        auto b = loader->next();
        if (!b) {
          loader->start_epoch(++epoch);
          b = loader->next();
        }
        visit(embed_images(prepare(b->images, rng).first));
      }
    });
  }

  spec.step = [this, prepare](const Batch& b, std::mt19937_64& rng, int64_t) {
    auto [big, small] = prepare(b.images, rng);
    return train_step(embed_images(big), small).losses;
  };
}

std::optional<FitContext> EfficientAdTeacher::training_data(FitContext& ctx) {
  return FitContext{ctx.run, samples_, {}, {}, ctx.transforms};
}

void EfficientAdTeacher::after_training(FitContext& ctx) {
  pdn_->eval();
  if (!ctx.run.dir.empty()) {
    // The teacher under the reference's keys (0.weight, 3.weight, ...), for method.teacher_weights.
    saved_ = (ctx.run.dir / "teacher.safetensors").string();
    save_checkpoint(*pdn_, saved_,
                    {{"model_size", opt_.model_size}, {"out_channels", std::to_string(opt_.out_channels)},
                     {"pdn_width", std::to_string(opt_.pdn_width)}});
    log_info("efficientad_teacher: teacher written to " + saved_);
  }
}

Prediction EfficientAdTeacher::predict(const Batch& batch, const RunContext&) {
  // The distillation error as a map: channel mean of (normalised features - PDN)^2, upsampled.
  torch::NoGradGuard ng;
  eval_parts();
  const torch::Tensor x = batch.images;
  const torch::Tensor small = F::interpolate(
      x, F::InterpolateFuncOptions().size(std::vector<int64_t>{opt_.pdn_size, opt_.pdn_size}).mode(torch::kArea));
  const TeacherDistillStep s = train_step(embed_images(x), small);
  const torch::Tensor err = channel_mse(s.prediction, s.target);
  const torch::Tensor raw = err.to(torch::kCPU).to(torch::kFloat32);
  torch::Tensor map = resize_bilinear(err, x.size(2), x.size(3));
  map = scoring_.postprocess(map.to(torch::kCPU).to(torch::kFloat32), {{x.size(2), x.size(3)}});
  return {map, scoring_.scores(raw, map)};
}

void EfficientAdTeacher::load_extra_state(const StateDict& extra, const std::string&) {
  stats_ = {extra.at("feature_mean"), extra.at("feature_std")};
}

void EfficientAdTeacher::describe(nlohmann::json& j) const {
  j["model_size"] = opt_.model_size;
  j["teacher_weights"] = saved_;
}

}  // namespace adfw
