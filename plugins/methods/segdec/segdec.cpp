#include "methods/segdec/segdec.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "adfw/core/error.hpp"
#include "adfw/core/log.hpp"
#include "adfw/core/rng.hpp"

namespace adfw {

namespace segdec_detail {

/// models.py FeatureNorm: scale * (x - mean) / sqrt(std + eps) + bias per channel over H x W, with
/// the unbiased std and the square root of the std (not of the variance).
class FeatureNormImpl : public torch::nn::Module {
 public:
  explicit FeatureNormImpl(int64_t channels) {
    scale = register_parameter("scale", torch::ones({1, channels, 1, 1}));
    // seg_mask's FeatureNorm is built with include_bias=False, yet its zero bias is an nn.Parameter
    // that trains like the others.
    bias = register_parameter("bias", torch::zeros({1, channels, 1, 1}));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const torch::Tensor sd = x.std({2, 3}, /*unbiased=*/true, /*keepdim=*/true);
    const torch::Tensor mean = x.mean({2, 3}, /*keepdim=*/true);
    return scale * ((x - mean) / (sd + 1e-3).sqrt()) + bias;
  }
  torch::Tensor scale, bias;
};
TORCH_MODULE(FeatureNorm);

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t pad) {
  torch::nn::Conv2d c(torch::nn::Conv2dOptions(in, out, k).padding(pad).bias(false));
  torch::NoGradGuard ng;
  torch::nn::init::xavier_normal_(c->weight);  // models.py Conv2d_init
  return c;
}

/// models.py _conv_block: conv (no bias), FeatureNorm, ReLU, under the Sequential's indices 0, 1, 2
/// (a module of its own: LibTorch's Sequential cannot hold a Sequential).
class ConvBlockImpl : public torch::nn::Module {
 public:
  ConvBlockImpl(int64_t in, int64_t out, int64_t k, int64_t pad)
      : conv_(register_module("0", conv(in, out, k, pad))), norm_(register_module("1", FeatureNorm(out))) {}
  torch::Tensor forward(const torch::Tensor& x) { return torch::relu(norm_->forward(conv_->forward(x))); }

 private:
  torch::nn::Conv2d conv_;
  FeatureNorm norm_;
};
TORCH_MODULE(ConvBlock);

ConvBlock block(int64_t in, int64_t out, int64_t k, int64_t pad) { return ConvBlock(in, out, k, pad); }

torch::nn::MaxPool2d pool() { return torch::nn::MaxPool2d(torch::nn::MaxPool2dOptions(2)); }

/// models.py GradientMultiplyLayer: identity forward, gradient times m backward.
struct GradientMultiply : public torch::autograd::Function<GradientMultiply> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, double m) {
    ctx->saved_data["m"] = m;
    return x.clone();
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    return {grad[0] * ctx->saved_data["m"].toDouble(), torch::Tensor()};
  }
};

/// The global max as the reference takes it: over the last axis, then the one before (the
/// gradient goes to the same element as there).
torch::Tensor global_max(const torch::Tensor& x) {
  return std::get<0>(std::get<0>(x.max(-1, true)).max(-2, true)).reshape({x.size(0), -1});
}

class SegDecNetImpl : public torch::nn::Module {
 public:
  explicit SegDecNetImpl(const SegDecNetOptions& o) {
    if (o.widths.size() != 3)
      throw ConfigError("method.network.widths: expected 3 channel counts (SegDecNet: [32, 64, 1024]), got " +
                        std::to_string(o.widths.size()));
    const int64_t a = o.widths[0], b = o.widths[1], c = o.widths[2];
    // models.py: a second 32-channel block after the first is commented out in the reference and
    // absent from its checkpoints, so the volume's indices are 0, 2-4, 6-9, 11.
    volume = register_module(
        "volume", torch::nn::Sequential(block(o.in_channels, a, 5, 2), pool(), block(a, b, 5, 2), block(b, b, 5, 2),
                                        block(b, b, 5, 2), pool(), block(b, b, 5, 2), block(b, b, 5, 2),
                                        block(b, b, 5, 2), block(b, b, 5, 2), pool(), block(b, c, 15, 7)));
    seg_mask = register_module("seg_mask", torch::nn::Sequential(conv(c, 1, 1, 0), FeatureNorm(1)));
    extractor = register_module("extractor", torch::nn::Sequential(pool(), block(c + 1, 8, 5, 2), pool(),
                                                                   block(8, 16, 5, 2), pool(), block(16, 32, 5, 2)));
    fc = register_module("fc", torch::nn::Linear(66, 1));
  }
  SegDecNet::Outputs forward(const torch::Tensor& x, double m) {
    if (x.dim() != 4 || x.size(2) % 8 != 0 || x.size(3) % 8 != 0)
      throw Error("segdec: input height and width must be multiples of 8 (got " + std::to_string(x.size(-2)) + "x" +
                  std::to_string(x.size(-1)) + "); set input.resize");
    const torch::Tensor vol = volume->forward(x);
    const torch::Tensor seg = seg_mask->forward(vol);
    torch::Tensor cat = GradientMultiply::apply(torch::cat({vol, seg}, 1), m);
    const torch::Tensor f = extractor->forward(cat);
    const torch::Tensor max_f = global_max(f);
    const torch::Tensor avg_f = f.mean({-1, -2}).reshape({f.size(0), -1});
    const torch::Tensor max_s = GradientMultiply::apply(global_max(seg), m);
    const torch::Tensor avg_s = GradientMultiply::apply(seg.mean({-1, -2}).reshape({seg.size(0), -1}), m);
    return {fc->forward(torch::cat({max_f, avg_f, max_s, avg_s}, 1)), seg};
  }
  torch::nn::Sequential volume{nullptr}, seg_mask{nullptr}, extractor{nullptr};
  torch::nn::Linear fc{nullptr};
};

