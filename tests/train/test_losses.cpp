// Losses: closed forms and hand-computed values, weights, gradients, loss terms from TOML.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "adfw/core/error.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/train/loss.hpp"
#include "adfw/train/losses.hpp"
#include "support.hpp"

using namespace adfw;
using Catch::Contains;

namespace {

const auto kD = torch::TensorOptions().dtype(torch::kFloat64);

double val(const torch::Tensor& t) { return t.item<double>(); }

torch::Tensor vec(std::vector<double> v) { return torch::tensor(v, kD); }

std::unique_ptr<Loss> make_loss(const std::string& type, const std::string& options = "") {
  test::load_builtin_plugins();
  return Registry<Loss>::instance().make(type, toml::parse(options), "loss");
}

/// Inputs that suit `type`: images for ssim/msgms, logits or probabilities with 0/1 targets.
struct Case {
  std::string type, options;
  torch::Tensor prediction, target;
};

std::vector<Case> every_loss_case(int64_t n) {
  torch::manual_seed(3);
  const torch::Tensor img = torch::rand({n, 3, 32, 32}, kD), img2 = torch::rand({n, 3, 32, 32}, kD);
  const torch::Tensor logits = torch::randn({n, 1, 8, 8}, kD) * 2;
  const torch::Tensor mask = (torch::rand({n, 1, 8, 8}, kD) > 0.5).to(torch::kFloat64);
  const torch::Tensor probs = torch::rand({n, 1, 8, 8}, kD) * 0.98 + 0.01;
  return {
      {"l1", "", img, img2},
      {"l2", "", img, img2},
      {"smooth_l1", "beta = 0.3", img, img2},
      {"bce", "", logits, mask},
      {"bce", "input = \"probabilities\"", probs, mask},
      {"focal", "alpha = 0.25", logits, mask},
      {"focal", "input = \"probabilities\"", probs, mask},
      {"focal", "input = \"softmax\"", torch::randn({n, 2, 8, 8}, kD), mask},
      {"focal", "input = \"softmax\"\nsmooth = 1e-5", torch::randn({n, 3, 8, 8}, kD), mask * 2},
      {"ssim", "", img, img2},
      {"msgms", "", img, img2},
      {"truncated_l1", "", logits, mask},
  };
}

}  // namespace

TEST_CASE("weighted mean: plain mean, per-sample weights, all-zero weights", "[loss]") {
  const torch::Tensor l = vec({1, 2, 3, 6}).view({4, 1});
  CHECK(val(weighted_mean(l, {})) == Approx(3.0));
  CHECK(val(weighted_mean(l, vec({1, 0, 0, 1}).view({4, 1}))) == Approx(3.5));
  CHECK(val(weighted_mean(l, vec({2, 1, 1, 0}).view({4, 1}))) == Approx((2 + 2 + 3) / 4.0));
  // A scalar weight broadcasts and leaves the mean unchanged.
  CHECK(val(weighted_mean(l, torch::tensor(5.0, kD))) == Approx(3.0));

  torch::Tensor x = vec({1, 2, 3, 6}).view({4, 1}).requires_grad_(true);
  torch::Tensor z = weighted_mean(x * x, torch::zeros({4, 1}, kD));
  CHECK(val(z) == 0.0);
  REQUIRE(z.requires_grad());
  z.backward();
  REQUIRE(x.grad().defined());
  CHECK(x.grad().abs().sum().item<double>() == 0.0);

  CHECK_THROWS_AS(weighted_mean(l, torch::ones({3, 1}, kD)), Error);
}

TEST_CASE("l1, l2 and smooth_l1 against hand values", "[loss]") {
  const torch::Tensor p = vec({0, 1, 3}), t = vec({0.5, 1, 0});  // |p - t| = 0.5, 0, 3
  CHECK(val(make_loss("l1")->forward(p, t)) == Approx(3.5 / 3));
  CHECK(val(make_loss("l2")->forward(p, t)) == Approx(9.25 / 3));
  CHECK(val(make_loss("smooth_l1")->forward(p, t)) == Approx((0.125 + 0 + 2.5) / 3));  // beta 1
  CHECK(val(make_loss("smooth_l1", "beta = 2.0")->forward(p, t)) == Approx((0.0625 + 0 + 2.0) / 3));
  CHECK(val(make_loss("smooth_l1", "beta = 0")->forward(p, t)) == Approx(3.5 / 3));
  // Integer / uint8 targets are compared as numbers.
  CHECK(val(make_loss("l1")->forward(vec({1, 1}), torch::tensor({0, 3}, torch::kUInt8))) == Approx(1.5));
}

