// EfficientAD parts against closed forms: PDN shapes and receptive field, quantile map
// normalisation, the held-out split, PIL's grey conversion and colour jitter, and the method's
// fit on a tiny folder (held-out images never train the student).
#include <algorithm>
#include <set>

#include <opencv2/imgcodecs.hpp>

#include "adfw/core/options.hpp"
#include "methods/efficientad/efficientad.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace adfw;

namespace {

// Side of the input region the centre output cell of `net` depends on: the gradient of that cell
// with positive weights (every ReLU passes) is non-zero exactly on its receptive field.
int64_t receptive_field(Pdn& net, int64_t side) {
  {
    torch::NoGradGuard ng;
    for (auto& p : net->named_parameters()) {
      if (p.key().find("weight") != std::string::npos) p.value().fill_(1.0 / static_cast<double>(p.value()[0].numel()));
      else p.value().zero_();
    }
  }
  torch::AutoGradMode grad_on(true);  // callers may hold a NoGradGuard
  torch::Tensor x = torch::ones({1, 3, side, side}, torch::requires_grad());
  const torch::Tensor y = net->forward(x);
  y[0][0][y.size(2) / 2][y.size(3) / 2].backward();
  const torch::Tensor rows = (x.grad()[0][0].abs().sum(1) > 0).nonzero();
  const torch::Tensor cols = (x.grad()[0][0].abs().sum(0) > 0).nonzero();
  const int64_t h = rows.max().item<int64_t>() - rows.min().item<int64_t>() + 1;
  const int64_t w = cols.max().item<int64_t>() - cols.min().item<int64_t>() + 1;
  CHECK(h == w);
  return h;
}

}  // namespace

TEST_CASE("efficientad PDN: output shapes at 256 px and a 33 px receptive field", "[efficientad]") {
  const torch::Tensor x = torch::rand({2, 3, 256, 256});
  torch::NoGradGuard ng;
  // common.py: teacher 384 channels, student 768, 56 x 56 unpadded; pretraining's padded PDN 64 x 64.
  CHECK(Pdn("small", 384)->forward(x).sizes() == torch::IntArrayRef({2, 384, 56, 56}));
  CHECK(Pdn("small", 768)->forward(x).sizes() == torch::IntArrayRef({2, 768, 56, 56}));
  CHECK(Pdn("small", 384, 128, true)->forward(x).sizes() == torch::IntArrayRef({2, 384, 64, 64}));
  CHECK(Pdn("medium", 384, 32)->forward(x).sizes() == torch::IntArrayRef({2, 384, 56, 56}));
  CHECK(Pdn("medium", 384, 32, true)->forward(x).sizes() == torch::IntArrayRef({2, 384, 64, 64}));
  CHECK(EfficientAdAutoencoder(384, 8)->forward(x).sizes() == torch::IntArrayRef({2, 384, 56, 56}));
  // The reference's parameter names (nn.Sequential indices) and counts.
  std::vector<std::string> names;
  for (const auto& p : Pdn("small", 384)->named_parameters()) names.push_back(p.key());
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias", "8.weight",
                                          "8.bias"});
  int64_t n = 0;
  for (const auto& p : Pdn("small", 384)->parameters()) n += p.numel();
  // 3*128*16+128 + 128*256*16+256 + 256*256*9+256 + 256*384*16+384
  CHECK(n == 6272 + 524544 + 590080 + 1573248);
  int64_t m = 0;
  for (const auto& p : Pdn("medium", 384)->parameters()) m += p.numel();
  // 3*256*16+256 + 256*512*16+512 + 512*512+512 + 512*512*9+512 + 512*384*16+384 + 384*384+384
  CHECK(m == 12544 + 2097664 + 262656 + 2359808 + 3146112 + 147840);

  // Receptive field: 4x4 conv, 2x2 pool, 4x4 conv, 2x2 pool, 3x3 conv, 4x4 conv = 33 px (medium
  // adds only 1x1 convs, so 33 px as well).
  Pdn small("small", 4, 4);
  CHECK(receptive_field(small, 128) == 33);
  Pdn medium("medium", 4, 2);
  CHECK(receptive_field(medium, 128) == 33);
}

TEST_CASE("efficientad quantile normalisation: closed forms", "[efficientad]") {
  // 0.1 (m - qa) / (qb - qa): qa -> 0, qb -> 0.1, linear in between and beyond.
  const torch::Tensor m = torch::tensor({1.0f, 2.0f, 3.0f, 5.0f, 0.0f});
  const torch::Tensor got = quantile_normalize(m, 2.0, 3.0);
  const std::vector<float> want = {-0.1f, 0.0f, 0.1f, 0.3f, -0.2f};
  for (int i = 0; i < 5; ++i) CHECK(got[i].item<float>() == Approx(want[i]).margin(1e-7));

  // Scalars are taken in float32, as the reference's quantile tensors.
  CHECK(quantile_normalize(torch::tensor({0.3f}), 0.1, 0.2).item<float>() == Approx(0.2f));
  // Flat held-out maps (q_end == q_start): a floored denominator, finite values, order kept.
  const torch::Tensor flat = quantile_normalize(torch::tensor({1.0f, 2.0f}), 1.0, 1.0);
  CHECK(torch::isfinite(flat).all().item<bool>());
  CHECK(flat[0].item<float>() == 0.0f);
  CHECK(flat[1].item<float>() > 0.0f);
}

