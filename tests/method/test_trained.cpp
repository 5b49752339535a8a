// Trained methods: mixed supervision reaches the losses as the SuperSimpleNet paper defines it,
// padding helpers, and the methods' default recipes parse.
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "adfw/data/dataset.hpp"
#include "adfw/method/trained.hpp"
#include "adfw/train/losses.hpp"
#include "methods/draem/draem.hpp"
#include "methods/riad/riad.hpp"
#include "methods/supersimplenet/supersimplenet.hpp"
#include "support.hpp"

namespace fs = std::filesystem;
using namespace adfw;

namespace {

void write_png(const fs::path& p, const cv::Mat& m) {
  fs::create_directories(p.parent_path());
  REQUIRE(cv::imwrite(p.string(), m));
}

/// KolektorSDD2 layout: 6 normal and 4 anomalous training images, 2 test images.
fs::path make_ksdd2(const fs::path& root) {
  for (int i = 0; i < 10; ++i) {
    const std::string id = std::to_string(10000 + i);
    cv::Mat img(32, 32, CV_8UC3, cv::Scalar(80 + 5 * i, 90, 100));
    cv::Mat mask = cv::Mat::zeros(32, 32, CV_8U);
    if (i >= 6) {
      cv::rectangle(img, {8, 8, 12, 12}, cv::Scalar(250, 250, 250), cv::FILLED);
      cv::rectangle(mask, {8, 8, 12, 12}, cv::Scalar(255), cv::FILLED);
    }
    write_png(root / "train" / (id + ".png"), img);
    write_png(root / "train" / (id + "_GT.png"), mask);
  }
  for (int i = 0; i < 2; ++i) {
    const std::string id = std::to_string(20000 + i);
    write_png(root / "test" / (id + ".png"), cv::Mat(32, 32, CV_8UC3, cv::Scalar(90, 90, 90)));
    write_png(root / "test" / (id + "_GT.png"), cv::Mat::zeros(32, 32, CV_8U));
  }
  return root;
}

/// The training samples of a make_ksdd2 set with N = 2 pixel-labelled and M = 2 image-labelled anomalies.
std::vector<SampleInfo> ksdd2_train(const std::string& name) {
  Ksdd2Options d;
  d.root = make_ksdd2(test::temp_dir(name)).string();
  d.n_pixel_labelled = 2;
  d.n_image_labelled = 2;
  return Ksdd2Dataset(d).samples(Split::train);
}

SuperSimpleNet::Options ssn_options(int64_t channels) {
  const std::string text = "[backbone]\ntype = 'resnet'\narch = 'resnet18'\nweights = 'random'\n"
                           "layers = ['layer1', 'layer2']\n"
                           "[adaptor]\ntype = 'feature_adaptor'\nin_channels = " + std::to_string(channels) +
                           "\n[segmentation]\ntype = 'ssn_segmentation_head'\nin_channels = " + std::to_string(channels) +
                           "\n[classification]\ntype = 'ssn_classification_head'\nin_channels = " +
                           std::to_string(channels) + "\n[noise]\ntype = 'supersimplenet'\n";
  SuperSimpleNet::Options o;
  read_options(o, toml::parse(text), "method");
  return o;
}

}  // namespace