TEST_CASE("hard_feature: hand-computed quantiles, selection and gradient", "[loss]") {
  // d = (p - t)^2 = 0, 1, 4, 9, 16. torch.quantile (linear): position q * (n - 1) between the
  // sorted values. q = 0.5: position 2 -> 4, elements >= 4: 4, 9, 16 -> 29 / 3.
  const torch::Tensor t = torch::zeros({5});
  torch::Tensor p = vec({2, 0, 4, 1, 3}).requires_grad_(true);  // unsorted: the quantile sorts
  const torch::Tensor loss = make_loss("hard_feature", "quantile = 0.5")->forward(p, t);
  CHECK(val(loss) == Approx(29.0 / 3));
  // q = 0.9: position 3.6 -> 9 + 0.6 (16 - 9) = 13.2; only 16 is at or above it.
  CHECK(val(make_loss("hard_feature", "quantile = 0.9")->forward(p, t)) == Approx(16.0));
  // q = 0: the threshold is the minimum, every element counts: the mean squared error 30 / 5.
  CHECK(val(make_loss("hard_feature", "quantile = 0.0")->forward(p, t)) == Approx(6.0));
  const HardFeatureLoss hard(HardFeatureOptions{0.5});
  CHECK(val(hard.threshold(p, t)) == Approx(4.0));
  CHECK(val(HardFeatureLoss(HardFeatureOptions{0.999}).threshold(p, t)) == Approx(9 + 0.996 * 7));
  // Gradient 2 (p - t) / 3 on the three selected elements, 0 elsewhere.
  loss.backward();
  const std::vector<float> want = {4.0f / 3, 0, 8.0f / 3, 0, 2.0f};
  for (int i = 0; i < 5; ++i) CHECK(p.grad()[i].item<float>() == Approx(want[i]));
  // Per-element weights act on the selected elements only: weight 0 on the 16 leaves 4 and 9.
  CHECK(val(hard.forward(p, t, vec({1, 1, 0, 1, 1}))) == Approx(6.5));
}

TEST_CASE("bce against hand values", "[loss]") {
  const auto logits = make_loss("bce");
  CHECK(val(logits->forward(vec({0.0}), vec({1.0}))) == Approx(std::log(2.0)));
  CHECK(val(logits->forward(vec({2.0}), vec({0.0}))) == Approx(std::log(1 + std::exp(2.0))));
  CHECK(val(logits->forward(vec({-30.0}), vec({1.0}))) == Approx(30.0).epsilon(1e-9));  // stable far out
  const auto probs = make_loss("bce", "input = \"probabilities\"");
  CHECK(val(probs->forward(vec({0.8, 0.3}), vec({1.0, 0.0}))) == Approx(-(std::log(0.8) + std::log(0.7)) / 2));
}

TEST_CASE("focal with gamma 0 and no alpha equals binary cross-entropy in every input mode", "[loss]") {
  torch::manual_seed(11);
  const torch::Tensor logits = torch::randn({2, 1, 5, 5}, kD) * 3;
  const torch::Tensor mask = (torch::rand({2, 1, 5, 5}, kD) > 0.4).to(torch::kFloat64);
  const double bce = val(make_loss("bce")->forward(logits, mask));

  CHECK(val(make_loss("focal", "gamma = 0")->forward(logits, mask)) == Approx(bce).epsilon(1e-12));
  const torch::Tensor probs = torch::sigmoid(logits);
  CHECK(val(make_loss("focal", "gamma = 0\ninput = \"probabilities\"")->forward(probs, mask)) ==
        Approx(bce).epsilon(1e-10));
  // Two-class softmax of (0, z) is sigmoid(z).
  const torch::Tensor two = torch::cat({torch::zeros_like(logits), logits}, 1);
  CHECK(val(make_loss("focal", "gamma = 0\ninput = \"softmax\"")->forward(two, mask)) == Approx(bce).epsilon(1e-12));
  // K classes: cross-entropy.
  const torch::Tensor k3 = torch::randn({2, 3, 5, 5}, kD);
  const torch::Tensor cls = torch::randint(0, 3, {2, 1, 5, 5}, torch::kLong);
  const double ce = val(torch::nn::functional::cross_entropy(k3, cls.squeeze(1)));
  CHECK(val(make_loss("focal", "gamma = 0\ninput = \"softmax\"")->forward(k3, cls)) == Approx(ce).epsilon(1e-12));
  // gamma > 0 down-weights every element, so the loss drops below cross-entropy.
  CHECK(val(make_loss("focal")->forward(logits, mask)) < bce);
}