// ---- labels ---------------------------------------------------------------------------------

/// Squared Euclidean distance transform of one line (Felzenszwalb & Huttenlocher 2012).
void edt_1d(const double* f, double* d, int n, std::vector<int>& v, std::vector<double>& z) {
  const double inf = std::numeric_limits<double>::infinity();
  int k = 0;
  int first = 0;
  while (first < n && f[first] == inf) ++first;
  if (first == n) {
    for (int q = 0; q < n; ++q) d[q] = inf;
    return;
  }
  v[0] = first;
  z[0] = -inf;
  z[1] = inf;
  for (int q = first + 1; q < n; ++q) {
    if (f[q] == inf) continue;  // no parabola for pixels without a finite distance yet
    double s = ((f[q] + double(q) * q) - (f[v[k]] + double(v[k]) * v[k])) / (2.0 * q - 2.0 * v[k]);
    while (s <= z[k]) {  // z[0] = -inf ends the loop
      --k;
      s = ((f[q] + double(q) * q) - (f[v[k]] + double(v[k]) * v[k])) / (2.0 * q - 2.0 * v[k]);
    }
    ++k;
    v[k] = q;
    z[k] = s;
    z[k + 1] = inf;
  }
  k = 0;
  for (int q = 0; q < n; ++q) {
    while (z[k + 1] < q) ++k;
    d[q] = (q - v[k]) * double(q - v[k]) + f[v[k]];
  }
}

/// Exact Euclidean distance of every `inside` pixel to the nearest pixel that is not, as
/// scipy.ndimage.distance_transform_edt (pixels beyond the border do not count as outside).
std::vector<double> edt(const std::vector<char>& inside, int h, int w) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> g(static_cast<std::size_t>(h) * w);
  const int n = std::max(h, w);
  std::vector<double> f(n), d(n), z(n + 1);
  std::vector<int> v(n);
  for (int x = 0; x < w; ++x) {
    for (int y = 0; y < h; ++y) f[y] = inside[y * w + x] ? inf : 0.0;
    edt_1d(f.data(), d.data(), h, v, z);
    for (int y = 0; y < h; ++y) g[y * w + x] = d[y];
  }
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) f[x] = g[y * w + x];
    edt_1d(f.data(), d.data(), w, v, z);
    for (int x = 0; x < w; ++x) g[y * w + x] = std::sqrt(d[x]);
  }
  return g;
}

}  // namespace segdec_detail

// =============================================================================================

SegDecNet::SegDecNet(const SegDecNetOptions& o) : net_(std::make_shared<segdec_detail::SegDecNetImpl>(o)) {}

SegDecNet::Outputs SegDecNet::forward(const torch::Tensor& images, double m) { return net_->forward(images, m); }

std::shared_ptr<torch::nn::Module> SegDecNet::module() { return net_; }

