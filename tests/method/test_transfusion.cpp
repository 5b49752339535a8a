// TransFusion's transparency process: forward properties, exact restoration by the reverse
// loop from perfect estimates (the noise head's target beta_t * M * A), and the loop's mask
// handling (thresholded update and feedback, summed soft masks), and the training step's
// first-half rule and rotation (off in the reference fixtures). The network-level behaviour is
// checked against the reference in test_parity_transfusion.cpp.
#include <cmath>

#include "adfw/core/options.hpp"
#include "methods/transfusion/transfusion.hpp"
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
    mask[1].slice(1, 0, 2).fill_(1.0);
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
  auto forward = [&](const torch::Tensor& t) { return transparency_forward(s.x0, s.source, s.mask, t, T); };
  // The noise head's target at step t: beta_t * M * A.
  auto noise = [&](int64_t t) { return transparency_beta(t, T) * s.mask * s.source; };
  torch::Tensor xT = forward(torch::full({2}, T - 1, torch::kInt64));
  int calls = 0;
  const TransparencyRestoration r =
      transparency_restore(xT, T - 1, T, false, [&](const torch::Tensor& xt, const torch::Tensor& prev, int64_t t) {
        // Each intermediate state is the forward process at t.
        CHECK(torch::allclose(xt, forward(torch::full({2}, t, torch::kInt64)), 1e-12, 1e-12));
        if (calls == 0) CHECK(prev.abs().sum().item<double>() == 0.0);
        ++calls;
        return TransparencyEstimates{noise(t), s.mask, s.x0, {}};
      });
  CHECK(calls == T - 1);
  CHECK(r.steps_run == T - 1);
  CHECK(torch::allclose(r.image, s.x0, 1e-12, 1e-12));
  CHECK(torch::allclose(r.mask_sum, (T - 1) * s.mask));
  // One step moves exactly one schedule increment.
  torch::Tensor x5 = forward(torch::full({2}, 5, torch::kInt64));
  torch::Tensor x4 = forward(torch::full({2}, 4, torch::kInt64));
  CHECK(torch::allclose(transparency_reverse_step(x5, noise(5), s.mask, s.x0, 5, T), x4, 1e-12, 1e-12));
  // The appearance itself (adfw's former target) is not what the update expects.
  CHECK(!torch::allclose(transparency_reverse_step(x5, s.source, s.mask, s.x0, 5, T), x4, 1e-6, 1e-6));
  // Per-sample steps (training): sample 0 at step 5, sample 1 at step 12, each moves to its t-1.
  const torch::Tensor ts = torch::tensor({5, 12}, torch::kInt64);
  const torch::Tensor noise_ts = torch::stack({noise(5)[0], noise(12)[1]});
  CHECK(torch::allclose(transparency_reverse_step(forward(ts), noise_ts, s.mask, s.x0, ts, T), forward(ts - 1), 1e-12,
                        1e-12));
  // Wrong estimates do not restore it.
  const TransparencyRestoration bad =
      transparency_restore(xT, T - 1, T, false, [&](const torch::Tensor&, const torch::Tensor&, int64_t t) {
        return TransparencyEstimates{noise(t), torch::zeros_like(s.mask), s.x0, {}};
      });
  CHECK(!torch::allclose(bad.image, s.x0, 1e-6, 1e-6));
}

TEST_CASE("transparency reverse loop: masks thresholded at 0.5 for the update and the feedback, soft ones summed",
          "[transfusion]") {
  Scene s;
  const int64_t T = 20;
  // A mask estimate of 0.6 inside the region and 0.3 outside.
  const torch::Tensor soft = 0.3 + 0.3 * s.mask;
  const torch::Tensor zero = torch::zeros_like(s.x0);
  for (bool soft_masks : {false, true}) {
    std::vector<torch::Tensor> inputs;
    const TransparencyRestoration r = transparency_restore(
        s.x0, 3, T, soft_masks,
        [&](const torch::Tensor&, const torch::Tensor& mask_in, int64_t t) {
          inputs.push_back(mask_in);
          // noise = beta_t * 1 so that the update subtracts d * M.
          return TransparencyEstimates{torch::full_like(s.x0, transparency_beta(t, T)), soft, zero, {}};
        },
        [&](int64_t, const torch::Tensor&, const TransparencyEstimates&, const torch::Tensor&) {});
    REQUIRE(inputs.size() == 3);
    CHECK(inputs[0].abs().sum().item<double>() == 0);
    CHECK(torch::allclose(r.mask_sum, 3 * soft));
    const double d = transparency_beta(1, T);
    if (!soft_masks) {
      CHECK(torch::equal(inputs[1], s.mask));
      // Three steps of -d inside the region (mask 1), nothing outside (mask 0).
      CHECK(torch::allclose(r.image, s.x0 - 3 * d * s.mask, 1e-12, 1e-12));
    } else {
      CHECK(torch::equal(inputs[1], soft));
      CHECK(torch::allclose(r.image, s.x0 - 3 * d * soft, 1e-12, 1e-12));
    }
  }
}

TEST_CASE("transfusion training step: first-half anomalies, rotation of every tensor alike", "[transfusion]") {
  test::load_builtin_plugins();
  const std::string text =
      "rotation_probability = 1.0\n"
      "[network]\ntype = 'diffusion_unet'\nbase = 32\nmultipliers = [1]\nattention_levels = []\nres_blocks = 1\n"
      "[synthesizer]\ntype = 'transparency'\ntexture_probability = 0.0\n";
  TransFusion::Options o;
  read_options(o, toml::parse(text), "method");
  TransFusion tf(o);
  tf.build(RunContext{});
  torch::manual_seed(3);
  TransFusionTrainInput in;
  in.x0 = torch::rand({4, 3, 16, 16}) * 2 - 1;
  in.source = torch::rand({4, 3, 16, 16}) * 2 - 1;
  in.mask = torch::zeros({4, 1, 16, 16});
  in.mask.slice(2, 3, 11).slice(3, 5, 13).fill_(1.0);
  in.hint = in.mask.clone();
  in.t = torch::tensor({4, 9, 19, 2}, torch::kInt64);
  std::mt19937_64 rng(5);
  const TransFusionTrainStep s = tf.train_step(in, rng);
  // Samples 2 and 3 (second half) carry no anomaly; the masks stay binary under the rotation.
  CHECK(s.mask.slice(0, 2).abs().sum().item<double>() == 0);
  CHECK(s.hint.slice(0, 2).abs().sum().item<double>() == 0);
  CHECK(torch::equal(s.mask, (s.mask > 0.5).to(torch::kFloat)));
  CHECK(s.mask.slice(0, 0, 2).sum().item<double>() > 0);
  // Rotated (nearest, same grid for every tensor): the forward process still holds pixel by pixel.
  const torch::Tensor beta = in.t.to(torch::kFloat).view({4, 1, 1, 1}) / 19.0;
  CHECK(torch::allclose(s.x_t, (1 - s.mask) * s.x0 + (1 - beta) * s.mask * s.x0 + beta * s.mask * s.eps, 1e-6, 1e-6));
  CHECK(!torch::equal(s.x0, in.x0));
  CHECK(torch::equal(s.noise_target, beta * s.eps));
  CHECK(std::isfinite(s.losses.total.item<double>()));
}