TEST_CASE("focal: hand-computed pixels with gamma 2 and alpha", "[loss]") {
  // logit 0.5 -> p = sigmoid(0.5) = 0.62245933.
  const auto f = make_loss("focal", "gamma = 2.0\nalpha = 0.25");
  // target 1: -0.25 (1 - p)^2 log p
  CHECK(val(f->forward(vec({0.5}), vec({1.0}))) == Approx(0.0168933726).epsilon(1e-8));
  // target 0: -0.75 p^2 log(1 - p)
  CHECK(val(f->forward(vec({0.5}), vec({0.0}))) == Approx(0.2830587006).epsilon(1e-8));
  // Same pixels as probabilities.
  const auto fp = make_loss("focal", "gamma = 2.0\nalpha = 0.25\ninput = \"probabilities\"");
  CHECK(val(fp->forward(vec({0.6224593312}), vec({1.0}))) == Approx(0.0168933726).epsilon(1e-7));
  // Probability 0 on a positive: log clamped at -100, as torch's binary_cross_entropy.
  const auto fp0 = make_loss("focal", "gamma = 0\ninput = \"probabilities\"");
  CHECK(val(fp0->forward(vec({0.0}), vec({1.0}))) == Approx(100.0));
  // Softmax, class 1 with logits (0, 0.5): same p, alpha for class > 0.
  const auto fs = make_loss("focal", "gamma = 2.0\nalpha = 0.25\ninput = \"softmax\"");
  CHECK(val(fs->forward(vec({0.0, 0.5}).view({1, 2, 1, 1}), vec({1}).view({1, 1, 1, 1}))) ==
        Approx(0.0168933726).epsilon(1e-8));
  CHECK(val(fs->forward(vec({0.0, 0.5}).view({1, 2, 1, 1}), vec({0}).view({1, 1, 1, 1}))) ==
        Approx(0.2830587006).epsilon(1e-8));
  // DRAEM's smoothing: logits (0, 1), class 1, s = 1e-5: p1 = e / (1 + e),
  // p_t = s * (1 - p1) + (1 - s) * p1 + s, loss = -(1 - p_t)^2 log p_t.
  const double s = 1e-5, p1 = std::exp(1.0) / (1 + std::exp(1.0));
  const double pt = s * (1 - p1) + (1 - s) * p1 + s;
  const auto fsm = make_loss("focal", "input = \"softmax\"\nsmooth = 1e-5");
  CHECK(val(fsm->forward(vec({0.0, 1.0}).view({1, 2, 1, 1}), vec({1}).view({1, 1, 1, 1}))) ==
        Approx(-(1 - pt) * (1 - pt) * std::log(pt)).epsilon(1e-10));
}

TEST_CASE("focal: bad inputs are errors", "[loss]") {
  const auto fs = make_loss("focal", "input = \"softmax\"");
  CHECK_THROWS_WITH(fs->forward(torch::zeros({1, 2, 4, 4}, kD), torch::full({1, 1, 4, 4}, 2.0, kD)),
                    Contains("[0, 1]"));
  CHECK_THROWS_WITH(fs->forward(torch::zeros({1, 2, 4, 4}, kD), torch::zeros({1, 1, 4, 5}, kD)),
                    Contains("[1, 1, 4, 5]"));
  CHECK_THROWS_AS(make_loss("focal", "smooth = 0.1"), ConfigError);  // smoothing needs softmax
  CHECK_THROWS_AS(make_loss("focal", "input = \"sigmoid\""), ConfigError);
}

