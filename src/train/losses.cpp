#include "adfw/train/losses.hpp"

#include <cmath>
#include <sstream>
#include <vector>

#include "adfw/core/error.hpp"

namespace adfw {
namespace {

namespace F = torch::nn::functional;

std::string shape_str(const torch::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

void require_defined(const char* loss, const torch::Tensor& p, const torch::Tensor& t) {
  if (!p.defined() || !t.defined())
    throw Error(std::string(loss) + ": the " + (p.defined() ? "target" : "prediction") + " tensor is empty (undefined)");
}

void require_same_shape(const char* loss, const torch::Tensor& p, const torch::Tensor& t) {
  require_defined(loss, p, t);
  if (p.sizes() != t.sizes())
    throw Error(std::string(loss) + ": prediction " + shape_str(p) + " and target " + shape_str(t) +
                " must have the same shape");
}

void require_images(const char* what, const torch::Tensor& a, const torch::Tensor& b) {
  require_same_shape(what, a, b);
  if (a.dim() != 4) throw Error(std::string(what) + ": expected images (N,C,H,W), got shape " + shape_str(a));
}

/// The target as the prediction's dtype and device (masks arrive as uint8, bool or int64).
torch::Tensor as_prediction(const torch::Tensor& t, const torch::Tensor& p) {
  return t.to(p.device(), p.scalar_type());
}

/// (1 - p_t)^gamma. gamma == 0 skips the factor (pow's gradient would be 0 * inf at p_t = 1);
/// for 0 < gamma < 1 the base is floored so the gradient stays finite.
torch::Tensor modulating(const torch::Tensor& one_minus_pt, double gamma) {
  if (gamma == 0) return torch::ones_like(one_minus_pt);
  const double floor = gamma < 1 ? 1e-12 : 0.0;
  return one_minus_pt.clamp_min(floor).pow(gamma);
}

/// 1-D Gaussian window of odd size `n`, normalised to sum 1 (DRAEM loss.py `gaussian`).
torch::Tensor gaussian_1d(int n, double sigma, const torch::TensorOptions& opts) {
  std::vector<double> g(static_cast<std::size_t>(n));
  double sum = 0;
  for (int x = 0; x < n; ++x) {
    const double d = x - n / 2;
    g[static_cast<std::size_t>(x)] = std::exp(-d * d / (2 * sigma * sigma));
    sum += g[static_cast<std::size_t>(x)];
  }
  for (double& v : g) v /= sum;
  return torch::tensor(g, torch::kFloat64).to(opts);
}

// --- MSGMS parts (RIAD; plutoyuxie/RIAD losses/gms_loss.py) ---

constexpr double kGmsC = 0.0026;

/// 3x3 median with zero padding (kornia MedianBlur((3, 3))). (N,1,H,W) -> (N,1,H,W).
torch::Tensor median3(const torch::Tensor& x) {
  const torch::Tensor cols = F::unfold(x, F::UnfoldFuncOptions({3, 3}).padding(1));  // (N, 9, H*W)
  return std::get<0>(cols.median(1)).view({x.size(0), 1, x.size(2), x.size(3)});
}

/// Prewitt gradient magnitude without padding. (N,1,H,W) -> (N,1,H-2,W-2).
torch::Tensor prewitt_magnitude(const torch::Tensor& x) {
  const torch::Tensor k = torch::tensor({-1.0, 0.0, 1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 1.0,  // Gx
                                         1.0, 1.0, 1.0, 0.0, 0.0, 0.0, -1.0, -1.0, -1.0},  // Gy
                                        torch::kFloat64)
                              .div(3.0)
                              .view({2, 1, 3, 3})
                              .to(x.options());
  const torch::Tensor g = F::conv2d(x, k);
  // Floor of (1e-6)^2 so sqrt has a finite gradient where the image is flat.
  return g.pow(2).sum(1, true).clamp_min(1e-12).sqrt();
}

/// GMS of two grey images at one scale: (N,1,h-2,w-2).
torch::Tensor gms(const torch::Tensor& ga, const torch::Tensor& gb) {
  const torch::Tensor a = prewitt_magnitude(median3(ga));
  const torch::Tensor b = prewitt_magnitude(median3(gb));
  return (2 * a * b + kGmsC) / (a.pow(2) + b.pow(2) + kGmsC);
}

torch::Tensor half(const torch::Tensor& x) { return F::avg_pool2d(x, F::AvgPool2dFuncOptions(2).stride(2)); }

void check_scales(const torch::Tensor& a, int scales) {
  if (scales < 1) throw Error("msgms: scales must be >= 1, got " + std::to_string(scales));
  int64_t h = a.size(2), w = a.size(3);
  for (int s = 1; s < scales; ++s) h /= 2, w /= 2;
  if (h < 3 || w < 3)
    throw Error("msgms: images of shape " + shape_str(a) + " are too small for " + std::to_string(scales) +
                " scales (the smallest scale must keep at least 3 x 3 pixels)");
}

}  // namespace

torch::Tensor weighted_mean(const torch::Tensor& loss, const torch::Tensor& weight) {
  if (!weight.defined()) return loss.mean();
  torch::Tensor w;
  try {
    w = weight.to(loss.device(), loss.scalar_type()).expand(loss.sizes());
  } catch (const c10::Error&) {
    throw Error("weights of shape " + shape_str(weight) + " do not broadcast to the loss's shape " + shape_str(loss));
  }
  const torch::Tensor sum_w = w.sum();
  const torch::Tensor num = (w * loss).sum();
  // Both branches are computed; where() routes the gradient, and the clamp keeps the unused
  // division finite when every weight is zero.
  const double tiny = loss.scalar_type() == torch::kFloat64 ? 1e-300 : 1e-30;
  return torch::where(sum_w > 0, num / sum_w.clamp_min(tiny), (loss * 0).sum());
}

torch::Tensor ssim_map(const torch::Tensor& a, const torch::Tensor& b, int window, double sigma, double data_range) {
  require_images("ssim", a, b);
  if (window < 1 || window % 2 == 0) throw Error("ssim: the window must be odd and positive, got " + std::to_string(window));
  if (!(sigma > 0)) throw Error("ssim: sigma must be > 0");
  const torch::Tensor y = as_prediction(b, a);
  double L = data_range;
  if (L <= 0) {  // DRAEM loss.py ssim(val_range=None), decided on the first image
    const double mx = a.max().item<double>(), mn = a.min().item<double>();
    L = (mx > 128 ? 255.0 : 1.0) - (mn < -0.5 ? -1.0 : 0.0);
  }
  const double c1 = (0.01 * L) * (0.01 * L), c2 = (0.03 * L) * (0.03 * L);
  const int64_t C = a.size(1);
  const torch::Tensor g = gaussian_1d(window, sigma, a.options());
  const torch::Tensor k2 = torch::outer(g, g).view({1, 1, window, window}).expand({5 * C, 1, window, window});
  // One grouped convolution for the five local statistics.
  const torch::Tensor stats =
      F::conv2d(torch::cat({a, y, a * a, y * y, a * y}, 1), k2.contiguous(),
                F::Conv2dFuncOptions().padding(window / 2).groups(5 * C));
  const auto parts = stats.chunk(5, 1);
  const torch::Tensor& mu1 = parts[0];
  const torch::Tensor& mu2 = parts[1];
  const torch::Tensor mu11 = mu1 * mu1, mu22 = mu2 * mu2, mu12 = mu1 * mu2;
  const torch::Tensor s11 = parts[2] - mu11, s22 = parts[3] - mu22, s12 = parts[4] - mu12;
  const torch::Tensor map = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu11 + mu22 + c1) * (s11 + s22 + c2));
  return map.mean(1, true);
}

