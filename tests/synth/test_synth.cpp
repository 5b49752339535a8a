// Synthetic anomaly generators: Perlin masks, image-space synthesizers, feature noise.
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include <opencv2/imgcodecs.hpp>
#include <torch/torch.h>

#include "adfw/core/error.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/synth/augment.hpp"
#include "adfw/synth/cutpaste.hpp"
#include "adfw/synth/feature_noise.hpp"
#include "adfw/synth/perlin.hpp"
#include "adfw/synth/perlin_blend.hpp"
#include "adfw/synth/transparency.hpp"
#include "support.hpp"

using namespace adfw;

namespace {

torch::Tensor test_image(int h, int w, uint64_t seed) {
  torch::manual_seed(static_cast<int64_t>(seed));
  // Smooth random image so shuffled patches / cut regions differ from the original.
  torch::Tensor small = torch::rand({1, 3, h / 8, w / 8});
  return torch::nn::functional::interpolate(
             small, torch::nn::functional::InterpolateFuncOptions()
                        .size(std::vector<int64_t>{h, w})
                        .mode(torch::kBilinear)
                        .align_corners(false))
      .squeeze(0)
      .contiguous();
}

bool exactly_binary(const torch::Tensor& m) { return ((m == 0) | (m == 1)).all().item<bool>(); }

// changed => mask, and inside the mask out = beta*in + (1-beta)*source (tolerance 1e-5).
void check_mask_matches_change(const torch::Tensor& input, const SynthResult& r) {
  // Synthesizers that augment the whole image first (DRAEM's rotation) report that image.
  const torch::Tensor in = r.clean.defined() ? r.clean : input;
  REQUIRE(in.sizes() == input.sizes());
  REQUIRE(r.mask.sizes() == torch::IntArrayRef({1, in.size(1), in.size(2)}));
  REQUIRE(exactly_binary(r.mask));
  const torch::Tensor changed = (r.image != in).any(0, true);
  CHECK((changed & (r.mask == 0)).sum().item<int64_t>() == 0);  // nothing changed outside
  CHECK(r.label == (r.mask.sum().item<double>() > 0 ? 1 : 0));
  if (r.source.defined()) {
    const torch::Tensor beta = r.beta.defined() ? r.beta : torch::zeros_like(r.mask);
    const torch::Tensor expect = beta * in + (1 - beta) * r.source;
    const torch::Tensor err = ((r.image - expect).abs() * r.mask).max();
    CHECK(err.item<double>() < 1e-5);
  }
  CHECK(r.image.min().item<double>() >= 0.0);
  CHECK(r.image.max().item<double>() <= 1.0);
}

std::filesystem::path dtd_folder() { return test::shared_root() / "datasets/dtd_subset/images"; }

}  // namespace

TEST_CASE("perlin noise: zero on lattice points, range about [-1, 1], matches the formula", "[synth]") {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    const int ry = 1 << (trial % 5), rx = 1 << ((trial / 5) % 5);
    const cv::Mat n = perlin_noise(64, 64, ry, rx, rng);
    for (int y = 0; y < 64; y += 64 / ry)
      for (int x = 0; x < 64; x += 64 / rx) CHECK(std::abs(n.at<float>(y, x)) < 1e-6);
    double mn, mx;
    cv::minMaxLoc(n, &mn, &mx);
    CHECK(mn >= -1.0001);
    CHECK(mx <= 1.0001);
  }
  // Hand-evaluated reference at a point inside a cell, from the same gradient draws.
  std::mt19937_64 a(11), b(11);
  const cv::Mat n = perlin_noise(16, 16, 2, 2, a);
  double gc[3][3], gs[3][3];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      const double ang = 2 * M_PI * uniform01(b);
      gc[i][j] = std::cos(ang);
      gs[i][j] = std::sin(ang);
    }
  const int py = 11, px = 5;  // cell (1, 0), offsets (3/8, 5/8)
  const double fy = 3.0 / 8, fx = 5.0 / 8;
  auto fade = [](double t) { return 6 * std::pow(t, 5) - 15 * std::pow(t, 4) + 10 * std::pow(t, 3); };
  const double n00 = gc[1][0] * fy + gs[1][0] * fx, n10 = gc[2][0] * (fy - 1) + gs[2][0] * fx;
  const double n01 = gc[1][1] * fy + gs[1][1] * (fx - 1), n11 = gc[2][1] * (fy - 1) + gs[2][1] * (fx - 1);
  const double ty = fade(fy), tx = fade(fx);
  const double l0 = n00 + ty * (n10 - n00), l1 = n01 + ty * (n11 - n01);
  CHECK(n.at<float>(py, px) == Approx(std::sqrt(2.0) * (l0 + tx * (l1 - l0))).margin(1e-5));
  // Over many draws the extremes approach +-1.
  double most = 0;
  for (int i = 0; i < 50; ++i) {
    double mn, mx;
    cv::minMaxLoc(perlin_noise(64, 64, 4, 4, rng), &mn, &mx);
    most = std::max({most, -mn, mx});
  }
  CHECK(most > 0.6);
}