namespace {
/// The 1-D Gaussian weights (window 11, sigma 1.5) that fall inside [0, n) around position i.
double inside_weight(int i, int n) {
  double in = 0, all = 0;
  for (int k = -5; k <= 5; ++k) {
    const double g = std::exp(-k * k / (2 * 1.5 * 1.5));
    all += g;
    if (i + k >= 0 && i + k < n) in += g;
  }
  return in / all;
}
}  // namespace

TEST_CASE("ssim: identical images give 1, constant images match the formula", "[loss]") {
  torch::manual_seed(5);
  const torch::Tensor img = torch::rand({2, 3, 20, 24}, kD);
  const torch::Tensor same = ssim_map(img, img);
  REQUIRE(same.sizes() == torch::IntArrayRef({2, 1, 20, 24}));
  CHECK((same - 1).abs().max().item<double>() < 1e-9);
  CHECK(std::abs(val(make_loss("ssim")->forward(img, img))) < 1e-9);

  // Constants a and b under zero padding: with S the Gaussian mass inside the image at a pixel,
  // mu = aS, sigma_a^2 = a^2 S (1 - S), sigma_ab = ab S (1 - S).
  const double a = 0.2, b = 0.6, c1 = 1e-4, c2 = 9e-4;
  const int H = 14, W = 17;
  const torch::Tensor ssim =
      ssim_map(torch::full({1, 3, H, W}, a, kD), torch::full({1, 3, H, W}, b, kD));
  double worst = 0, sum = 0;
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const double S = inside_weight(y, H) * inside_weight(x, W);
      const double expect = ((2 * a * b * S * S + c1) * (2 * a * b * S * (1 - S) + c2)) /
                            (((a * a + b * b) * S * S + c1) * ((a * a + b * b) * S * (1 - S) + c2));
      worst = std::max(worst, std::abs(ssim[0][0][y][x].item<double>() - expect));
      sum += expect;
    }
  CHECK(worst < 1e-7);
  // Away from the border: (2ab + C1) / (a^2 + b^2 + C1) = 0.2401 / 0.4001.
  CHECK(ssim[0][0][7][8].item<double>() == Approx(0.2401 / 0.4001).epsilon(1e-7));
  const double loss = val(make_loss("ssim")->forward(torch::full({1, 3, H, W}, a, kD), torch::full({1, 3, H, W}, b, kD)));
  CHECK(loss == Approx(1 - sum / (H * W)).epsilon(1e-7));
}

TEST_CASE("ssim: DRAEM's automatic data range", "[loss]") {
  auto centre = [](double a, double b, double range) {
    return ssim_map(torch::full({1, 1, 16, 16}, a, kD), torch::full({1, 1, 16, 16}, b, kD), 11, 1.5, range)[0][0][8][8]
        .item<double>();
  };
  auto formula = [](double a, double b, double L) {
    const double c1 = (0.01 * L) * (0.01 * L);
    return (2 * a * b + c1) / (a * a + b * b + c1);
  };
  CHECK(centre(200, 100, 0) == Approx(formula(200, 100, 255)).epsilon(1e-9));  // max > 128 -> 255
  CHECK(centre(-0.8, 0.3, 0) == Approx(formula(-0.8, 0.3, 2)).epsilon(1e-9));   // min < -0.5 -> 1 - (-1)
  CHECK(centre(0.01, 0.05, 0) == Approx(formula(0.01, 0.05, 1)).epsilon(1e-9));
  CHECK(centre(0.01, 0.05, 10) == Approx(formula(0.01, 0.05, 10)).epsilon(1e-9));
  CHECK_THROWS_AS(make_loss("ssim", "window = 10"), ConfigError);
}

