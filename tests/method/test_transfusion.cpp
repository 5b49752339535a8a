// TransFusion's transparency process: forward properties, exact restoration by the reverse
// loop from perfect estimates, and the method's map on a tiny network.
#include "adfw/method/transfusion.hpp"
#include "support.hpp"

using namespace adfw;

namespace {
struct Scene {
  torch::Tensor x0, source, mask;
  Scene() {
    torch::manual_seed(11);
    x0 = torch::rand({2, 3, 16, 16}, torch::kFloat64);
    source = torch::rand({2, 3, 16, 16}, torch::kFloat64);
    mask = torch::zeros({2, 1, 16, 16}, torch::kFloat64);
    mask.slice(2, 4, 10).slice(3, 3, 12).fill_(1.0);
    mask[1].slice(1, 0, 2).fill_(0.5);  // a soft region too
  }
};
}  // namespace

TEST_CASE("transparency forward: identity at t=0, untouched outside the mask, linear inside", "[transfusion]") {
  Scene s;
  const int64_t T = 20;
  auto at = [&](int64_t t) {
    return transparency_forward(s.x0, s.source, s.mask, torch::full({2}, t, torch::kInt64), T);
  };
  CHECK(torch::equal(at(0), s.x0));
  const torch::Tensor outside = (s.mask == 0).expand_as(s.x0);
  for (int64_t t : {1, 7, 19}) {
    torch::Tensor xt = at(t);
    CHECK(torch::equal(xt.masked_select(outside), s.x0.masked_select(outside)));
    // Inside a full-mask pixel: (1 - t/19) * x0 + t/19 * e.
    const double b = t / 19.0;
    CHECK(xt[0][1][5][5].item<double>() ==
          Approx((1 - b) * s.x0[0][1][5][5].item<double>() + b * s.source[0][1][5][5].item<double>()));
  }
  // At the last step the full-mask region shows the anomaly appearance alone.
  CHECK(at(19)[0][2][6][6].item<double>() == Approx(s.source[0][2][6][6].item<double>()));
  CHECK(transparency_beta(0, T) == 0.0);
  CHECK(transparency_beta(19, T) == 1.0);
  // Per-sample steps.
  torch::Tensor mixed = transparency_forward(s.x0, s.source, s.mask, torch::tensor({0, 19}), T);
  CHECK(torch::equal(mixed[0], s.x0[0]));
  CHECK(torch::allclose(mixed[1], at(19)[1]));
}

TEST_CASE("transparency reverse: perfect estimates restore the normal image", "[transfusion]") {
  Scene s;
  const int64_t T = 20;
  torch::Tensor xT = transparency_forward(s.x0, s.source, s.mask, torch::full({2}, T - 1, torch::kInt64), T);
  int calls = 0;
  auto [restored, last] = transparency_restore(xT, T - 1, T, [&](const torch::Tensor& xt, const torch::Tensor& prev,
                                                                 int64_t t) {
    // Each intermediate state is the forward process at t.
    CHECK(torch::allclose(xt, transparency_forward(s.x0, s.source, s.mask, torch::full({2}, t, torch::kInt64), T),
                          1e-12, 1e-12));
    if (calls == 0) CHECK(prev.abs().sum().item<double>() == 0.0);
    ++calls;
    return TransparencyEstimates{s.source, s.mask, s.x0};
  });
  CHECK(calls == T - 1);
  CHECK(torch::allclose(restored, s.x0, 1e-12, 1e-12));
  // One step moves exactly one schedule increment.
  torch::Tensor x5 = transparency_forward(s.x0, s.source, s.mask, torch::full({2}, 5, torch::kInt64), T);
  torch::Tensor x4 = transparency_forward(s.x0, s.source, s.mask, torch::full({2}, 4, torch::kInt64), T);
  CHECK(torch::allclose(transparency_reverse_step(x5, s.source, s.mask, s.x0, 5, T), x4, 1e-12, 1e-12));
  // Per-sample steps (training): sample 0 at step 5, sample 1 at step 12, each moves to its t-1.
  const torch::Tensor ts = torch::tensor({5, 12}, torch::kInt64);
  torch::Tensor xs = transparency_forward(s.x0, s.source, s.mask, ts, T);
  CHECK(torch::allclose(transparency_reverse_step(xs, s.source, s.mask, s.x0, ts, T),
                        transparency_forward(s.x0, s.source, s.mask, ts - 1, T), 1e-12, 1e-12));
  // Wrong estimates do not restore it.
  auto [bad, unused] = transparency_restore(xT, T - 1, T, [&](const torch::Tensor&, const torch::Tensor&, int64_t) {
    return TransparencyEstimates{s.source, torch::zeros_like(s.mask), s.x0};
  });
  CHECK(!torch::allclose(bad, s.x0, 1e-6, 1e-6));
}