TEST_CASE("perlin masks: empty-mask probability, threshold coverage, foreground", "[synth]") {
  PerlinOptions o;
  o.threshold = -1.0;  // every non-emptied mask has pixels, so empty <=> the empty draw fired
  o.empty_probability = 0.3;
  PerlinMaskGenerator gen(o);
  std::mt19937_64 rng(1);
  const int n = 2000;
  int empty = 0;
  for (int i = 0; i < n; ++i) {
    const cv::Mat m = gen.mask(24, 24, rng);
    if (cv::countNonZero(m) == 0) ++empty;
  }
  const double sigma = std::sqrt(0.3 * 0.7 / n);
  CHECK(std::abs(empty / double(n) - 0.3) < 4 * sigma);

  auto coverage = [](double thr, double rot) {
    PerlinOptions p;
    p.threshold = thr;
    p.min_rotation = -rot;
    p.max_rotation = rot;
    PerlinMaskGenerator g(p);
    std::mt19937_64 r(5);
    double sum = 0;
    for (int i = 0; i < 400; ++i) sum += cv::mean(g.mask(64, 64, r))[0];
    return sum / 400;
  };
  const double c05 = coverage(0.5, 90), c02 = coverage(0.2, 90), c0 = coverage(0.0, 0);
  INFO("coverage 0.5: " << c05 << ", 0.2: " << c02 << ", 0.0 unrotated: " << c0);
  CHECK(c05 < c02);
  CHECK(c05 > 0.0);
  CHECK(std::abs(c0 - 0.5) < 0.05);  // the noise is symmetric about 0

  // Foreground restriction and exact binarity.
  PerlinOptions fo;
  fo.threshold = -1.0;
  PerlinMaskGenerator fg_gen(fo);
  cv::Mat fg = cv::Mat::zeros(32, 32, CV_32F);
  fg(cv::Rect(8, 8, 10, 12)).setTo(1.f);
  const cv::Mat m = fg_gen.mask(32, 32, rng, fg);
  CHECK(cv::countNonZero(m) <= 120);
  CHECK(cv::countNonZero(m.mul(1 - fg)) == 0);
  cv::Mat not01 = (m != 0) & (m != 1);
  CHECK(cv::countNonZero(not01) == 0);

  PerlinOptions bad;
  bad.min_scale = 4;
  bad.max_scale = 4;
  CHECK_THROWS_AS(PerlinMaskGenerator(bad), ConfigError);
}

TEST_CASE("perlin masks: TransFusion threshold policy draws all four rules", "[synth]") {
  PerlinOptions o;
  o.threshold_mode = "transfusion";
  PerlinMaskGenerator g(o);
  std::mt19937_64 rng(3);
  int at_max = 0, at_half = 0, above = 0, below = 0;
  for (int i = 0; i < 400; ++i) {
    const cv::Mat n = g.noise(32, 32, rng);
    double mx;
    cv::minMaxLoc(n, nullptr, &mx);
    const double t = g.draw_threshold(n, rng);
    if (t == mx) ++at_max;
    else if (t == 0.5) ++at_half;
    else if (t > 0.5) ++above;
    else ++below;
  }
  for (int c : {at_max, at_half, above, below}) CHECK(std::abs(c - 100) < 40);
}