TEST_CASE("supersimplenet: pixel losses only where pixel masks exist (mixed supervision)", "[method-trained]") {
  test::load_builtin_plugins();
  const auto train = ksdd2_train("ssn_ksdd2");
  REQUIRE(train.size() == 10);
  int n_pixel = 0, n_image = 0;
  for (const auto& s : train) {
    n_pixel += s.supervision == Supervision::pixel_mask;
    n_image += s.supervision == Supervision::image_label;
  }
  REQUIRE(n_pixel == 2);
  REQUIRE(n_image == 2);

  TransformOptions t;
  t.resize = 32;
  LoaderOptions lo;
  lo.batch_size = 10;
  lo.num_workers = 0;
  Loader loader(train, t, lo);
  auto batch = loader.next();
  REQUIRE(batch);

  SuperSimpleNet ssn(ssn_options(64 + 128));
  RunContext run;
  run.seeds.experiment = 3;
  ssn.build(run);
  std::mt19937_64 rng(5);
  auto st = ssn.step_tensors(*batch, rng, torch::kCPU);
  const torch::Tensor w = st.weights.at("mask");
  const int64_t n = batch->size();
  REQUIRE(w.size(0) == 2 * n);  // the batch is duplicated before the noise
  for (int64_t c = 0; c < 2; ++c)
    for (int64_t i = 0; i < n; ++i) {
      const bool image_only = batch->info[i].supervision == Supervision::image_label;
      CHECK(w[c * n + i].item<float>() == (image_only ? 0.0f : 1.0f));
    }
  // Pixel-labelled anomalies keep their ground truth in the target mask (at feature resolution).
  const torch::Tensor target = st.targets.at("mask");
  const torch::Tensor gt = downscale_mask(batch->masks, target.size(2), target.size(3));
  for (int64_t i = 0; i < n; ++i)
    if (batch->info[i].supervision == Supervision::pixel_mask) {
      CHECK(gt[i].sum().item<float>() > 0);
      CHECK((target[i] * gt[i]).sum().item<float>() == gt[i].sum().item<float>());
    }

  // Through the loss: the segmentation logits of image-label-only samples do not move the pixel
  // terms and receive no gradient; those of every other sample do.
  std::vector<LossTerm> pixel_terms = {
      loss_term("type = 'truncated_l1'\nmargin = 0.5\nprediction = 'segmentation'\ntarget = 'mask'"),
      loss_term("type = 'focal'\ngamma = 4.0\ninput = 'logits'\nprediction = 'segmentation'\ntarget = 'mask'")};
  torch::Tensor seg = st.outputs.at("segmentation").detach().clone().requires_grad_(true);
  LossValues base = evaluate_losses(pixel_terms, {{"segmentation", seg}}, st.targets, st.weights);
  base.total.backward();
  const torch::Tensor grad = seg.grad();
  for (int64_t j = 0; j < 2 * n; ++j) {
    const bool image_only = batch->info[j % n].supervision == Supervision::image_label;
    const double g = grad[j].abs().sum().item<double>();
    if (image_only) CHECK(g == 0.0);
    else CHECK(g > 0.0);
  }
  for (int64_t j = 0; j < n; ++j) {
    torch::Tensor moved = st.outputs.at("segmentation").detach().clone();
    moved[j] += 3.0;
    LossValues v = evaluate_losses(pixel_terms, {{"segmentation", moved}}, st.targets, st.weights);
    const bool image_only = batch->info[j].supervision == Supervision::image_label;
    if (image_only) CHECK(v.total.item<double>() == Approx(base.total.item<double>()).epsilon(1e-12));
    else CHECK(v.total.item<double>() != Approx(base.total.item<double>()).epsilon(1e-9));
  }
  // The image-level target keeps the image label of image-label-only anomalies.
  const torch::Tensor labels = st.targets.at("label");
  for (int64_t i = 0; i < n; ++i)
    if (batch->info[i].label == 1) CHECK(labels[i].item<float>() == 1.0f);


  // Stop-grad (on by default, as the reference's unsupervised setting) cuts the score's gradient
  // into the segmentation head only: the adaptor still learns from the classification loss.
  const auto grad_sum = [](Network& net) {
    double g = 0;
    for (const auto& p : net.module()->parameters())
      if (p.grad().defined()) g += p.grad().abs().sum().item<double>();
    return g;
  };
  for (const char* name : {"adaptor", "segmentation", "classification"})
    for (auto& p : ssn.part(name).module()->parameters()) p.mutable_grad() = torch::Tensor();
  std::mt19937_64 rng2(5);
  ssn.step_tensors(*batch, rng2, torch::kCPU).outputs.at("score").sum().backward();
  CHECK(grad_sum(ssn.part("adaptor")) > 0.0);
  CHECK(grad_sum(ssn.part("classification")) > 0.0);
  CHECK(grad_sum(ssn.part("segmentation")) == 0.0);
  CHECK_THROWS_WITH(ssn.part("decoder"), Catch::Contains("no part 'decoder'"));
}

TEST_CASE("pad_to_multiple / crop_to: reflect padding at the bottom-right, exact crop back", "[method-trained]") {
  torch::Tensor x = torch::arange(2 * 3 * 5 * 6, torch::kFloat32).reshape({2, 3, 5, 6});
  torch::Tensor p = pad_to_multiple(x, 4);
  CHECK(p.sizes() == torch::IntArrayRef({2, 3, 8, 8}));
  CHECK(torch::equal(crop_to(p, 5, 6), x));
  // Reflection: row 5 mirrors row 3, column 6 mirrors column 4.
  CHECK(torch::equal(p.select(2, 5).slice(2, 0, 6), x.select(2, 3)));
  CHECK(torch::equal(p.select(3, 6).slice(2, 0, 5), x.select(3, 4)));
  CHECK(pad_to_multiple(x.slice(2, 0, 4).slice(3, 0, 4), 4).sizes() == torch::IntArrayRef({2, 3, 4, 4}));
}

