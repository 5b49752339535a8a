// Curve traces (curve_points.hpp): thinned copies of the exact curves whose areas match the
// metrics computed from the full curves.
#include <cmath>
#include <random>

#include "adfw/core/error.hpp"
#include "adfw/metric/curve_points.hpp"
#include "adfw/metric/curves.hpp"
#include "support.hpp"

using namespace adfw::metric;

namespace {

double trapezoid(const std::vector<double>& x, const std::vector<double>& y) {
  double a = 0, px = 0, py = 0;  // ROC and PRO start at (0, 0), before the first kept point
  for (std::size_t i = 0; i < x.size(); ++i) {
    a += 0.5 * (y[i] + py) * (x[i] - px);
    px = x[i];
    py = y[i];
  }
  return a;
}

}  // namespace

TEST_CASE("image curve trace: small sets keep every point, thinning bounds the point count", "[curves][trace]") {
  const std::vector<float> s = {0.9f, 0.8f, 0.7f, 0.6f, 0.55f, 0.4f, 0.3f, 0.2f};
  const std::vector<int64_t> l = {1, 1, 0, 1, 0, 0, 1, 0};
  const CurveTrace t = image_curve_trace(s.data(), l.data(), s.size());
  REQUIRE(t.threshold.size() == 8);  // every distinct score moves a rate by 1/4, far above 1/400
  CHECK(t.threshold.front() == 0.9f);
  CHECK(t.fpr.back() == 1.0);
  CHECK(t.tpr.back() == 1.0);
  CHECK(t.precision.front() == 1.0);
  CHECK(t.precision.back() == Approx(0.5));
  CHECK(trapezoid(t.fpr, t.tpr) == Approx(binary_metrics(s, l).auroc).margin(1e-12));
  CHECK(t.positives == 4);
  CHECK(t.negatives == 4);

  std::mt19937 rng(3);
  std::normal_distribution<float> d;
  std::vector<float> big;
  std::vector<int64_t> lab;
  for (int i = 0; i < 20000; ++i) {
    lab.push_back(i % 3 == 0);
    big.push_back(d(rng) + (i % 3 == 0 ? 1.0f : 0.0f));
  }
  CurveTraceOptions o;
  o.max_points = 100;
  const CurveTrace tb = image_curve_trace(big.data(), lab.data(), big.size(), o);
  CHECK(tb.threshold.size() < 800);
  CHECK(tb.threshold.size() > 100);
  CHECK(tb.fpr.back() == 1.0);
  CHECK(trapezoid(tb.fpr, tb.tpr) == Approx(binary_metrics(big, lab).auroc).margin(0.01));
  for (std::size_t i = 1; i < tb.fpr.size(); ++i) {
    CHECK(tb.fpr[i] >= tb.fpr[i - 1]);
    CHECK(tb.threshold[i] < tb.threshold[i - 1]);
  }
  const std::vector<int64_t> one_class(8, 0);
  CHECK_THROWS_AS(image_curve_trace(s.data(), one_class.data(), s.size()), adfw::Error);
}

TEST_CASE("pixel curve trace: ROC and PRO end at (1, 1) and match the metrics' areas", "[curves][trace]") {
  const int64_t n = 3, h = 16, w = 16;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u;
  std::vector<float> maps(static_cast<std::size_t>(n * h * w));
  std::vector<uint8_t> masks(maps.size(), 0);
  for (std::size_t i = 0; i < maps.size(); ++i) maps[i] = u(rng);
  for (int y = 4; y < 8; ++y)
    for (int x = 4; x < 9; ++x) {
      masks[static_cast<std::size_t>(y * w + x)] = 1;
      maps[static_cast<std::size_t>(y * w + x)] += 0.5f;
      masks[static_cast<std::size_t>(2 * h * w + (y + 6) * w + x + 3)] = 1;
    }
  const CurveTrace t = pixel_curve_trace(maps.data(), masks.data(), n, h, w);
  REQUIRE(!t.pro.empty());
  CHECK(t.regions == 2);
  CHECK(t.fpr.back() == 1.0);
  CHECK(t.tpr.back() == 1.0);
  CHECK(t.pro.back() == Approx(1.0));
  PixelRequest r;
  r.aupro_limits = {1.0};
  const PixelMetrics m = pixel_metrics(maps.data(), masks.data(), n, h, w, r);
  CHECK(trapezoid(t.fpr, t.tpr) == Approx(m.binary.auroc).margin(1e-3));
  CHECK(trapezoid(t.fpr, t.pro) == Approx(m.aupro.at(1.0)).margin(1e-3));
  CurveTraceOptions no_pro;
  no_pro.pro = false;
  CHECK(pixel_curve_trace(maps.data(), masks.data(), n, h, w, no_pro).pro.empty());
}
