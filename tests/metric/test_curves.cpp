#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "adfw/core/error.hpp"
#include "adfw/core/safetensors.hpp"
#include "adfw/metric/curves.hpp"
#include "support.hpp"

using namespace adfw::metric;
using Catch::Contains;

namespace {

struct CaseA {
  std::vector<float> maps, scores;
  std::vector<uint8_t> masks;
  std::vector<int64_t> labels;
  int64_t n = 0, h = 0, w = 0;
  nlohmann::json expected;
};

CaseA load_case_a(const std::filesystem::path& dir) {
  const auto f = adfw::safetensors::File::open(dir / "case_a.safetensors");
  CaseA c;
  c.maps = f.to_float("anomaly_maps");
  c.scores = f.to_float("image_scores");
  c.labels = f.to_int64("labels");
  const auto& mv = f.at("masks");
  c.masks.assign(mv.data, mv.data + mv.nbytes);
  c.n = mv.shape[0];
  c.h = mv.shape[1];
  c.w = mv.shape[2];
  std::ifstream in(dir / "case_a_expected.json");
  in >> c.expected;
  return c;
}

}  // namespace

TEST_CASE("metrics reproduce the scikit-learn / MVTec reference values of case_a", "[metric]") {
  ADFW_REQUIRE_SHARED(dir, "fixtures/metrics");
  const CaseA c = load_case_a(dir);
  const auto img = binary_metrics(c.scores, c.labels);
  const auto& e = c.expected;
  CHECK(img.auroc == Approx(e["image_auroc"].get<double>()).margin(1e-6).epsilon(0));
  CHECK(img.ap == Approx(e["image_ap"].get<double>()).margin(1e-6).epsilon(0));
  CHECK(img.f1_max == Approx(e["image_f1_max"].get<double>()).margin(1e-6).epsilon(0));

  for (int threads : {1, 2, 3}) {
    PixelRequest req;
    req.aupro_limits = {0.3, 0.05, 1.0};
    req.threads = threads;
    const auto px = pixel_metrics(c.maps.data(), c.masks.data(), c.n, c.h, c.w, req);
    INFO("threads " << threads);
    CHECK(px.binary.auroc == Approx(e["pixel_auroc"].get<double>()).margin(1e-6).epsilon(0));
    CHECK(px.binary.ap == Approx(e["pixel_ap"].get<double>()).margin(1e-6).epsilon(0));
    CHECK(px.binary.f1_max == Approx(e["pixel_f1_max"].get<double>()).margin(1e-6).epsilon(0));
    CHECK(px.aupro.at(0.3) == Approx(e["aupro_0.3"].get<double>()).margin(2e-3).epsilon(0));
    CHECK(px.aupro.at(0.05) == Approx(e["aupro_0.05"].get<double>()).margin(2e-3).epsilon(0));
    CHECK(px.aupro.at(1.0) == Approx(e["aupro_1.0"].get<double>()).margin(2e-3).epsilon(0));
  }
}

TEST_CASE("closed forms: perfect, reversed and tied rankings", "[metric]") {
  const std::vector<int64_t> labels = {0, 0, 0, 1, 1};
  const auto perfect = binary_metrics({0.1f, 0.2f, 0.3f, 0.8f, 0.9f}, labels);
  CHECK(perfect.auroc == 1.0);
  CHECK(perfect.ap == 1.0);
  CHECK(perfect.f1_max == 1.0);
  CHECK(perfect.f1_threshold == 0.8f);
  const auto reversed = binary_metrics({0.9f, 0.8f, 0.7f, 0.2f, 0.1f}, labels);
  CHECK(reversed.auroc == 0.0);
  const auto ties = binary_metrics({0.5f, 0.5f, 0.5f, 0.5f, 0.5f}, labels);
  CHECK(ties.auroc == 0.5);
  CHECK(ties.ap == Approx(0.4));            // one threshold: precision 2/5 at recall 1
  CHECK(ties.f1_max == Approx(2.0 * 2 / (5 + 2)));
  // -0 and +0 are the same threshold.
  CHECK(binary_metrics({-0.f, 0.f}, {0, 1}).auroc == 0.5);
}