TEST_CASE("perlin blend synthesizers: exact masks, blend rule, beta range, determinism", "[synth]") {
  const torch::Tensor img = test_image(64, 64, 1);
  BlendOptions blend;
  blend.anomaly_probability = 1.0;
  blend.beta_min = 0.3;
  blend.beta_max = 0.6;
  std::vector<std::pair<std::string, std::shared_ptr<Synthesizer>>> synths;
  {
    PerlinSelfOptions o;
    o.blend = blend;
    synths.emplace_back("perlin_self", std::make_shared<PerlinSelfSynthesizer>(o));
  }
  {
    PerlinColorOptions o;
    o.blend = blend;
    synths.emplace_back("perlin_color", std::make_shared<PerlinColorSynthesizer>(o));
  }
  {
    PerlinNoiseOptions o;
    o.blend = blend;
    synths.emplace_back("perlin_noise", std::make_shared<PerlinNoiseSynthesizer>(o));
  }
  if (std::filesystem::exists(dtd_folder())) {
    PerlinTextureOptions o;
    o.folder = dtd_folder().string();
    o.blend = blend;
    synths.emplace_back("perlin_texture", std::make_shared<PerlinTextureSynthesizer>(o));
  } else {
    WARN("skipped perlin_texture: " << dtd_folder());
  }
  for (auto& [name, s] : synths) {
    INFO(name);
    int anomalous = 0;
    for (uint64_t seed = 0; seed < 12; ++seed) {
      std::mt19937_64 rng(seed);
      const SynthResult r = s->apply(img, rng);
      check_mask_matches_change(img, r);
      anomalous += r.label;
      // beta: reported map is in range inside the mask, 1 outside, and recoverable from pixels.
      REQUIRE(r.beta.defined());
      const torch::Tensor inside = r.mask > 0;
      if (r.label) {
        const double b = r.beta.masked_select(inside).min().item<double>();
        CHECK(r.beta.masked_select(inside).max().item<double>() == Approx(b));
        CHECK(b >= 0.3 - 1e-6);
        CHECK(b <= 0.6 + 1e-6);
        const torch::Tensor diff = (r.clean.defined() ? r.clean : img) - r.source;
        const torch::Tensor usable = (diff.abs() > 0.05) & inside.expand_as(diff);
        if (usable.any().item<bool>()) {
          const torch::Tensor rec = ((r.image - r.source) / diff).masked_select(usable);
          CHECK(rec.min().item<double>() == Approx(b).margin(1e-3));
          CHECK(rec.max().item<double>() == Approx(b).margin(1e-3));
        }
      }
      CHECK((r.beta.masked_select(~inside) == 1).all().item<bool>());
      // Same state -> same output; a different seed -> a different one.
      std::mt19937_64 again(seed);
      const SynthResult r2 = s->apply(img, again);
      CHECK(torch::equal(r.image, r2.image));
      CHECK(torch::equal(r.mask, r2.mask));
    }
    CHECK(anomalous >= 8);  // perlin masks at threshold 0.5 are rarely empty
    std::mt19937_64 r1(100), r2(101);
    CHECK_FALSE(torch::equal(s->apply(img, r1).image, s->apply(img, r2).image));
  }
}

TEST_CASE("perlin blend: anomaly probability", "[synth]") {
  PerlinColorOptions o;
  o.blend.anomaly_probability = 0.5;
  o.blend.perlin.threshold = -1.0;  // anomalies always cover pixels
  PerlinColorSynthesizer s(o);
  const torch::Tensor img = test_image(16, 16, 2);
  std::mt19937_64 rng(9);
  const int n = 600;
  int labelled = 0;
  for (int i = 0; i < n; ++i) {
    const SynthResult r = s.apply(img, rng);
    labelled += r.label;
    if (!r.label) CHECK(torch::equal(r.image, img));
  }
  CHECK(std::abs(labelled / double(n) - 0.5) < 4 * std::sqrt(0.25 / n));
}