torch::Tensor segdec_label(const torch::Tensor& gt_u8, int64_t dilate, int64_t height, int64_t width) {
  if (gt_u8.dim() != 2 || gt_u8.scalar_type() != torch::kUInt8)
    throw Error("segdec_label: expected a (H,W) uint8 label");
  torch::Tensor src = gt_u8.contiguous();
  cv::Mat lbl(static_cast<int>(src.size(0)), static_cast<int>(src.size(1)), CV_8U, src.data_ptr<uint8_t>());
  cv::Mat dil = lbl.clone();
  if (dilate > 1) cv::dilate(lbl, dil, cv::Mat::ones(static_cast<int>(dilate), static_cast<int>(dilate), CV_8U));
  cv::Mat resized;
  cv::resize(dil, resized, cv::Size(static_cast<int>(width), static_cast<int>(height)), 0, 0, cv::INTER_LINEAR);
  torch::Tensor out = torch::empty({height, width}, torch::kFloat32);
  float* o = out.data_ptr<float>();
  for (int y = 0; y < resized.rows; ++y)
    for (int x = 0; x < resized.cols; ++x)
      o[y * resized.cols + x] = static_cast<float>(resized.at<uint8_t>(y, x) / 255.0);  // float64 divide, as numpy
  return out;
}

torch::Tensor segdec_distance_weights(const torch::Tensor& mask, double max_val, double p) {
  if (mask.dim() != 2) throw Error("segdec_distance_weights: expected a (H,W) mask");
  const torch::Tensor m = mask.to(torch::kFloat32).contiguous();
  const int h = static_cast<int>(m.size(0)), w = static_cast<int>(m.size(1));
  const float* mp = m.data_ptr<float>();
  // (mask * 255).astype(uint8): truncation, so a faint border pixel may drop out of every component.
  cv::Mat u8(h, w, CV_8U);
  for (int i = 0; i < h * w; ++i) u8.data[i] = static_cast<uint8_t>(static_cast<double>(mp[i]) * 255.0);
  cv::Mat labels;
  const int n = cv::connectedComponents(u8, labels, 8, CV_32S);
  std::vector<double> total(static_cast<std::size_t>(h) * w, 0.0);
  std::vector<char> inside(total.size());
  for (int c = 1; c < n; ++c) {
    for (int i = 0; i < h * w; ++i) inside[i] = labels.ptr<int>()[i] == c;
    std::vector<double> d = segdec_detail::edt(inside, h, w);
    double mx = 0;
    for (int i = 0; i < h * w; ++i)
      if (inside[i] && std::isfinite(d[i])) mx = std::max(mx, d[i]);
    if (mx <= 0) continue;
    for (int i = 0; i < h * w; ++i)
      if (inside[i]) total[i] += std::pow(d[i] / mx, p) * max_val;
  }
  torch::Tensor out = torch::empty({h, w}, torch::kFloat32);
  float* o = out.data_ptr<float>();
  for (int i = 0; i < h * w; ++i) o[i] = mp[i] == 0.0f ? 1.0f : static_cast<float>(total[i]);
  return out;
}

torch::Tensor segdec_downsize(const torch::Tensor& x, int64_t f) {
  torch::Tensor t = x.to(torch::kFloat32);
  while (t.dim() < 4) t = t.unsqueeze(0);
  t = torch::reflection_pad2d(t, {f, f, f, f});
  t = torch::avg_pool2d(t, {2 * f + 1, 2 * f + 1}, {f, f});
  return t[0];
}

// =============================================================================================

namespace {

/// The network's input size for an image of (h, w): sides rounded up to multiples of 8, at least
/// 128 high and 64 wide, so the extractor's 1/64 map keeps two values for FeatureNorm's unbiased
/// std (the reference rejects other sizes; smaller images are zero-padded at the bottom and right).
std::pair<int64_t, int64_t> network_size(int64_t h, int64_t w) {
  auto up8 = [](int64_t v) { return (v + 7) / 8 * 8; };
  return {std::max<int64_t>(up8(h), 128), std::max<int64_t>(up8(w), 64)};
}

torch::Tensor pad_to(const torch::Tensor& x, int64_t h, int64_t w) {
  if (x.size(-2) == h && x.size(-1) == w) return x;
  return torch::constant_pad_nd(x, {0, w - x.size(-1), 0, h - x.size(-2)}, 0.0);
}

}  // namespace

SegDec::Options::Options() {
  // EXPERIMENTS_COMIND.sh, KSDD2 row: 50 epochs, lr 0.01, batch 1; end2end.py _get_optimizer: SGD
  // without momentum; no augmentation; the final weights are evaluated (USE_BEST_MODEL false).
  trainer.epochs = 50;
  trainer.batch_size = 1;
  trainer.optimizer.kind = "sgd";
  trainer.optimizer.lr = 0.01;
  trainer.optimizer.momentum = 0.0;
  trainer.augment = false;
  trainer.drop_last = false;
}

