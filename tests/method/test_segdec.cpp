// Mixed-supervision SegDecNet: dynamic balancing, the decision-to-segmentation gradient multiplier,
// distance-transform loss weights, image-labelled samples, and the balanced (frequency) sampler.
#include <set>

#include "adfw/data/loader.hpp"
#include "methods/segdec/segdec.hpp"
#include "support.hpp"

using namespace adfw;

namespace {

SegDec::Options small_options(double multiplier) {
  SegDec::Options o;
  o.network.widths = {2, 4, 8};
  o.dec_grad_multiplier = multiplier;
  return o;
}

/// Gradients of every parameter after backward of the decision loss alone.
std::map<std::string, torch::Tensor> decision_grads(double multiplier, const torch::Tensor& images) {
  RunContext run;
  SegDec s(small_options(multiplier));
  s.build(run);  // the same init seed for every multiplier
  SegDec::Targets t{torch::zeros({1, 1, 16, 8}), torch::ones({1, 1, 16, 8}), torch::ones({1}), torch::ones({1})};
  const SegDec::Step st = s.step(s.forward(images), t, /*w_seg=*/0.0, /*w_dec=*/1.0);
  st.values.total.backward();
  std::map<std::string, torch::Tensor> g;
  for (const auto& p : s.network().module()->named_parameters())
    g[p.key()] = p.value().grad().defined() ? p.value().grad().clone() : torch::zeros_like(p.value());
  return g;
}

}  // namespace

TEST_CASE("segdec: dynamic balancing weights per epoch", "[segdec]") {
  adfw::test::load_builtin_plugins();  // the scoring slots' registered reducers
  SegDec::Options o;
  o.trainer.epochs = 50;
  o.delta = 2.0;
  const SegDec s(o);
  // end2end.py get_loss_weights: (1 - e/E, delta * e/E).
  CHECK(s.loss_weights(0).first == 1.0);
  CHECK(s.loss_weights(0).second == 0.0);
  CHECK(s.loss_weights(10).first == Approx(0.8));
  CHECK(s.loss_weights(10).second == Approx(0.4));
  CHECK(s.loss_weights(25).first == Approx(0.5));
  CHECK(s.loss_weights(25).second == Approx(1.0));
  CHECK(s.loss_weights(49).first == Approx(0.02));
  CHECK(s.loss_weights(49).second == Approx(1.96));
  o.dynamic_balancing = false;
  const SegDec fixed(o);
  CHECK(fixed.loss_weights(0) == std::make_pair(1.0, 2.0));
  CHECK(fixed.loss_weights(40) == std::make_pair(1.0, 2.0));
}

TEST_CASE("segdec: the gradient multiplier scales what the decision loss sends into the segmentation network",
          "[segdec]") {
  adfw::test::load_builtin_plugins();  // the scoring slots' registered reducers
  torch::manual_seed(3);
  const torch::Tensor images = torch::rand({1, 3, 128, 64});
  const auto g0 = decision_grads(0.0, images);
  const auto g1 = decision_grads(1.0, images);
  const auto gh = decision_grads(0.5, images);
  int seg_params = 0, dec_params = 0;
  for (const auto& [name, grad] : g1) {
    INFO(name);
    const bool seg_net = name.rfind("volume.", 0) == 0 || name.rfind("seg_mask.", 0) == 0;
    if (seg_net) {
      ++seg_params;
      CHECK(g0.at(name).abs().max().item<double>() == 0.0);
      CHECK(torch::allclose(gh.at(name), 0.5 * grad, 1e-4, 1e-9));
    } else {
      ++dec_params;
      CHECK(torch::equal(g0.at(name), grad));  // the extractor and fc do not depend on the multiplier
      CHECK(torch::equal(gh.at(name), grad));
    }
  }
  CHECK(seg_params == 30);  // 9 volume blocks x 3 + seg_mask conv, scale, bias
  CHECK(dec_params == 11);  // 3 extractor blocks x 3 + fc weight, bias
  // Multiplier 1 reaches the volume at all.
  CHECK(g1.at("volume.0.0.weight").abs().max().item<double>() > 0.0);
}