TEST_CASE("perlin self: the source is the image's own patches", "[synth]") {
  cv::Mat img(16, 16, CV_8UC3);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x) img.at<cv::Vec3b>(y, x) = cv::Vec3b(y * 16 + x, (y / 4) * 4 + x / 4, 7);
  std::mt19937_64 rng(4);
  const cv::Mat sh = shuffle_patches(img, 4, rng);
  // Every 4x4 source patch appears exactly once in the result.
  std::vector<int> seen(16, 0);
  for (int py = 0; py < 4; ++py)
    for (int px = 0; px < 4; ++px) {
      const cv::Vec3b v = sh.at<cv::Vec3b>(py * 4, px * 4);
      const int id = v[1];
      seen[(id / 4) * 4 + id % 4] += 1;
      const cv::Mat expect = img(cv::Rect((id % 4) * 4, (id / 4) * 4, 4, 4));
      cv::Mat d;
      cv::absdiff(sh(cv::Rect(px * 4, py * 4, 4, 4)), expect, d);
      CHECK(cv::sum(d) == cv::Scalar::all(0));
    }
  for (int s : seen) CHECK(s == 1);
}

TEST_CASE("cutpaste: mask is the pasted region", "[synth]") {
  const torch::Tensor img = test_image(48, 48, 3);
  CutPasteOptions o;
  o.anomaly_probability = 1.0;
  o.color_jitter = 0.0;
  CutPasteSynthesizer s(o);
  for (uint64_t seed = 0; seed < 10; ++seed) {
    std::mt19937_64 rng(seed);
    const SynthResult r = s.apply(img, rng);
    check_mask_matches_change(img, r);
    REQUIRE(r.label == 1);
    const cv::Mat m = tensor_to_mask(r.mask);
    cv::Mat m8;
    m.convertTo(m8, CV_8U);
    const cv::Rect box = cv::boundingRect(m8);
    CHECK(cv::countNonZero(m8) == box.area());  // a filled rectangle
    const double frac = box.area() / (48.0 * 48.0);
    CHECK(frac >= 0.02 * 0.8);
    CHECK(frac <= 0.15 * 1.2);
    // The pasted pixels are a copy of some same-sized region of the input.
    const cv::Mat in = image_to_mat(img), out = image_to_mat(r.image);
    const cv::Mat pasted = out(box);
    bool found = false;
    for (int y = 0; y + box.height <= 48 && !found; ++y)
      for (int x = 0; x + box.width <= 48 && !found; ++x) {
        cv::Mat d;
        cv::absdiff(in(cv::Rect(x, y, box.width, box.height)), pasted, d);
        double mx;
        cv::minMaxLoc(d.reshape(1), nullptr, &mx);
        found = mx == 0.0;
      }
    CHECK(found);
  }
  o.variant = "scar";
  o.color_jitter = 0.1;
  CutPasteSynthesizer scar(o);
  for (uint64_t seed = 0; seed < 10; ++seed) {
    std::mt19937_64 rng(seed);
    const SynthResult r = scar.apply(img, rng);
    check_mask_matches_change(img, r);
    const double area = r.mask.sum().item<double>();
    CHECK(area >= 2 * 10 * 0.6);
    CHECK(area <= 16 * 25 * 1.3);
  }
  CutPasteOptions bad;
  bad.area_min = 0.5;
  bad.area_max = 0.1;
  CHECK_THROWS_AS(CutPasteSynthesizer(bad), ConfigError);
}