SegDec::SegDec(const Options& o) : TrainedMethod("segdec"), opt_(o), scoring_(o.postprocess, o.image_score, "segdec", true) {}

void SegDec::build_parts(const RunContext& ctx) {
  device_ = ctx.device;
  // Saved as "network.*"; the trainer's checkpoints and parameter group call it "segdecnet".
  net_ = make_part(ctx, "network", [this] { return std::make_unique<SegDecNet>(opt_.network); },
                   PartRole{true, "segdecnet"});
}

SegDecNet& SegDec::network() {
  if (!net_) throw Error("segdec: no network yet (call build() or fit() first)");
  return *net_;
}

torch::Tensor SegDec::network_input(const torch::Tensor& images) const {
  return opt_.bgr && images.size(1) == 3 ? images.flip({1}) : images;
}

SegDecNet::Outputs SegDec::forward(const torch::Tensor& images) {
  const auto [h, w] = network_size(images.size(2), images.size(3));
  return network().forward(pad_to(network_input(images.to(device_)), h, w), opt_.dec_grad_multiplier);
}

std::pair<double, double> SegDec::loss_weights(int64_t epoch) const {
  if (!opt_.dynamic_balancing) return {1.0, opt_.delta};
  const double e = static_cast<double>(epoch) / static_cast<double>(std::max<int64_t>(1, opt_.trainer.epochs));
  return {1.0 - e, opt_.delta * e};
}

SegDec::Targets SegDec::targets(const torch::Tensor& gt_u8, bool segmented, int64_t height, int64_t width) const {
  Targets t;
  const bool positive = gt_u8.defined() && gt_u8.max().item<int>() > 0;
  const int64_t h = height, w = width;
  std::tie(height, width) = network_size(h, w);
  if (positive) {
    const torch::Tensor label = pad_to(segdec_label(gt_u8, opt_.dilate, h, w), height, width);
    t.seg_mask = segdec_downsize(label);
    t.seg_loss_mask = opt_.weighted_seg_loss
                          ? segdec_downsize(segdec_distance_weights(label, opt_.weight_max, opt_.weight_p))
                          : torch::ones_like(t.seg_mask);
    // end2end.py: the decision target is the max of the soft, downsized mask, not 1.
    t.is_pos = t.seg_mask.max().reshape({1});
  } else {
    t.seg_mask = torch::zeros({1, height / 8, width / 8});
    t.seg_loss_mask = torch::ones({1, height / 8, width / 8});
    t.is_pos = torch::zeros({1});
  }
  t.is_segmented = torch::full({1}, segmented ? 1.0f : 0.0f);
  return t;
}

SampleHook SegDec::target_hook() const {
  return [this](Sample& s, std::mt19937_64&) {
    const int64_t h = s.image.size(1), w = s.image.size(2);
    Targets t;
    if (s.info.supervision == Supervision::pixel_mask) {
      // The label at the file's resolution: dilated before resizing, as read_label_resize.
      cv::Mat m = cv::imread(s.info.mask_path, cv::IMREAD_GRAYSCALE);
      if (m.empty()) throw Error("cannot decode mask " + s.info.mask_path);
      const torch::Tensor gt = torch::from_blob(m.data, {m.rows, m.cols}, torch::kUInt8).clone();
      t = targets(gt, true, h, w);
    } else {
      t = targets(torch::Tensor(), s.info.supervision != Supervision::image_label, h, w);
      // An image-labelled anomaly: its mask is withheld, so the decision target is the label.
      if (s.info.label != 0) t.is_pos.fill_(1.0);
    }
    s.extras["seg_mask"] = t.seg_mask;
    s.extras["seg_loss_mask"] = t.seg_loss_mask;
    s.extras["is_pos"] = t.is_pos;
    s.extras["is_segmented"] = t.is_segmented;
  };
}

SegDec::Targets SegDec::batch_targets(const Batch& b, const torch::Device& device) {
  auto get = [&](const char* name) {
    auto it = b.extras.find(name);
    if (it == b.extras.end()) throw Error(std::string("segdec: the batch has no '") + name + "' (the target hook did not run)");
    return it->second.to(device);
  };
  return {get("seg_mask"), get("seg_loss_mask"), get("is_pos").reshape({-1}), get("is_segmented").reshape({-1})};
}