torch::Tensor msgms_map(const torch::Tensor& a, const torch::Tensor& b, int scales) {
  require_images("msgms", a, b);
  check_scales(a, scales);
  torch::Tensor ga = a.mean(1, true), gb = as_prediction(b, a).mean(1, true);
  const std::vector<int64_t> size{a.size(2), a.size(3)};
  // plutoyuxie/RIAD losses/gms_loss.py MSGMS_Score.forward: the upsampled GMS maps are summed
  // and the map is (1 - sum) / 4, not the mean of 1 - GMS (which is larger by 3/4 everywhere).
  torch::Tensor total;
  for (int s = 0; s < scales; ++s) {
    if (s > 0) ga = half(ga), gb = half(gb);
    const torch::Tensor up = F::interpolate(
        gms(ga, gb), F::InterpolateFuncOptions().size(size).mode(torch::kBilinear).align_corners(false));
    total = total.defined() ? total + up : up;
  }
  return (1 - total) / scales;
}

// --- element-wise losses ---

torch::Tensor L1Loss::forward(const torch::Tensor& p, const torch::Tensor& t, const torch::Tensor& w) const {
  require_same_shape("l1", p, t);
  return weighted_mean((p - as_prediction(t, p)).abs(), w);
}

torch::Tensor L2Loss::forward(const torch::Tensor& p, const torch::Tensor& t, const torch::Tensor& w) const {
  require_same_shape("l2", p, t);
  return weighted_mean((p - as_prediction(t, p)).pow(2), w);
}