TEST_CASE("hand-computed AP and F1 with ties", "[metric]") {
  // Scores (label): 0.9(1) 0.8(0) 0.8(1) 0.7(1) 0.5(0) 0.5(0) 0.3(1) 0.1(0). P = 4, N = 4.
  // Thresholds (tp, fp): 0.9 (1,0); 0.8 (2,1); 0.7 (3,1); 0.5 (3,3); 0.3 (4,3); 0.1 (4,4).
  // AP = 1/4 * (1 + 2/3 + 3/4 + 4/7).
  // AUROC: positive-negative pairs won: 0.9 beats 4, 0.8 beats 3 + ties 1 (0.5), 0.7 beats 3, 0.3 beats 1 -> 11.5/16.
  // F1 = 2tp / (tp + fp + P): 2/5, 4/7, 6/8, 6/10, 8/11, 8/12 -> max 0.75 at 0.7.
  const std::vector<float> s = {0.9f, 0.8f, 0.8f, 0.7f, 0.5f, 0.5f, 0.3f, 0.1f};
  const std::vector<int64_t> y = {1, 0, 1, 1, 0, 0, 1, 0};
  const auto m = binary_metrics(s, y);
  CHECK(m.ap == Approx(0.25 * (1.0 + 2.0 / 3 + 0.75 + 4.0 / 7)).epsilon(1e-12));
  CHECK(m.auroc == Approx(11.5 / 16).epsilon(1e-12));
  CHECK(m.f1_max == Approx(0.75).epsilon(1e-12));
  CHECK(m.f1_threshold == 0.7f);
  CHECK(m.positives == 4);
  CHECK(m.negatives == 4);

  // The same numbers as a 2 x 4 pixel map (all pixel metrics share the implementation of the walk).
  const std::vector<uint8_t> mask = {1, 0, 1, 1, 0, 0, 1, 0};
  PixelRequest req;
  req.aupro_limits = {};
  const auto px = pixel_metrics(s.data(), mask.data(), 1, 2, 4, req);
  CHECK(px.binary.ap == Approx(m.ap).epsilon(1e-12));
  CHECK(px.binary.auroc == Approx(m.auroc).epsilon(1e-12));
  CHECK(px.binary.f1_max == Approx(0.75).epsilon(1e-12));
}

TEST_CASE("AUPRO closed forms", "[metric]") {
  // One 2x2 region fully covered by the highest scores: PRO = 1 from FPR 0, so AUPRO = 1.
  const int64_t h = 4, w = 4;
  std::vector<uint8_t> mask(16, 0);
  for (int r : {1, 2})
    for (int c : {1, 2}) mask[r * w + c] = 1;
  std::vector<float> map(16);
  for (int i = 0; i < 16; ++i) map[i] = mask[i] ? 1.0f + 0.01f * i : 0.01f * i;
  PixelRequest req;
  req.aupro_limits = {0.3, 1.0};
  auto m = pixel_metrics(map.data(), mask.data(), 1, h, w, req);
  CHECK(m.regions == 1);
  CHECK(m.aupro.at(0.3) == Approx(1.0).epsilon(1e-12));
  CHECK(m.aupro.at(1.0) == Approx(1.0).epsilon(1e-12));
  CHECK(m.binary.auroc == 1.0);

  // Reversed: the region scores lowest, PRO stays 0 until FPR = 1.
  for (auto& v : map) v = -v;
  m = pixel_metrics(map.data(), mask.data(), 1, h, w, req);
  CHECK(m.aupro.at(0.3) == 0.0);
  CHECK(m.binary.auroc == 0.0);

  // All scores tied: one threshold jumps from (0,0) to (1,1): area 1/2 up to 1; up to 0.3 the
  // interpolated line y = x gives 0.3^2 / 2 / 0.3 = 0.15.
  std::fill(map.begin(), map.end(), 0.25f);
  m = pixel_metrics(map.data(), mask.data(), 1, h, w, req);
  CHECK(m.aupro.at(1.0) == Approx(0.5).epsilon(1e-12));
  CHECK(m.aupro.at(0.3) == Approx(0.15).epsilon(1e-12));
  CHECK(m.binary.auroc == 0.5);

  // Two regions (8-connectivity joins diagonal neighbours, so they must be apart), one found
  // first: PRO = 1/2 at FPR 0, then everything at FPR 1 => area(limit 1) = 1/2 + (1/2 + 1)/2 * 1 ... minus
  // nothing: the curve is (0,0) -> (0,0.5) -> (1,1), area = (0.5 + 1) / 2 = 0.75.
  std::vector<uint8_t> two(16, 0);
  two[0] = 1;   // (0,0)
  two[5] = 1;   // (1,1): diagonal neighbour of (0,0) -> same 8-connected region
  two[15] = 1;  // (3,3): its own region
  std::vector<float> sc(16, 0.f);
  sc[15] = 1.f;  // only the single-pixel region is found first
  m = pixel_metrics(sc.data(), two.data(), 1, h, w, req);
  CHECK(m.regions == 2);
  CHECK(m.aupro.at(1.0) == Approx(0.75).epsilon(1e-12));
  // Up to 0.3: y = 0.5 + 0.5 x -> integral 0.15 + 0.0225 = 0.1725, / 0.3 = 0.575.
  CHECK(m.aupro.at(0.3) == Approx(0.575).epsilon(1e-12));
}