SegDec::Step SegDec::step(const SegDecNet::Outputs& out, const Targets& t, double w_seg, double w_dec) const {
  namespace F = torch::nn::functional;
  const int64_t n = out.decision.size(0);
  Step s;
  s.seg_bce = F::binary_cross_entropy_with_logits(out.seg, t.seg_mask,
                                                  F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
  const torch::Tensor weighted = opt_.weighted_seg_loss ? s.seg_bce * t.seg_loss_mask : s.seg_bce;
  s.loss_seg = weighted.reshape({n, -1}).mean(1);
  s.loss_dec = F::binary_cross_entropy_with_logits(out.decision.reshape({n}), t.is_pos.to(out.decision.dtype()),
                                                   F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone));
  // Image-labelled positives get only the decision term (end2end.py training_iteration).
  const torch::Tensor segmented = t.is_segmented.to(out.seg.dtype());
  s.loss = w_seg * s.loss_seg * segmented + w_dec * s.loss_dec;
  s.values.total = s.loss.sum();
  const double n_seg = segmented.sum().item<double>();
  s.values.terms = {{"bce:segmentation", n_seg > 0 ? (s.loss_seg * segmented).sum().item<double>() / n_seg : 0.0},
                    {"bce:decision", s.loss_dec.mean().item<double>()}};
  return s;
}

void SegDec::fit(FitContext& ctx) {
  if (opt_.trainer.augment)
    throw ConfigError("method.trainer.augment: segdec trains without augmentation (its masks are re-read at their "
                      "own resolution and dilated before resizing); set it to false");
  if (!ctx.transforms.center_crop.empty())
    throw ConfigError("input.center_crop: segdec resizes without cropping (its masks are re-read and resized whole); "
                      "remove the crop");
  std::size_t positives = 0;
  for (const auto& s : ctx.train) positives += s.label != 0;
  if (positives == 0)
    log_warn("segdec: the training split has no anomalous images, so the networks only see normal ones and the "
             "decision head learns a constant (give it anomalies: data.n_pixel_labelled / n_image_labelled for "
             "KSDD2, or a split made with `adfw data split`)");
  TrainedMethod::fit(ctx);
}

void SegDec::configure_training(TrainSpec& spec, FitContext&) {
  spec.hook = target_hook();
  spec.sampler = opt_.frequency_sampling ? "balanced_frequency" : "balanced";
  spec.on_epoch = [this](int64_t epoch) { set_epoch(epoch); };
  spec.step = [this](const Batch& b, std::mt19937_64&, int64_t at_step) {
    // Validation (at_step < 0, trainer.selection = "val") compares epochs, so it weighs both terms
    // the same way every epoch (1 and delta) instead of following the balancing schedule.
    const auto [w_seg, w_dec] = at_step < 0 ? std::make_pair(1.0, opt_.delta) : loss_weights(epoch_);
    return step(forward(b.images), batch_targets(b, device_), w_seg, w_dec).values;
  };
}

Prediction SegDec::predict(const Batch& batch, const RunContext&) {
  require_built("predict()");
  torch::NoGradGuard ng;
  eval_parts();  // no batch statistics: eval equals train mode (end2end.py eval_model)
  const SegDecNet::Outputs out = forward(batch.images);
  Prediction p;
  const torch::Tensor own = torch::sigmoid(out.decision).reshape({-1}).to(torch::kCPU).to(torch::kFloat32);
  // The map is the sigmoid of the segmentation logits resized to the input (the reference's plots:
  // cv2.resize INTER_LINEAR, half-pixel centres as align_corners = false).
  const int64_t h = batch.images.size(2), w = batch.images.size(3);
  const auto [ph, pw] = network_size(h, w);
  p.maps = torch::nn::functional::interpolate(torch::sigmoid(out.seg), torch::nn::functional::InterpolateFuncOptions()
                                                                           .size(std::vector<int64_t>{ph, pw})
                                                                           .mode(torch::kBilinear)
                                                                           .align_corners(false))
               .slice(2, 0, h)
               .slice(3, 0, w)
               .contiguous()
               .to(torch::kCPU)
               .to(torch::kFloat32);
  p.maps = scoring_.postprocess(p.maps, {{h, w}});
  p.scores = scoring_.scores(torch::sigmoid(out.seg).to(torch::kCPU).to(torch::kFloat32), p.maps, own);
  return p;
}

void SegDec::describe(nlohmann::json& j) const {
  j["dec_grad_multiplier"] = opt_.dec_grad_multiplier;
  j["dynamic_balancing"] = opt_.dynamic_balancing;
  j["frequency_sampling"] = opt_.frequency_sampling;
}

}  // namespace adfw