TEST_CASE("transparency: mask, per-pixel transparency and hint mask", "[synth]") {
  const torch::Tensor img = test_image(64, 64, 4);
  TransparencyOptions o;
  o.anomaly_probability = 1.0;
  o.texture_probability = 0.0;
  TransparencySynthesizer s(o);
  std::set<int> steps;
  for (uint64_t seed = 0; seed < 30; ++seed) {
    std::mt19937_64 rng(seed);
    const SynthResult r = s.apply(img, rng);
    check_mask_matches_change(img, r);
    REQUIRE(r.step >= 1);
    REQUIRE(r.step < 20);
    steps.insert(r.step);
    const double b = r.step / 19.0;
    CHECK(((r.beta - (1 - b * r.mask)).abs().max().item<double>()) < 1e-6);
    REQUIRE(r.hint_mask.defined());
    CHECK(exactly_binary(r.hint_mask));
    if (r.step == 19) CHECK(r.hint_mask.sum().item<double>() == 0);
  }
  CHECK(steps.size() > 5);
  TransparencyOptions needs_folder;
  CHECK_THROWS_AS(TransparencySynthesizer(needs_folder), ConfigError);
}

TEST_CASE("perlin texture: DRAEM's rotation of the normal image and the channel order of the ops", "[synth]") {
  // One texture with distinct channels, written to a temporary folder.
  const auto dir = test::temp_dir("synth_rotate");
  cv::Mat tex(24, 24, CV_8UC3);
  for (int y = 0; y < 24; ++y)
    for (int x = 0; x < 24; ++x) tex.at<cv::Vec3b>(y, x) = cv::Vec3b(40 + 5 * x, 200 - 4 * y, 120);
  REQUIRE(cv::imwrite((dir / "t.png").string(), tex));
  const torch::Tensor img = test_image(32, 32, 7);

  PerlinTextureOptions o;
  o.folder = dir.string();
  CHECK(o.rotate_probability == Approx(0.3));  // data_loader.py: torch.rand(1) > 0.7
  CHECK(o.rotate_degrees == Approx(90.0));
  CHECK(o.channel_order == "bgr");
  o.blend.anomaly_probability = 0.0;
  {
    const PerlinTextureSynthesizer s(o);
    std::mt19937_64 rng(1);
    int rotated = 0;
    const int n = 400;
    for (int i = 0; i < n; ++i) {
      const SynthResult r = s.apply(img, rng);
      CHECK(r.mask.sum().item<double>() == 0);
      if (!r.clean.defined()) {
        CHECK(torch::equal(r.image, img));
        continue;
      }
      ++rotated;
      // No anomaly: the output is the rotated image, which is the reconstruction target.
      CHECK(torch::equal(r.image, r.clean));
      CHECK_FALSE(torch::equal(r.clean, img));
    }
    CHECK(std::abs(rotated / double(n) - 0.3) < 4 * std::sqrt(0.21 / n));
  }
  o.rotate_probability = 0.0;
  {
    const PerlinTextureSynthesizer s(o);
    std::mt19937_64 rng(1);
    CHECK_FALSE(s.apply(img, rng).clean.defined());
  }
  // The hue and brightness ops see swapped channels under "bgr": some draws differ from "rgb".
  o.blend.anomaly_probability = 1.0;
  o.blend.perlin.threshold = -1.0;  // the anomaly covers the image
  o.n_ops = 10;
  PerlinTextureOptions rgb = o;
  rgb.channel_order = "rgb";
  const PerlinTextureSynthesizer as_bgr(o), as_rgb(rgb);
  int differ = 0;
  for (uint64_t seed = 0; seed < 6; ++seed) {
    std::mt19937_64 a(seed), b(seed);
    differ += torch::equal(as_bgr.apply(img, a).source, as_rgb.apply(img, b).source) ? 0 : 1;
  }
  CHECK(differ > 0);
}

TEST_CASE("texture folder errors name the folder", "[synth]") {
  PerlinTextureOptions o;
  o.folder = "/nonexistent/textures_xyz";
  try {
    PerlinTextureSynthesizer s(o);
    FAIL("expected an error");
  } catch (const ConfigError& e) {
    CHECK_THAT(e.what(), Catch::Contains("/nonexistent/textures_xyz"));
  }
  const auto dir = test::temp_dir("synth_empty");
  std::ofstream(dir / "notes.txt") << "not an image";
  o.folder = dir.string();
  try {
    PerlinTextureSynthesizer s(o);
    FAIL("expected an error");
  } catch (const ConfigError& e) {
    CHECK_THAT(e.what(), Catch::Contains(dir.string()));
    CHECK_THAT(e.what(), Catch::Contains("no image"));
  }
}