TEST_CASE("msgms: identical images give the minimum, a hand-computed 3x3 case", "[loss]") {
  torch::manual_seed(8);
  const torch::Tensor img = torch::rand({2, 3, 32, 40}, kD);
  // The map is RIAD's MSGMS_Score, (1 - sum of 4 GMS maps) / 4: -3/4 where the images agree.
  const torch::Tensor m = msgms_map(img, img);
  REQUIRE(m.sizes() == torch::IntArrayRef({2, 1, 32, 40}));
  CHECK((m + 0.75).abs().max().item<double>() < 1e-12);
  CHECK(std::abs(val(make_loss("msgms")->forward(img, img))) < 1e-12);
  const torch::Tensor other = torch::rand({2, 3, 32, 40}, kD);
  CHECK(msgms_map(img, other).min().item<double>() >= -0.75);
  CHECK(msgms_map(img, other).max().item<double>() > -0.75);
  CHECK(val(make_loss("msgms")->forward(img, other)) > 0.05);

  // b = rows (0,0,0), (1,1,1), (2,2,2). The zero-padded 3x3 median gives
  // (0,0,0), (0,1,0), (0,1,0); Prewitt: gx = 0, gy = (0 - 1) / 3, so g_b = 1/3. a = 0 has
  // g_a = 0 (floored at 1e-6): 1 - GMS = 1 - c / (1/9 + c) = 1 / (1 + 9c), c = 0.0026.
  const torch::Tensor b = vec({0, 0, 0, 1, 1, 1, 2, 2, 2}).view({1, 1, 3, 3});
  const torch::Tensor a = torch::zeros({1, 1, 3, 3}, kD);
  const double expect = 1 / (1 + 9 * 0.0026);
  const torch::Tensor m1 = msgms_map(a, b, 1);
  CHECK(m1.min().item<double>() == Approx(expect).epsilon(1e-5));
  CHECK(m1.max().item<double>() == Approx(expect).epsilon(1e-5));
  CHECK(val(make_loss("msgms", "scales = 1")->forward(a, b)) == Approx(expect).epsilon(1e-5));
  // Colour images are compared through their channel mean.
  CHECK(val(make_loss("msgms", "scales = 1")->forward(a.expand({1, 3, 3, 3}), b.repeat({1, 3, 1, 1}))) ==
        Approx(expect).epsilon(1e-5));
  // Two scales: the mean of the full-size term and the term of the 2x2-average-pooled images;
  // b6 pools exactly to b.
  const torch::Tensor b6 = b.repeat_interleave(2, 2).repeat_interleave(2, 3);
  const torch::Tensor a6 = torch::zeros({1, 1, 6, 6}, kD);
  const double full = val(make_loss("msgms", "scales = 1")->forward(a6, b6));
  CHECK(val(make_loss("msgms", "scales = 2")->forward(a6, b6)) == Approx((full + expect) / 2).epsilon(1e-5));
  CHECK_THROWS_WITH(msgms_map(a, b, 2), Contains("too small"));
}

TEST_CASE("truncated l1 at and around the margin", "[loss]") {
  const auto tl = make_loss("truncated_l1");  // margin 0.5
  // Normals at -margin cost nothing, anomalous at +margin cost nothing.
  CHECK(val(tl->forward(vec({-0.5, -2.0, 0.5, 3.0}), vec({0, 0, 1, 1}))) == 0.0);
  // Normal at margin/2: 1.5 margin = 0.75; anomalous at 0: margin = 0.5. Each part is averaged
  // over its own elements: (0 + 0.75) / 2 + (0 + 0.5) / 2.
  torch::Tensor p = vec({-0.5, 0.25, 0.5, 0.0}).requires_grad_(true);
  const torch::Tensor v = tl->forward(p, vec({0, 0, 1, 1}));
  CHECK(val(v) == Approx(0.625));
  v.backward();
  CHECK(p.grad()[1].item<double>() == Approx(0.5));
  CHECK(p.grad()[3].item<double>() == Approx(-0.5));
  // Without anomalous elements that part is 0.
  CHECK(val(tl->forward(vec({0.25, 1.5}), vec({0, 0}))) == Approx((0.75 + 2.0) / 2));
  CHECK(val(tl->forward(vec({0.25, -1.5}), vec({1, 1}))) == Approx((0.25 + 2.0) / 2));
  CHECK(val(make_loss("truncated_l1", "margin = 1.0")->forward(vec({0.5}), vec({0}))) == Approx(1.5));
}