TEST_CASE("efficientad held-out split: disjoint, complete, random_split's sizes", "[efficientad]") {
  for (int64_t n = 2; n <= 60; ++n) {
    const EfficientAdSplit s = efficientad_split(n, 0.1, 42);
    INFO("n = " << n);
    const int64_t expected_train = std::max<int64_t>(1, std::min<int64_t>(n - 1, static_cast<int64_t>(0.9 * n)));
    CHECK(static_cast<int64_t>(s.train.size()) == expected_train);
    CHECK(static_cast<int64_t>(s.validation.size()) == n - expected_train);
    std::set<int64_t> train(s.train.begin(), s.train.end()), val(s.validation.begin(), s.validation.end());
    CHECK(train.size() == s.train.size());
    for (int64_t v : val) CHECK(train.count(v) == 0);
    std::set<int64_t> all = train;
    all.insert(val.begin(), val.end());
    CHECK(static_cast<int64_t>(all.size()) == n);
    CHECK(*all.begin() == 0);
    CHECK(*all.rbegin() == n - 1);
  }
  CHECK_THROWS_AS(efficientad_split(1, 0.1, 42), ConfigError);
}

TEST_CASE("efficientad PIL grey conversion and colour jitter: closed forms", "[efficientad]") {
  // Three pixels (R, G, B): (200, 0, 100), (10, 90, 255), (255, 30, 40).
  const torch::Tensor u = torch::tensor({200.0, 10.0, 255.0, 0.0, 90.0, 30.0, 100.0, 255.0, 40.0}).view({3, 1, 3});
  const torch::Tensor x = u / 255;
  // L = (19595 R + 38470 G + 7471 B + 32768) >> 16
  auto luma = [](int r, int g, int b) { return (19595 * r + 38470 * g + 7471 * b + 32768) >> 16; };
  const int l0 = luma(200, 0, 100), l1 = luma(10, 90, 255), l2 = luma(255, 30, 40);
  const torch::Tensor grey = pil_grayscale(x.to(torch::kFloat32)) * 255;
  for (int c = 0; c < 3; ++c) {
    CHECK(grey[c][0][0].item<float>() == Approx(l0));
    CHECK(grey[c][0][1].item<float>() == Approx(l1));
    CHECK(grey[c][0][2].item<float>() == Approx(l2));
  }
  // Brightness 1.1: floor(1.1 v) clipped to 255.
  const torch::Tensor b = (pil_color_jitter(x.to(torch::kFloat32), 0, 1.1) * 255).round();
  CHECK(b[0][0][0].item<float>() == 220.0f);
  CHECK(b[0][0][2].item<float>() == 255.0f);
  CHECK(b[1][0][1].item<float>() == 99.0f);  // floor(99.00000000000001)
  // Saturation 0.5: floor(L + 0.5 (v - L)).
  const torch::Tensor s = (pil_color_jitter(x.to(torch::kFloat32), 2, 0.5) * 255).round();
  CHECK(s[0][0][0].item<float>() == static_cast<float>(std::floor(l0 + 0.5 * (200 - l0))));
  CHECK(s[2][0][1].item<float>() == static_cast<float>(std::floor(l1 + 0.5 * (255 - l1))));
  // Contrast 0.8 around round(mean L).
  const double mean = std::floor((l0 + l1 + l2) / 3.0 + 0.5);
  const torch::Tensor c = (pil_color_jitter(x.to(torch::kFloat32), 1, 0.8) * 255).round();
  CHECK(c[1][0][1].item<float>() == static_cast<float>(std::floor(mean + 0.8 * (90 - mean))));
}

TEST_CASE("efficientad fit: held-out images never train the student, maps and scores", "[efficientad]") {
  test::load_builtin_plugins();
  const fs::path root = test::temp_dir("efficientad_fit");
  std::vector<SampleInfo> train;
  cv::RNG noise(7);  // its own generator: OpenCV's global one feeds other tests' images
  for (int i = 0; i < 10; ++i) {
    cv::Mat img(64, 64, CV_8UC3);
    noise.fill(img, cv::RNG::UNIFORM, cv::Scalar(60, 60, 60), cv::Scalar(200, 200, 200));
    const fs::path p = root / (std::to_string(i) + ".png");
    REQUIRE(cv::imwrite(p.string(), img));
    train.push_back({p.string(), "", 0, "good", Split::train, Supervision::normal, "tiny"});
  }
  EfficientAd::Options o;
  read_options(o,
               toml::parse("out_channels = 4\npdn_width = 4\nae_width = 2\nteacher_weights = 'random'\n"
                           "[trainer]\nsteps = 3\n"),
               "method");
  EfficientAd m(o);
  TransformOptions t;
  t.resize = 256;
  t.normalize = "none";
  RunContext run;
  run.loader_workers = 0;
  FitContext fit{run, train, {}, {}, t};
  m.fit(fit);
  const nlohmann::json j = m.summary();
  CHECK(j.at("student_images") == 9);
  CHECK(j.at("quantile_images") == 1);
  CHECK(j.at("steps") == 3);
  // The held-out image is the one random_split(seed 42) leaves out of the first 9.
  const EfficientAdSplit s = efficientad_split(10, 0.1, 42);
  CHECK(std::find(s.train.begin(), s.train.end(), s.validation[0]) == s.train.end());
  const auto q = m.quantiles();
  CHECK(q[0] < q[1]);
  CHECK(q[2] < q[3]);

  Loader loader(train, t, LoaderOptions{});
  auto batch = loader.next();
  REQUIRE(batch);
  const Prediction p = m.predict(*batch, run);
  CHECK(p.maps.size(2) == 256);
  CHECK(torch::isfinite(p.maps).all().item<bool>());
  CHECK(torch::allclose(p.scores, std::get<0>(p.maps.flatten(1).max(1))));
}