TEST_CASE("DRAEM ops: closed-form checks", "[synth]") {
  cv::Mat img(8, 8, CV_8UC3);
  cv::randu(img, 0, 256);
  std::mt19937_64 rng(0);
  cv::Mat inv = img.clone();
  apply_draem_op(DraemOp::invert, inv, rng);
  cv::Mat sum;
  cv::add(inv, img, sum, cv::noArray(), CV_16UC3);
  double mn, mx;
  cv::minMaxLoc(sum.reshape(1), &mn, &mx);
  CHECK(mn == 255);
  CHECK(mx == 255);
  // Posterize keeps the top b bits for one b drawn from 1..8 (imgaug pillike.Posterize, nb_bits
  // (1, 8)). Over many draws every output is exactly one such b, and the b vary: an op that did
  // nothing (b = 8 every time) or always the same thing fails.
  std::set<int> seen_bits;
  for (int draw = 0; draw < 64; ++draw) {
    cv::Mat post = img.clone();
    apply_draem_op(DraemOp::posterize, post, rng);
    int found = 0;
    for (int b = 1; b <= 8; ++b) {
      const uchar keep = static_cast<uchar>(0xFF << (8 - b));
      cv::Mat expect = img & cv::Scalar::all(keep), d;
      cv::absdiff(expect, post, d);
      if (cv::countNonZero(d.reshape(1)) == 0) {
        found = b;
        break;  // the smallest b that reproduces the output; random 8x8x3 pixels make it unique
      }
    }
    INFO("draw " << draw);
    REQUIRE(found >= 1);
    seen_bits.insert(found);
  }
  CHECK(seen_bits.size() >= 6);
  CHECK(*seen_bits.begin() <= 2);
  // Gamma curves fix 0 and 255 and are monotone per channel.
  cv::Mat ramp(1, 256, CV_8UC3);
  for (int v = 0; v < 256; ++v) ramp.at<cv::Vec3b>(0, v) = cv::Vec3b(v, v, v);
  apply_draem_op(DraemOp::gamma_contrast, ramp, rng);
  CHECK(ramp.at<cv::Vec3b>(0, 0) == cv::Vec3b(0, 0, 0));
  CHECK(ramp.at<cv::Vec3b>(0, 255) == cv::Vec3b(255, 255, 255));
  bool monotone = true;
  for (int v = 1; v < 256; ++v)
    for (int c = 0; c < 3; ++c) monotone = monotone && ramp.at<cv::Vec3b>(0, v)[c] >= ramp.at<cv::Vec3b>(0, v - 1)[c];
  CHECK(monotone);
  cv::Mat tex = img.clone();
  const auto used = draem_augment(tex, rng, 3);
  REQUIRE(used.size() == 3);
  CHECK(used[0] != used[1]);
  CHECK(used[1] != used[2]);
  CHECK(used[0] != used[2]);
}