TEST_CASE("segdec: distance-transform loss weights of a hand-computed mask", "[segdec]") {
  adfw::test::load_builtin_plugins();  // the scoring slots' registered reducers
  // A 3x3 square with a pixel touching its corner diagonally (one 8-connected component) and a
  // lone pixel in the top-right corner (a second component).
  torch::Tensor m = torch::zeros({7, 7});
  m.slice(0, 2, 5).slice(1, 2, 5).fill_(1.0);
  m[5][5] = 1.0;
  m[0][6] = 0.5;
  const torch::Tensor w = segdec_distance_weights(m, 3.0, 2.0);
  // Square: the centre is 2 from the nearest outside pixel, the rest 1 (and the diagonal pixel 1):
  // normalised by 2, squared, times 3 -> 3 at the centre, 0.75 elsewhere. The lone pixel: 1 / 1 -> 3.
  torch::Tensor want = torch::ones({7, 7});
  want.slice(0, 2, 5).slice(1, 2, 5).fill_(0.75);
  want[3][3] = 3.0;
  want[5][5] = 0.75;
  want[0][6] = 3.0;
  CHECK(torch::allclose(w, want, 0, 1e-6));

  // Downsizing: reflection pad 8, 17x17 mean, stride 8.
  const torch::Tensor ones = segdec_downsize(torch::ones({16, 24}));
  CHECK(ones.sizes() == torch::IntArrayRef({1, 2, 3}));
  CHECK(torch::allclose(ones, torch::ones({1, 2, 3})));
  torch::Tensor dot = torch::zeros({16, 16});
  dot[0][0] = 289.0;  // reflected to nowhere else; output (0,0) averages rows/cols -8..8
  CHECK(segdec_downsize(dot)[0][0][0].item<float>() == Approx(1.0));
}

TEST_CASE("segdec: image-labelled samples get no segmentation loss", "[segdec]") {
  adfw::test::load_builtin_plugins();  // the scoring slots' registered reducers
  RunContext run;
  SegDec s(small_options(0.0));
  s.build(run);
  torch::manual_seed(5);
  const torch::Tensor images = torch::rand({2, 3, 128, 64});
  torch::Tensor mask = torch::zeros({2, 1, 16, 8});
  mask[0][0][4][4] = 1.0;
  mask[1][0][8][2] = 1.0;
  // Sample 0 pixel-labelled, sample 1 image-labelled.
  const SegDec::Targets t{mask, torch::ones({2, 1, 16, 8}), torch::ones({2}), torch::tensor({1.0f, 0.0f})};
  const SegDec::Step st = s.step(s.forward(images), t, 0.7, 0.3);
  CHECK(st.loss[0].item<double>() ==
        Approx(0.7 * st.loss_seg[0].item<double>() + 0.3 * st.loss_dec[0].item<double>()));
  CHECK(st.loss[1].item<double>() == Approx(0.3 * st.loss_dec[1].item<double>()));
  CHECK(st.loss_seg[1].item<double>() > 0.0);  // computed, but not part of the loss

  // With the decision weight at 0 an image-labelled sample trains nothing.
  const SegDec::Targets t1{mask.slice(0, 1, 2), torch::ones({1, 1, 16, 8}), torch::ones({1}), torch::zeros({1})};
  const SegDec::Step only = s.step(s.forward(images.slice(0, 1, 2)), t1, 1.0, 0.0);
  only.values.total.backward();
  for (const auto& p : s.network().module()->parameters())
    if (p.grad().defined()) CHECK(p.grad().abs().max().item<double>() == 0.0);

  // The loader hook: an image-labelled anomaly is not segmented and its decision target is 1.
  const auto hook = s.target_hook();
  Sample sample;
  sample.image = torch::zeros({3, 128, 64});
  sample.info.label = 1;
  sample.info.supervision = Supervision::image_label;
  std::mt19937_64 g(0);
  hook(sample, g);
  CHECK(sample.extras.at("is_segmented").item<float>() == 0.0f);
  CHECK(sample.extras.at("is_pos").item<float>() == 1.0f);
  CHECK(sample.extras.at("seg_mask").sizes() == torch::IntArrayRef({1, 16, 8}));
}