TEST_CASE("every loss: a sample with weight 0 changes nothing and gets no gradient", "[loss]") {
  for (const Case& c : every_loss_case(2)) {
    INFO(c.type << " " << c.options);
    const auto loss = make_loss(c.type, c.options);
    const torch::Tensor w = vec({1, 0}).view({2, 1, 1, 1});
    torch::Tensor p = c.prediction.clone().requires_grad_(true);
    const torch::Tensor v = loss->forward(p, c.target, w);
    const double alone = val(loss->forward(c.prediction.narrow(0, 0, 1), c.target.narrow(0, 0, 1)));
    CHECK(val(v) == Approx(alone).epsilon(1e-10));
    v.backward();
    REQUIRE(p.grad().defined());
    CHECK(torch::isfinite(p.grad()).all().item<bool>());
    CHECK(p.grad()[1].abs().sum().item<double>() == 0.0);
    CHECK(p.grad()[0].abs().sum().item<double>() > 0.0);
    // Changing the weighted-out sample leaves the loss as it was.
    torch::Tensor q = c.prediction.clone();
    q[1] = c.prediction[0];
    CHECK(val(loss->forward(q, c.target, w)) == Approx(val(v)).epsilon(1e-10));

    // All weights zero: an exact 0 with a finite (zero) gradient.
    torch::Tensor z = c.prediction.clone().requires_grad_(true);
    const torch::Tensor zero = loss->forward(z, c.target, torch::zeros({2, 1, 1, 1}, kD));
    CHECK(val(zero) == 0.0);
    zero.backward();
    REQUIRE(z.grad().defined());
    CHECK(z.grad().abs().sum().item<double>() == 0.0);

    // Unweighted backward in float32, the usual training precision.
    torch::Tensor f = c.prediction.to(torch::kFloat32).requires_grad_(true);
    const torch::Tensor fv = loss->forward(f, c.target.to(torch::kFloat32));
    CHECK(std::isfinite(val(fv)));
    fv.backward();
    CHECK(torch::isfinite(f.grad()).all().item<bool>());
  }
}

TEST_CASE("per-pixel weights mask pixels out", "[loss]") {
  torch::manual_seed(21);
  const torch::Tensor a = torch::rand({1, 1, 32, 32}, kD), b = torch::rand({1, 1, 32, 32}, kD);
  const torch::Tensor w = torch::zeros({1, 1, 32, 32}, kD);
  w.narrow(3, 0, 16).fill_(1);  // left half only
  // l2: the mean over the left half.
  const double left = (a - b).pow(2).narrow(3, 0, 16).mean().item<double>();
  CHECK(val(make_loss("l2")->forward(a, b, w)) == Approx(left));
  // ssim: the mean of 1 - SSIM over the left half of the map.
  CHECK(val(make_loss("ssim")->forward(a, b, w)) == Approx((1 - ssim_map(a, b)).narrow(3, 0, 16).mean().item<double>()));
  // msgms: changing the right half of b well away from the left (beyond median, Prewitt and
  // pooling reach) leaves the loss unchanged.
  torch::Tensor b2 = b.clone();
  b2.narrow(3, 24, 8).fill_(0.5);
  const auto ms = make_loss("msgms", "scales = 2");
  CHECK(val(ms->forward(a, b2, w)) == Approx(val(ms->forward(a, b, w))).epsilon(1e-12));
  CHECK(val(ms->forward(a, b2)) != Approx(val(ms->forward(a, b))).epsilon(1e-6));
}

TEST_CASE("shape mismatches name both shapes", "[loss]") {
  for (const char* type : {"l1", "l2", "smooth_l1", "bce", "focal", "ssim", "msgms", "truncated_l1"}) {
    INFO(type);
    CHECK_THROWS_WITH(make_loss(type)->forward(torch::zeros({2, 1, 32, 32}, kD), torch::zeros({2, 1, 32, 31}, kD)),
                      Contains("[2, 1, 32, 32]") && Contains("[2, 1, 32, 31]"));
  }
}

namespace {
struct Holder {
  std::vector<LossTerm> losses;
  template <class V>
  void fields(V& v) {
    v("losses", losses, "terms");
  }
};

Holder parse_terms(const std::string& text) {
  test::load_builtin_plugins();
  Holder h;
  read_options(h, toml::parse(std::string_view(text), std::string_view("exp.toml")), "method");
  return h;
}
}  // namespace