torch::Tensor SmoothL1Loss::forward(const torch::Tensor& p, const torch::Tensor& t, const torch::Tensor& w) const {
  require_same_shape("smooth_l1", p, t);
  const torch::Tensor d = (p - as_prediction(t, p)).abs();
  const double beta = options_.beta;
  if (beta == 0) return weighted_mean(d, w);
  return weighted_mean(torch::where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta), w);
}

torch::Tensor BCELoss::forward(const torch::Tensor& p, const torch::Tensor& t, const torch::Tensor& w) const {
  require_same_shape("bce", p, t);
  const torch::Tensor y = as_prediction(t, p);
  const torch::Tensor l = options_.input == "logits"
                              ? torch::binary_cross_entropy_with_logits(p, y, {}, {}, at::Reduction::None)
                              : torch::binary_cross_entropy(p, y, {}, at::Reduction::None);
  return weighted_mean(l, w);
}

// --- focal ---

FocalLoss::FocalLoss(const Options& options) : options_(options) {
  if (options_.smooth > 0 && options_.input != "softmax")
    throw ConfigError("focal: smooth = " + std::to_string(options_.smooth) +
                      " applies only to input = \"softmax\" (DRAEM's FocalLoss); set smooth = 0 or input = \"softmax\"");
}

torch::Tensor FocalLoss::elementwise(const torch::Tensor& p, const torch::Tensor& t) const {
  const double gamma = options_.gamma, alpha = options_.alpha;
  if (options_.input != "softmax") {
    require_same_shape("focal", p, t);
    const torch::Tensor y = as_prediction(t, p);
    torch::Tensor ce, prob;
    if (options_.input == "logits") {
      ce = torch::binary_cross_entropy_with_logits(p, y, {}, {}, at::Reduction::None);
      prob = torch::sigmoid(p);
    } else {
      ce = torch::binary_cross_entropy(p, y, {}, at::Reduction::None);
      prob = p;
    }
    const torch::Tensor pt = prob * y + (1 - prob) * (1 - y);
    torch::Tensor l = ce * modulating(1 - pt, gamma);
    if (alpha >= 0) l = l * (alpha * y + (1 - alpha) * (1 - y));
    return l;
  }
  // Softmax over K classes (DRAEM loss.py FocalLoss applied to softmax(logits)).
  require_defined("focal", p, t);
  bool ok = p.dim() >= 2 && t.dim() == p.dim() && t.size(1) == 1 && t.size(0) == p.size(0);
  for (int64_t d = 2; ok && d < p.dim(); ++d) ok = t.size(d) == p.size(d);
  if (!ok)
    throw Error("focal (input = \"softmax\"): prediction " + shape_str(p) + " must be (N,K,...) logits and target " +
                shape_str(t) + " (N,1,...) class indices with the same N and spatial size");
  const int64_t K = p.size(1);
  if (K < 2) throw Error("focal (input = \"softmax\"): the prediction needs at least 2 classes, got shape " + shape_str(p));
  // The integer part, as the reference's target.long().
  const torch::Tensor idx = t.to(p.device()).to(torch::kLong);
  const int64_t lo = idx.min().item<int64_t>(), hi = idx.max().item<int64_t>();
  if (lo < 0 || hi >= K)
    throw Error("focal (input = \"softmax\"): target class indices must lie in [0, " + std::to_string(K - 1) +
                "], found " + std::to_string(lo) + " .. " + std::to_string(hi));
  torch::Tensor logpt, pt;
  const double s = options_.smooth;
  if (s == 0) {
    logpt = torch::log_softmax(p, 1).gather(1, idx);
    pt = logpt.exp();
  } else {
    const torch::Tensor prob = torch::softmax(p, 1);
    const torch::Tensor onehot =
        torch::zeros_like(prob).scatter_(1, idx, 1.0).clamp(s / static_cast<double>(K - 1), 1.0 - s);
    pt = (onehot * prob).sum(1, true) + s;
    logpt = pt.log();
  }
  torch::Tensor l = -modulating(1 - pt, gamma) * logpt;
  if (alpha >= 0) l = l * torch::where(idx > 0, torch::full_like(l, alpha), torch::full_like(l, 1 - alpha));
  return l;
}

