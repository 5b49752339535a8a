// SimpleNet (a configuration of SuperSimpleNet, experiments/simplenet.toml) against its reference code
// (DonaldRR/SimpleNet@351a2b8, simplenet.py _embed/_predict/_train_discriminator, common.py):
// ../shared/fixtures/methods/simplenet (README section "methods/simplenet/"). The backbone is replaced
// by the fixture's layer2/layer3 maps; the embedding, projection, noise, discriminator, loss, map and
// image score run through SuperSimpleNet's own code.
#include "catch_compat.hpp"

#include "adfw/core/options.hpp"
#include "methods/supersimplenet/supersimplenet.hpp"
#include "parity.hpp"

using namespace adfw;
using test::check_parity;
using test::fixture;
using test::parameter;
using test::kGradTol;

namespace {

SuperSimpleNet::Options simplenet_fixture_options() {
  // The fixture's load(): pretrain_embed_dimension 20, target_embed_dimension 16, patchsize 3,
  // dsc_layers 2, dsc_hidden 32, dsc_margin 0.5, noise_std 0.015, pre_proj 1.
  const std::string text =
      "aggregation = 'simplenet'\nclassify = false\n"
      "[backbone]\ntype = 'resnet'\narch = 'resnet18'\nweights = 'random'\nlayers = ['layer2', 'layer3']\n"
      "[embedding]\npatch_size = 3\nlayer_dim = 20\ntarget_dim = 16\n"
      "[adaptor]\ntype = 'feature_adaptor'\n"
      "[noise]\ntype = 'simplenet'\nnoise_std = 0.015\n"
      "[segmentation]\ntype = 'simplenet_discriminator'\nlayers = 2\nhidden = 32\n"
      "[[losses]]\ntype = 'truncated_l1'\nmargin = 0.5\nprediction = 'segmentation'\ntarget = 'mask'\n"
      "[[postprocess]]\ntype = 'upsample'\n"
      "[[postprocess]]\ntype = 'gaussian'\nsigma = 4.0\nkernel_size = 33\nborder = 'symmetric'\n"
      "[image_score]\ntype = 'max'\nmap = 'raw'\n";
  SuperSimpleNet::Options o;
  read_options(o, toml::parse(text), "method");
  return o;
}

void load_weights(SuperSimpleNet& s, const StateDict& w) {
  // Projection's Linear (16, 16) is the adaptor's 1x1 conv (16, 16, 1, 1).
  StateDict proj = test::strip_prefix(w, "pre_projection.layers.0fc.");
  proj["weight"] = proj.at("weight").view({16, 16, 1, 1});
  load_into(*s.part("adaptor").module(), {{"projection.weight", proj.at("weight")}, {"projection.bias", proj.at("bias")}},
            "pre_projection.layers.0fc.*");
  test::load_prefixed(*s.part("segmentation").module(), w, "discriminator.");
}

/// (N,C,h,w) -> patch rows (N*h*w, C) in the reference's (image, y, x) order.
torch::Tensor rows(const torch::Tensor& m) { return m.permute({0, 2, 3, 1}).reshape({-1, m.size(1)}); }

}  // namespace

TEST_CASE("simplenet parity: embedding, inference, image score and one discriminator step match the reference",
          "[parity][simplenet]") {
  ADFW_REQUIRE_SHARED(dir, "fixtures/methods/simplenet");
  test::load_builtin_plugins();
  const StateDict io = load_state_dict(dir / "simplenet_io.safetensors");
  const StateDict weights = load_state_dict(dir / "simplenet_weights.safetensors");
  const std::map<std::string, torch::Tensor> taps = {{"layer2", fixture(io, "features.layer2")},
                                                     {"layer3", fixture(io, "features.layer3")}};
  SuperSimpleNet net(simplenet_fixture_options());
  PatchAggregationTrace trace;
  const torch::Tensor features = net.aggregate(taps, &trace);
  REQUIRE(trace.patches.size() == 2);
  check_parity(trace.patches[0], fixture(io, "embed.patches.layer2"), "embed.patches.layer2");
  check_parity(trace.patches[1], fixture(io, "embed.patches.layer3"), "embed.patches.layer3");
  check_parity(trace.pooled, fixture(io, "embed.preprocessed"), "embed.preprocessed");
  check_parity(rows(features), fixture(io, "embed.features"), "embed.features");

  RunContext run;
  net.build(run);

  SECTION("_predict: patch scores, image score from the raw patch scores, smoothed segmentation") {
    load_weights(net, weights);
    const SuperSimpleNet::Inference r = net.infer(features, 64, 64);
    check_parity(rows(r.adapted), fixture(io, "eval.projected"), "eval.projected");
    check_parity(r.raw_map.squeeze(1), fixture(io, "eval.patch_scores"), "eval.patch_scores");
    check_parity(r.scores, fixture(io, "eval.image_score"), "eval.image_score");
    check_parity(r.map.squeeze(1), fixture(io, "eval.segmentation"), "eval.segmentation");
  }

  SECTION("_train_discriminator: one iteration with the reference's noise") {
    load_weights(net, weights);
    net.part("adaptor").module()->train();
    net.part("segmentation").module()->train();
    Batch batch;
    batch.masks = torch::zeros({2, 1, 64, 64});
    batch.labels = torch::zeros({2}, torch::kInt64);
    batch.info.resize(2);
    FeatureNoiseDraws draws;
    draws.noise = fixture(io, "train.noise").view({2, 8, 8, 16}).permute({0, 3, 1, 2});
    SuperSimpleNet::StepTensors st = net.step_tensors(features, batch, draws);
    check_parity(rows(st.adapted), fixture(io, "train.true_feats"), "train.true_feats");
    // Our head outputs the anomaly score -D; the reference's scores are D of cat(true, fake).
    const torch::Tensor map = st.outputs.at("segmentation");
    const torch::Tensor d = -rows(map.detach());
    check_parity(d, fixture(io, "train.scores"), "train.scores");
    check_parity((-d.slice(0, 0, 128) + 0.5).clamp_min(0), fixture(io, "train.trunc_true"), "train.trunc_true");
    check_parity((d.slice(0, 128, 256) + 0.5).clamp_min(0), fixture(io, "train.trunc_fake"), "train.trunc_fake");
    const LossValues lv = net.losses(st);
    check_parity(lv.total, fixture(io, "train.loss.total"), "train.loss.total");
    lv.total.backward();
    for (const char* name : {"body.block1.0.weight", "body.block1.1.weight", "body.block1.1.bias", "tail.weight"}) {
      const std::string ref = std::string("train.grad.discriminator.") + name;
      check_parity(parameter(*net.part("segmentation").module(), name).grad(), fixture(io, ref), ref, kGradTol);
    }
    check_parity(parameter(*net.part("adaptor").module(), "projection.weight").grad().view({16, 16}),
                 fixture(io, "train.grad.pre_projection.layers.0fc.weight"), "train.grad.pre_projection.layers.0fc.weight",
                 kGradTol);
  }
}