TEST_CASE("loss terms from TOML", "[loss]") {
  const Holder h = parse_terms(
      "[[losses]]\ntype = \"focal\"\ngamma = 4.0\nalpha = 0.25\nweight = 2.0\nprediction = \"segmentation\"\n"
      "target = \"mask\"\n"
      "[[losses]]\ntype = \"l2\"\nprediction = \"reconstruction\"\ntarget = \"image\"\n");
  REQUIRE(h.losses.size() == 2);
  const LossTerm& f = h.losses[0];
  CHECK(f.type() == "focal");
  CHECK(f.weight() == 2.0);
  CHECK(f.prediction() == "segmentation");
  CHECK(f.target() == "mask");
  CHECK(f.options<FocalOptions>().gamma == 4.0);
  CHECK(f.options<FocalOptions>().alpha == 0.25);
  CHECK(f.options<FocalOptions>().input == "logits");
  CHECK(&f.loss() == &f.loss());  // built once
  // The built loss uses the parsed options: gamma 4, alpha 0.25 at logit 0.5, target 1.
  const double p = 1 / (1 + std::exp(-0.5));
  CHECK(val(f.loss().forward(vec({0.5}), vec({1}))) == Approx(-0.25 * std::pow(1 - p, 4) * std::log(p)));
  CHECK(h.losses[1].weight() == 1.0);
  CHECK(h.losses[1].type() == "l2");

  // Round trip through to_toml.
  const toml::table t = f.to_toml();
  CHECK(t["type"].value<std::string>() == "focal");
  CHECK(t["gamma"].value<double>() == 4.0);
  CHECK(t["input"].value<std::string>() == "logits");  // defaults are written out
  CHECK(t["prediction"].value<std::string>() == "segmentation");
  LossTerm back;
  back.read_toml(t, "x");
  CHECK(back.type() == "focal");
  CHECK(back.weight() == 2.0);
  CHECK(back.prediction() == "segmentation");
  CHECK(back.target() == "mask");
  CHECK(back.options<FocalOptions>().gamma == 4.0);
  CHECK(back.options<FocalOptions>().alpha == 0.25);
  std::ostringstream a, b;
  a << t;
  b << back.to_toml();
  CHECK(a.str() == b.str());

  // Built in code: default options of the loss.
  const LossTerm code("truncated_l1", 3.0, "scores", "labels");
  CHECK(code.weight() == 3.0);
  CHECK(code.options<TruncatedL1Options>().margin == 0.5);
  CHECK(code.to_toml()["margin"].value<double>() == 0.5);
}

TEST_CASE("loss terms from TOML: errors name the key", "[loss]") {
  const std::string head = "[[losses]]\ntype = \"focal\"\nprediction = \"seg\"\ntarget = \"mask\"\n";
  CHECK_THROWS_WITH(parse_terms(head + "gama = 4.0\n"),
                    Contains("exp.toml:5") && Contains("method.losses[0].gama") && Contains("unknown key 'gama'") &&
                        Contains("did you mean 'gamma'"));
  CHECK_THROWS_AS(parse_terms(head + "gama = 4.0\n"), ConfigError);
  // A wrong type inside the loss's own options keeps its position.
  CHECK_THROWS_WITH(parse_terms(head + "gamma = \"two\"\n"),
                    Contains("exp.toml:5") && Contains("method.losses[0].gamma") && Contains("expected float"));
  CHECK_THROWS_WITH(parse_terms(head + "input = \"sigmoid\"\n"), Contains("method.losses[0].input"));
  CHECK_THROWS_WITH(parse_terms("[[losses]]\ntype = \"focal\"\ntarget = \"mask\"\n"),
                    Contains("method.losses[0]") && Contains("missing key 'prediction'"));
  CHECK_THROWS_WITH(parse_terms("[[losses]]\ntype = \"focal\"\nprediction = \"seg\"\n"), Contains("missing key 'target'"));
  CHECK_THROWS_WITH(parse_terms("[[losses]]\nprediction = \"seg\"\ntarget = \"mask\"\n"), Contains("missing key 'type'"));
  CHECK_THROWS_WITH(parse_terms("[[losses]]\ntype = \"focall\"\nprediction = \"seg\"\ntarget = \"mask\"\n"),
                    Contains("method.losses[0].type") && Contains("unknown loss 'focall'"));
  CHECK_THROWS_WITH(parse_terms(head + "weight = -1.0\n"), Contains("method.losses[0].weight"));
  CHECK_THROWS_WITH(parse_terms(head + "weight = \"high\"\n"), Contains("method.losses[0].weight"));
}