TEST_CASE("empty masks: images without defects only add defect-free pixels", "[metric]") {
  // Image 0 has a region; image 1 is empty. Adding the empty image with low scores leaves pixel
  // AUROC at 1 and AUPRO at 1; with high scores it adds false positives.
  const int64_t h = 2, w = 2;
  std::vector<uint8_t> masks = {1, 0, 0, 0, 0, 0, 0, 0};
  std::vector<float> maps = {0.9f, 0.1f, 0.1f, 0.1f, 0.0f, 0.0f, 0.0f, 0.0f};
  PixelRequest req;
  req.aupro_limits = {0.3};
  auto m = pixel_metrics(maps.data(), masks.data(), 2, h, w, req);
  CHECK(m.binary.auroc == 1.0);
  CHECK(m.aupro.at(0.3) == Approx(1.0));
  maps = {0.5f, 0.1f, 0.1f, 0.1f, 0.9f, 0.9f, 0.0f, 0.0f};
  m = pixel_metrics(maps.data(), masks.data(), 2, h, w, req);
  // Negatives: 0.1 x3, 0.9 x2, 0.0 x2 -> the positive beats 5 of 7.
  CHECK(m.binary.auroc == Approx(5.0 / 7).epsilon(1e-12));
}

TEST_CASE("bad metric inputs give clear errors", "[metric]") {
  CHECK_THROWS_WITH(binary_metrics({0.1f, 0.2f}, {0}), Contains("2 scores but 1 labels"));
  CHECK_THROWS_WITH(binary_metrics({0.1f, NAN}, {0, 1}), Contains("NaN"));
  CHECK_THROWS_WITH(binary_metrics({0.1f, INFINITY}, {0, 1}), Contains("infinite"));
  CHECK_THROWS_WITH(binary_metrics({0.1f, 0.2f}, {0, 0}), Contains("AUROC needs at least one anomalous"));
  CHECK_THROWS_WITH(binary_metrics({0.1f, 0.2f}, {1, 1}), Contains("normal (label 0)"));
  CHECK_THROWS_WITH(binary_metrics({0.1f, 0.2f}, {0, 2}), Contains("must be 0 (normal) or 1"));
  BinaryRequest ap_only{false, true, false};
  CHECK(binary_metrics({0.1f, 0.2f}, {1, 1}, ap_only).ap == 1.0);
  CHECK_THROWS_WITH(binary_metrics({0.1f, 0.2f}, {0, 0}, ap_only), Contains("AP needs at least one anomalous"));

  std::vector<float> map(8, 0.f);
  std::vector<uint8_t> mask(8, 0);
  CHECK_THROWS_WITH(pixel_metrics(map.data(), mask.data(), 2, 2, 2), Contains("needs at least one defect pixel"));
  PixelRequest pro_only{false, false, false, {0.3}};
  CHECK_THROWS_WITH(pixel_metrics(map.data(), mask.data(), 2, 2, 2, pro_only),
                    Contains("AUPRO needs at least one ground-truth region"));
  mask[3] = 255;
  CHECK_THROWS_WITH(pixel_metrics(map.data(), mask.data(), 2, 2, 2), Contains("masks must be 0/1"));
  mask[3] = 1;
  map[6] = NAN;
  CHECK_THROWS_WITH(pixel_metrics(map.data(), mask.data(), 2, 2, 2), Contains("anomaly map 1 has a NaN value at pixel (1, 0)"));
  map[6] = 0;
  PixelRequest bad_limit;
  bad_limit.aupro_limits = {1.5};
  CHECK_THROWS_WITH(pixel_metrics(map.data(), mask.data(), 2, 2, 2, bad_limit), Contains("outside (0, 1]"));
}

TEST_CASE("descending keys order floats and round-trip", "[metric]") {
  const std::vector<float> v = {-INFINITY, -3.5f, -1e-30f, 0.f, 1e-30f, 0.25f, 7.f, INFINITY};
  for (std::size_t i = 0; i + 1 < v.size(); ++i) CHECK(descending_key(v[i]) > descending_key(v[i + 1]));
  for (float x : v) CHECK(score_of_descending_key(descending_key(x)) == x);
  CHECK(descending_key(-0.f) == descending_key(0.f));
}