torch::Tensor FocalLoss::forward(const torch::Tensor& p, const torch::Tensor& t, const torch::Tensor& w) const {
  return weighted_mean(elementwise(p, t), w);
}

// --- image similarity ---

SSIMLoss::SSIMLoss(const Options& options) : options_(options) {
  if (options_.window < 1 || options_.window % 2 == 0)
    throw ConfigError("ssim: window must be an odd number of pixels, got " + std::to_string(options_.window));
}

torch::Tensor SSIMLoss::forward(const torch::Tensor& p, const torch::Tensor& t, const torch::Tensor& w) const {
  return weighted_mean(1 - ssim_map(p, t, options_.window, options_.sigma, options_.data_range), w);
}

torch::Tensor MSGMSLoss::forward(const torch::Tensor& p, const torch::Tensor& t, const torch::Tensor& w) const {
  require_images("msgms", p, t);
  check_scales(p, options_.scales);
  torch::Tensor ga = p.mean(1, true), gb = as_prediction(t, p).mean(1, true);
  // Per-pixel weights follow the images down the pyramid; per-sample ones broadcast as they are.
  const bool pixel_weights = w.defined() && w.dim() == 4 && (w.size(2) > 1 || w.size(3) > 1);
  torch::Tensor ws = pixel_weights ? w.to(p.device(), p.scalar_type()) : w;
  torch::Tensor total;
  for (int s = 0; s < options_.scales; ++s) {
    if (s > 0) {
      ga = half(ga), gb = half(gb);
      if (pixel_weights) ws = half(ws);
    }
    const torch::Tensor d = 1 - gms(ga, gb);
    torch::Tensor wd = ws;
    if (pixel_weights) {
      if (ws.size(2) != ga.size(2) || ws.size(3) != ga.size(3))
        throw Error("msgms: per-pixel weights " + shape_str(w) + " must match the images' size " + shape_str(p));
      wd = ws.narrow(2, 1, d.size(2)).narrow(3, 1, d.size(3));
    }
    const torch::Tensor v = weighted_mean(d, wd);
    total = total.defined() ? total + v : v;
  }
  return total / options_.scales;
}

// --- margin loss ---

torch::Tensor TruncatedL1Loss::forward(const torch::Tensor& p, const torch::Tensor& t, const torch::Tensor& w) const {
  require_same_shape("truncated_l1", p, t);
  const torch::Tensor y = as_prediction(t, p);
  // SuperSimpleNet train.py: normal = (mask == 0), anomalous = (mask > 0).
  torch::Tensor normal = (y == 0).to(p.scalar_type());
  torch::Tensor anomalous = (y > 0).to(p.scalar_type());
  if (w.defined()) {
    const torch::Tensor wp = w.to(p.device(), p.scalar_type());
    normal = normal * wp;
    anomalous = anomalous * wp;
  }
  const double m = options_.margin;
  return weighted_mean((p + m).clamp_min(0), normal) + weighted_mean((m - p).clamp_min(0), anomalous);
}

torch::Tensor HardFeatureLoss::threshold(const torch::Tensor& p, const torch::Tensor& t) const {
  require_same_shape("hard_feature", p, t);
  torch::NoGradGuard ng;
  const torch::Tensor d = (p - as_prediction(t, p)).pow(2);
  // torch.quantile's default interpolation is linear, as efficientad.py uses it.
  return torch::quantile(d.reshape({-1}), options_.quantile);
}

torch::Tensor HardFeatureLoss::forward(const torch::Tensor& p, const torch::Tensor& t, const torch::Tensor& w) const {
  const torch::Tensor hard = threshold(p, t);
  const torch::Tensor d = (p - as_prediction(t, p)).pow(2);
  // mean(d[d >= d_hard]) as a weighted mean with a 0/1 selection, so per-element weights compose.
  torch::Tensor sel = (d.detach() >= hard).to(p.scalar_type());
  if (w.defined()) sel = sel * w.to(p.device(), p.scalar_type());
  return weighted_mean(d, sel);
}

}  // namespace adfw