TEST_CASE("evaluate_losses: values, total, weights and errors", "[loss]") {
  test::load_builtin_plugins();
  torch::manual_seed(4);
  const std::vector<LossTerm> terms = {LossTerm("l1", 1.0, "recon", "image"), LossTerm("bce", 2.0, "seg", "mask")};
  const torch::Tensor recon = torch::rand({2, 3, 4, 4}, kD), image = torch::rand({2, 3, 4, 4}, kD);
  const torch::Tensor seg = torch::randn({2, 1, 4, 4}, kD).requires_grad_(true);
  const torch::Tensor mask = (torch::rand({2, 1, 4, 4}, kD) > 0.5).to(torch::kFloat64);
  const TensorMap outputs = {{"recon", recon}, {"seg", seg}};
  const TensorMap targets = {{"image", image}, {"mask", mask}};

  const LossValues v = evaluate_losses(terms, outputs, targets);
  REQUIRE(v.terms.size() == 2);
  CHECK(v.terms[0].first == "l1:recon");
  CHECK(v.terms[1].first == "bce:seg");
  const double l1 = (recon - image).abs().mean().item<double>();
  const torch::Tensor s = torch::sigmoid(seg.detach());
  const double bce = -(mask * s.log() + (1 - mask) * (1 - s).log()).mean().item<double>();
  CHECK(v.terms[0].second == Approx(l1));
  CHECK(v.terms[1].second == Approx(bce));
  CHECK(val(v.total) == Approx(l1 + 2 * bce));
  v.total.backward();
  CHECK(seg.grad().defined());

  // A per-sample weight for the "mask" target drops sample 1 from the bce term only.
  const LossValues w = evaluate_losses(terms, outputs, targets, {{"mask", vec({1, 0}).view({2, 1, 1, 1})}});
  const torch::Tensor s0 = s.narrow(0, 0, 1), m0 = mask.narrow(0, 0, 1);
  const double bce0 = -(m0 * s0.log() + (1 - m0) * (1 - s0).log()).mean().item<double>();
  CHECK(w.terms[0].second == Approx(l1));
  CHECK(w.terms[1].second == Approx(bce0));

  // Two terms with the same label stay apart.
  const LossValues d = evaluate_losses({LossTerm("l1", 1.0, "recon", "image"), LossTerm("l2", 1.0, "recon", "image"),
                                        LossTerm("l1", 3.0, "recon", "image")},
                                       outputs, targets);
  CHECK(d.terms[2].first == "l1:recon#2");
  CHECK(val(d.total) == Approx(4 * l1 + (recon - image).pow(2).mean().item<double>()));

  CHECK_THROWS_WITH(evaluate_losses({LossTerm("bce", 1.0, "segm", "mask")}, outputs, targets),
                    Contains("bce:segm") && Contains("'segm'") && Contains("available outputs: recon, seg"));
  CHECK_THROWS_WITH(evaluate_losses({LossTerm("bce", 1.0, "seg", "gt")}, outputs, targets),
                    Contains("bce:seg") && Contains("'gt'") && Contains("available targets: image, mask"));
  CHECK_THROWS_AS(evaluate_losses({LossTerm("bce", 1.0, "seg", "gt")}, outputs, targets), Error);
  CHECK_THROWS_WITH(evaluate_losses({LossTerm("l1", 1.0, "seg", "image")}, outputs, targets),
                    Contains("l1:seg") && Contains("[2, 1, 4, 4]") && Contains("[2, 3, 4, 4]"));
  CHECK_THROWS_AS(evaluate_losses({}, outputs, targets), Error);
}

TEST_CASE("the loss registry lists and describes every loss", "[loss]") {
  test::load_builtin_plugins();
  const auto names = Registry<Loss>::instance().names();
  for (const char* n : {"l1", "l2", "smooth_l1", "bce", "focal", "ssim", "msgms", "truncated_l1", "hard_feature"}) {
    INFO(n);
    CHECK(std::find(names.begin(), names.end(), n) != names.end());
  }
  const auto docs = Registry<Loss>::instance().describe("focal");
  std::vector<std::string> keys;
  for (const auto& d : docs) keys.push_back(d.name);
  CHECK(keys == std::vector<std::string>{"gamma", "alpha", "input", "smooth"});
}