TEST_CASE("loader: balanced samplers hold every anomalous image and as many normal ones", "[segdec][data]") {
  std::vector<SampleInfo> samples;
  for (int i = 0; i < 12; ++i) {
    SampleInfo s;
    s.path = "img" + std::to_string(i) + ".png";
    s.label = i < 3 ? 1 : 0;  // 3 positives, 9 negatives
    samples.push_back(s);
  }
  for (const std::string sampler : {"balanced", "balanced_frequency"}) {
    INFO(sampler);
    LoaderOptions o;
    o.batch_size = 2;
    o.shuffle = true;
    o.seed = 7;
    o.sampler = sampler;
    Loader loader(samples, TransformOptions{}, o);
    CHECK(loader.num_batches() == 3);
    for (int64_t e = 0; e < 6; ++e) {
      const auto idx = loader.epoch_samples(e);
      REQUIRE(idx.size() == 6);
      CHECK(std::vector<std::size_t>(idx.begin(), idx.begin() + 3) == std::vector<std::size_t>{0, 1, 2});
      const std::set<std::size_t> neg(idx.begin() + 3, idx.end());
      CHECK(neg.size() == 3);  // without replacement
      for (std::size_t i : neg) CHECK(i >= 3);
      CHECK(loader.epoch_samples(e) == idx);  // a pure function of (seed, epoch)
      std::size_t planned = 0;
      for (const auto& b : loader.epoch_plan(e)) planned += b.size();
      CHECK(planned == 6);
    }
  }
  // Frequency sampling: after the first epoch the negatives drawn once have probability 0 while
  // others were never drawn (q = 1 - freq / max(freq) = 0 for them, and the median is 1), so the
  // second epoch draws three new ones.
  LoaderOptions o;
  o.seed = 11;
  o.sampler = "balanced_frequency";
  Loader loader(samples, TransformOptions{}, o);
  const auto e0 = loader.epoch_samples(0), e1 = loader.epoch_samples(1);
  for (std::size_t i = 3; i < 6; ++i)
    for (std::size_t j = 3; j < 6; ++j) CHECK(e0[i] != e1[j]);
  // "all" keeps every sample.
  LoaderOptions plain;
  Loader all(samples, TransformOptions{}, plain);
  CHECK(all.epoch_samples(3).size() == 12);
  o.sampler = "nope";
  CHECK_THROWS_WITH(Loader(samples, TransformOptions{}, o), Catch::Contains("loader.sampler"));
}

TEST_CASE("segdec: the fitted state, saved and loaded into a fresh instance, gives the same maps and scores",
          "[segdec]") {
  adfw::test::load_builtin_plugins();  // the scoring slots' registered reducers
  RunContext a;
  a.seeds.experiment = 1;
  SegDec fitted(small_options(0.0));
  fitted.build(a);
  const auto file = test::temp_dir("segdec_state") / "model.safetensors";
  save_state_dict(fitted.state(), file);
  RunContext b;  // another init seed: only the loaded state can make the two agree
  b.seeds.experiment = 2;
  SegDec loaded(small_options(0.0));
  loaded.load_state(load_state_dict(file), b, file.string());
  Batch batch;
  torch::manual_seed(6);
  batch.images = torch::rand({2, 3, 128, 64});
  batch.info.resize(2);
  const Prediction p = fitted.predict(batch, a), q = loaded.predict(batch, b);
  CHECK(torch::equal(p.maps, q.maps));
  CHECK(torch::equal(p.scores, q.scores));
  StateDict extra = load_state_dict(file);
  extra["head.weight"] = torch::zeros({1});
  SegDec refused(small_options(0.0));
  CHECK_THROWS_WITH(refused.load_state(extra, b, "extra.safetensors"),
                    Catch::Contains("head.weight") && Catch::Contains("extra.safetensors"));
}