TEST_CASE("feature noise: supersimplenet masks match where noise was added", "[synth]") {
  torch::manual_seed(0);
  const torch::Tensor f = torch::randn({3, 8, 16, 16});
  SuperSimpleNetNoiseOptions o;
  SuperSimpleNetNoise s(o);
  const FeatureNoiseResult r = s.apply(f, 42);
  REQUIRE(r.features.sizes() == torch::IntArrayRef({6, 8, 16, 16}));
  REQUIRE(r.mask.sizes() == torch::IntArrayRef({6, 1, 16, 16}));
  CHECK(exactly_binary(r.mask));
  const torch::Tensor in2 = torch::cat({f, f});
  const torch::Tensor changed = (r.features != in2).any(1, true);
  CHECK(torch::equal(changed.to(torch::kFloat32), r.mask));
  CHECK(torch::equal(r.labels, (r.mask.reshape({6, -1}).amax(1) > 0).to(torch::kInt64)));
  // Same seed, same output; other seed differs.
  CHECK(torch::equal(s.apply(f, 42).features, r.features));
  CHECK_FALSE(torch::equal(s.apply(f, 43).features, r.features));

  // Statistics over many masks: empty probability 0.5, noise std 0.015 inside.
  const torch::Tensor g = torch::zeros({50, 4, 16, 16});
  int empty = 0, total = 0;
  std::vector<torch::Tensor> deltas;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    const FeatureNoiseResult q = s.apply(g, seed);
    const torch::Tensor per = q.mask.reshape({q.mask.size(0), -1}).amax(1);
    empty += (per == 0).sum().item<int>();
    total += static_cast<int>(per.numel());
    deltas.push_back(q.features.masked_select(q.mask.expand_as(q.features) > 0));
  }
  const double sigma = std::sqrt(0.25 / total);
  // Non-emptied masks at threshold 0.2 can still come out empty now and then: allow a little.
  CHECK(empty / double(total) > 0.5 - 4 * sigma);
  CHECK(empty / double(total) < 0.5 + 4 * sigma + 0.05);
  const torch::Tensor d = torch::cat(deltas);
  CHECK(d.std().item<double>() == Approx(0.015).epsilon(0.05));

  // Threshold 0.5 covers less than 0.2 at feature resolution.
  auto cover = [&](double thr) {
    SuperSimpleNetNoiseOptions c;
    c.perlin.threshold = thr;
    c.perlin.empty_probability = 0;
    return SuperSimpleNetNoise(c).apply(g, 5).mask.mean().item<double>();
  };
  CHECK(cover(0.5) < cover(0.2));
}

TEST_CASE("feature noise: mixed supervision keeps real anomalies", "[synth]") {
  torch::manual_seed(1);
  const torch::Tensor f = torch::randn({2, 4, 8, 8});
  torch::Tensor gt = torch::zeros({2, 1, 64, 64});
  gt.index_put_({0, 0, torch::indexing::Slice(0, 32), torch::indexing::Slice(0, 32)}, 1.0);
  const torch::Tensor labels = torch::tensor({1, 0}, torch::kInt64);
  SuperSimpleNetNoiseOptions o;
  o.perlin.threshold = -1.0;  // noise everywhere it is allowed
  o.perlin.empty_probability = 0;
  o.overlap = false;
  {
    std::mt19937_64 rng(0);
    const FeatureNoiseResult r = SuperSimpleNetNoise(o).apply(f, gt, labels, rng);
    const torch::Tensor gt_small = downscale_mask(gt, 8, 8);
    CHECK(gt_small.sum().item<double>() == 16.0);  // the 32x32 corner -> 4x4 cells
    const torch::Tensor in2 = torch::cat({f, f});
    const torch::Tensor changed = (r.features != in2).any(1, true).to(torch::kFloat32);
    const torch::Tensor gt2 = torch::cat({gt_small, gt_small});
    CHECK((changed * gt2).sum().item<double>() == 0);     // no noise on real defects
    CHECK(torch::equal(r.mask, ((changed + gt2) > 0).to(torch::kFloat32)));  // GT kept
    CHECK(r.labels.sum().item<int64_t>() == 4);
  }
  o.bad = false;
  {
    std::mt19937_64 rng(0);
    const FeatureNoiseResult r = SuperSimpleNetNoise(o).apply(f, gt, labels, rng);
    CHECK(torch::equal(r.features[0], f[0]));  // labelled anomalous: untouched
    CHECK(torch::equal(r.features[2], f[0]));
    CHECK(torch::equal(r.mask[0], downscale_mask(gt, 8, 8)[0]));
    CHECK(r.labels[0].item<int64_t>() == 1);
  }
  o.clean_first_half = true;
  o.bad = true;
  {
    std::mt19937_64 rng(0);
    const FeatureNoiseResult r = SuperSimpleNetNoise(o).apply(f, torch::Tensor(), torch::Tensor(), rng);
    CHECK(torch::equal(r.features.slice(0, 0, 2), f));
    CHECK(r.mask.slice(0, 0, 2).sum().item<double>() == 0);
    CHECK(torch::equal(r.labels, torch::tensor({0, 0, 1, 1}, torch::kInt64)));
  }
}