TEST_CASE("trained methods: the published recipes are the defaults", "[method-trained]") {
  test::load_builtin_plugins();
  Draem::Options d;
  CHECK(d.trainer.epochs == 700);
  CHECK(d.trainer.scheduler.gamma == Approx(0.2));
  SuperSimpleNet::Options s;
  CHECK(s.trainer.batch_size == 32);
  CHECK(s.trainer.scheduler.gamma == Approx(0.4));
  // model/supersimplenet.py get_optimizers: AdamW groups adaptor (lr 1e-4, AdamW's default weight
  // decay 0.01), segmentation and classification (lr 2e-4, weight decay 1e-5: the optimiser's).
  CHECK(s.trainer.optimizer.lr == Approx(2e-4));
  CHECK(s.trainer.optimizer.weight_decay == Approx(1e-5));
  REQUIRE(s.trainer.groups.size() == 1);
  CHECK(s.trainer.groups[0].name == "adaptor");
  CHECK(s.trainer.groups[0].lr == Approx(1e-4));
  CHECK(s.trainer.groups[0].weight_decay == Approx(1e-2));
  // model/supersimplenet.py AnomalyMapGenerator: torchvision GaussianBlur(25, sigma 4), reflect borders.
  REQUIRE(s.postprocess.parts().size() == 2);
  CHECK(s.postprocess.parts()[1].options<metric::GaussianOptions>().border == "reflect");
  CHECK(s.postprocess.parts()[1].options<metric::GaussianOptions>().kernel_size == 0);
  CHECK(s.aggregation == "supersimplenet");
  CHECK(s.image_score.type() == "method");
  // train.py run_unsup: bad = overlap = true.
  CHECK(SuperSimpleNetNoiseOptions{}.overlap);
  Riad::Options r;
  CHECK(r.cutout_sizes == std::vector<int64_t>{2, 4, 8, 16});
  REQUIRE(r.postprocess.parts().size() == 2);
  CHECK(r.postprocess.parts()[1].options<metric::GaussianOptions>().sigma == Approx(7.0));
}

TEST_CASE("supersimplenet: an image-space synthesizer feeds the backbone (synthesis = \"image\")", "[method-trained]") {
  test::load_builtin_plugins();
  const auto train = ksdd2_train("ssn_image_synth");
  REQUIRE(train.size() == 10);

  SuperSimpleNet::Options o = ssn_options(64 + 128);
  read_options(o, toml::parse("synthesis = 'image'\n[synthesizer]\ntype = 'perlin_self'\nanomaly_probability = 1.0\n"),
               "method");
  SuperSimpleNet ssn(o);
  TransformOptions t;
  t.resize = 64;
  LoaderOptions lo;
  lo.batch_size = 10;
  lo.num_workers = 0;
  Loader plain(train, t, lo);
  Loader synthetic(train, t, lo, ssn.image_synthesis_hook());
  const auto clean = plain.next();
  const auto batch = synthetic.next();
  REQUIRE(clean);
  REQUIRE(batch);
  const int64_t n = batch->size();
  int synthesised = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto& info = batch->info[static_cast<std::size_t>(i)];
    const bool real_anomaly = clean->info[static_cast<std::size_t>(i)].label == 1;
    if (real_anomaly) {
      // Real anomalies (supervised training) pass untouched, with their own supervision.
      CHECK(torch::equal(batch->images[i], clean->images[i]));
      CHECK(info.supervision == clean->info[static_cast<std::size_t>(i)].supervision);
      continue;
    }
    // Normal images carry a synthetic anomaly: changed only inside its mask, labelled with pixels.
    // (A Perlin mask can come out empty on a small image: then the image stays normal.)
    const torch::Tensor m = batch->masks[i];
    const bool anomalous = m.sum().item<double>() > 0;
    synthesised += anomalous;
    CHECK(info.label == (anomalous ? 1 : 0));
    if (anomalous) CHECK(info.supervision == Supervision::pixel_mask);
    CHECK(batch->has_mask[i].item<bool>());
    const torch::Tensor outside = (1 - m).expand_as(batch->images[i]).to(torch::kBool);
    CHECK(torch::equal(batch->images[i].masked_select(outside), clean->images[i].masked_select(outside)));
    if (anomalous) CHECK_FALSE(torch::equal(batch->images[i], clean->images[i]));
  }
  CHECK(synthesised >= 3);

  RunContext run;
  run.seeds.experiment = 3;
  ssn.build(run);
  std::mt19937_64 rng(5);
  const auto st = ssn.step_tensors(*batch, rng, torch::kCPU);
  // No feature noise and no duplication: the heads see the adapted features of the synthetic images.
  const torch::Tensor f = ssn.features(batch->images);
  {
    torch::NoGradGuard ng;
    CHECK(torch::allclose(st.adapted, ssn.part("adaptor").forward(f), 1e-6, 1e-6));
  }
  CHECK(st.outputs.at("segmentation").size(0) == n);
  // Targets: the masks brought to the feature grid as real masks are, image-label-only anomalies
  // with weight 0 (and no pixel target), labels as the batch has them.
  const torch::Tensor w = pixel_loss_weights(*batch);
  const torch::Tensor target = st.targets.at("mask");
  CHECK(torch::equal(target, downscale_mask(batch->masks * w, f.size(2), f.size(3))));
  CHECK(torch::equal(st.weights.at("mask"), w));
  CHECK(torch::equal(st.targets.at("label"), batch->labels.to(torch::kFloat32)));
  CHECK(target.sum().item<double>() > 0);
  CHECK(ssn.summary().at("synthesis").get<std::string>() == "image space: synthesizer perlin_self");
}