TEST_CASE("feature noise: simplenet duplicates and noises the second half", "[synth]") {
  torch::manual_seed(2);
  const torch::Tensor f = torch::randn({4, 16, 8, 8});
  SimpleNetNoise s({});
  const FeatureNoiseResult r = s.apply(f, 3);
  CHECK(torch::equal(r.features.slice(0, 0, 4), f));
  const torch::Tensor d = r.features.slice(0, 4, 8) - f;
  CHECK((d != 0).all().item<bool>());
  CHECK(d.std().item<double>() == Approx(0.015).epsilon(0.05));
  CHECK(torch::equal(r.labels, torch::tensor({0, 0, 0, 0, 1, 1, 1, 1}, torch::kInt64)));
  CHECK(r.mask.slice(0, 0, 4).sum().item<double>() == 0);
  CHECK((r.mask.slice(0, 4, 8) == 1).all().item<bool>());
  CHECK(torch::equal(s.apply(f, 3).features, r.features));
}

TEST_CASE("synthesizers are registered and configurable from TOML", "[synth]") {
  test::load_builtin_plugins();
  auto& reg = Registry<Synthesizer>::instance();
  for (const char* n : {"perlin_texture", "perlin_self", "perlin_color", "perlin_noise", "cutpaste", "transparency"})
    CHECK(reg.contains(n));
  CHECK(Registry<FeatureNoise>::instance().contains("supersimplenet"));
  CHECK(Registry<FeatureNoise>::instance().contains("simplenet"));
  auto tbl = toml::parse(R"(
    anomaly_probability = 1.0
    beta_min = 0.2
    beta_max = 0.2
    [perlin]
    threshold = 0.3
    min_scale = 1
    max_scale = 3
  )");
  auto s = reg.make("perlin_color", tbl, "method.synthesizer");
  std::mt19937_64 rng(0);
  const torch::Tensor img = test_image(32, 32, 5);
  const SynthResult r = s->apply(img, rng);
  check_mask_matches_change(img, r);
  auto bad = toml::parse("[perlin]\nthreshhold = 0.3\n");
  CHECK_THROWS_AS(reg.make("perlin_color", bad, "method.synthesizer"), ConfigError);
}

TEST_CASE("synth preview writes a grid", "[synth]") {
  ADFW_REQUIRE_SHARED(tiles, "datasets/magnetic_tile/train/good");
  const auto out = test::temp_dir("synth_preview") / "grid.png";
  const std::string cmd = test::cli_path().string() + " synth preview --images " + tiles.string() +
                          " --synth perlin_color --set anomaly_probability=1.0 --set perlin.threshold=0.3" +
                          " --n 4 --per-row 2 --size 32 --out " + out.string();
  REQUIRE(std::system(cmd.c_str()) == 0);
  const cv::Mat g = cv::imread(out.string());
  REQUIRE(!g.empty());
  CHECK(g.rows == 2 * 32 + 4);
  CHECK(g.cols == 2 * (3 * 32 + 8) + 12);
}

TEST_CASE("synthesizers can be shared by worker threads", "[synth]") {
  ADFW_REQUIRE_SHARED(dtd, "datasets/dtd_subset/images");
  PerlinTextureOptions o;
  o.folder = dtd.string();
  o.cache_textures = true;
  o.blend.anomaly_probability = 1.0;
  const PerlinTextureSynthesizer s(o);
  const torch::Tensor img = test_image(32, 32, 6);
  std::vector<torch::Tensor> sequential(8), parallel(8);
  for (int i = 0; i < 8; ++i) {
    std::mt19937_64 rng(i);
    sequential[i] = s.apply(img, rng).image;
  }
  std::vector<std::thread> workers;
  for (int t = 0; t < 2; ++t)
    workers.emplace_back([&, t] {
      for (int i = t; i < 8; i += 2) {
        std::mt19937_64 rng(i);
        parallel[i] = s.apply(img, rng).image;
      }
    });
  for (auto& w : workers) w.join();
  for (int i = 0; i < 8; ++i) CHECK(torch::equal(sequential[i], parallel[i]));
}
