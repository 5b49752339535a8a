// SuperSimpleNet against its reference code (blaz-r/SuperSimpleNet@60d1e74, model/supersimplenet.py,
// model/feature_extractor.py, train.py): ../shared/fixtures/methods/supersimplenet (README section
// "methods/supersimplenet/"). The backbone is replaced by the fixture's layer2/layer3 maps; everything
// after it (aggregation, adaptor, feature noise with the reference's draws, heads, losses, maps and
// scores) runs through SuperSimpleNet's own code.
#include "catch_compat.hpp"

#include "adfw/core/options.hpp"
#include "adfw/train/losses.hpp"
#include "methods/supersimplenet/supersimplenet.hpp"
#include "parity.hpp"

using namespace adfw;
using test::check_equal;
using test::check_parity;
using test::fixture;
using test::scalar;
using test::parameter;
using test::kGradTol;

namespace {

SuperSimpleNet::Options ssn_fixture_options(int64_t pool) {
  // train.py run_unsup("mvtec"): noise inside Perlin masks, bad = overlap = true, stop_grad.
  const std::string text =
      "[backbone]\ntype = 'resnet'\narch = 'resnet18'\nweights = 'random'\nlayers = ['layer2', 'layer3']\n"
      "[adaptor]\ntype = 'feature_adaptor'\n"
      "[segmentation]\ntype = 'ssn_segmentation_head'\nhidden = 1024\n"
      "[classification]\ntype = 'ssn_classification_head'\nhidden = 128\nkernel_size = 5\n"
      "[noise]\ntype = 'supersimplenet'\nnoise_std = 0.015\nbad = true\noverlap = true\n"
      "[noise.perlin]\nthreshold = 0.2\n";
  SuperSimpleNet::Options o;
  read_options(o, toml::parse(text), "method");
  o.pool = pool;
  return o;
}

/// The `prefix`-ed keys of `state` with `strip` removed from their front.
StateDict select(const StateDict& state, const std::vector<std::string>& prefixes, const std::string& strip) {
  StateDict out;
  for (const auto& [k, v] : state)
    for (const auto& p : prefixes)
      if (k.rfind(p, 0) == 0) out[k.substr(strip.size())] = v;
  return out;
}

void load_weights(SuperSimpleNet& ssn, const StateDict& w) {
  test::load_prefixed(*ssn.part("adaptor").module(), w, "feature_adaptor.");
  load_into(*ssn.part("segmentation").module(), select(w, {"discriminator.seg."}, "discriminator."),
            "discriminator.seg.*");
  load_into(*ssn.part("classification").module(),
            select(w, {"discriminator.dec_head.", "discriminator.fc_score."}, "discriminator."),
            "discriminator.dec_head.*, fc_score.*");
}

}  // namespace

TEST_CASE("supersimplenet parity: aggregation, training step, losses, gradients and inference match the reference",
          "[parity][supersimplenet]") {
  ADFW_REQUIRE_SHARED(dir, "fixtures/methods/supersimplenet");
  test::load_builtin_plugins();
  const StateDict io = load_state_dict(dir / "supersimplenet_io.safetensors");
  const StateDict weights = load_state_dict(dir / "supersimplenet_weights.safetensors");
  const std::map<std::string, torch::Tensor> taps = {{"layer2", fixture(io, "features.layer2")},
                                                     {"layer3", fixture(io, "features.layer3")}};
  RunContext run;

  // Aggregation: align_corners=True upscaling to twice layer2's size, then AvgPool2d(3, 1, 1).
  SuperSimpleNet no_pool(ssn_fixture_options(1));
  check_parity(no_pool.aggregate(taps), fixture(io, "train.features_concat"), "train.features_concat");
  SuperSimpleNet ssn(ssn_fixture_options(3));
  const torch::Tensor features = ssn.aggregate(taps);
  check_parity(features, fixture(io, "train.features"), "train.features");

  // The fixture's taps (24 channels in all) stand in for the backbone's: the parts are built for them.
  ssn.build(run, features.size(1));

  SECTION("eval: map, upsampling, blur and scores") {
    load_weights(ssn, weights);
    const SuperSimpleNet::Inference r = ssn.infer(features, 64, 64);
    check_parity(r.raw_map, fixture(io, "eval.map_raw"), "eval.map_raw");
    // The first part of the default postprocess chain: the upsampling before the blur.
    const auto upsample = SuperSimpleNet::Options{}.postprocess.parts().at(0).make();
    check_parity(upsample->apply(r.raw_map, {{64, 64}}), fixture(io, "eval.map_upsampled"), "eval.map_upsampled");
    check_parity(r.map, fixture(io, "eval.anomaly_map"), "eval.anomaly_map");
    check_parity(r.score_logits, fixture(io, "eval.score_logit"), "eval.score_logit");
    check_parity(r.scores, fixture(io, "eval.score"), "eval.score");
    check_parity(std::get<0>(r.map.flatten(1).max(1)), fixture(io, "eval.seg_score"), "eval.seg_score");
  }

  SECTION("one training step with the reference's noise and Perlin draws") {
    load_weights(ssn, weights);
    for (const char* part : {"adaptor", "segmentation", "classification"}) ssn.part(part).module()->train();
    Batch batch;
    batch.masks = fixture(io, "batch.mask").unsqueeze(1);
    batch.labels = fixture(io, "batch.label").to(torch::kInt64);
    batch.info.resize(2);
    batch.info[1].label = 1;
    batch.info[1].supervision = Supervision::pixel_mask;
    FeatureNoiseDraws draws;
    draws.noise = fixture(io, "noise");
    draws.perlin = fixture(io, "perlin_mask");

    // train.py: the ground truth at feature resolution (bilinear, then >= 0.5).
    check_equal(downscale_mask(batch.masks, 16, 16), fixture(io, "train.mask_down"), "train.mask_down");
    SuperSimpleNet::StepTensors st = ssn.step_tensors(features, batch, draws);
    check_parity(st.adapted, fixture(io, "train.adapted"), "train.adapted");
    check_parity(st.perturbed, fixture(io, "train.perturbed"), "train.perturbed");
    check_equal(st.targets.at("mask"), fixture(io, "train.mask"), "train.mask");
    check_equal(st.targets.at("label"), fixture(io, "train.label"), "train.label");
    const torch::Tensor map = st.outputs.at("segmentation");
    check_parity(map, fixture(io, "train.map"), "train.map");
    check_parity(st.outputs.at("score"), fixture(io, "train.score"), "train.score");
    // The truncated L1's elements (train.py: normal = map[mask == 0], anomalous = map[mask > 0]).
    const torch::Tensor mask = st.targets.at("mask");
    check_parity((map.detach().masked_select(mask == 0) + 0.5).clamp_min(0), fixture(io, "train.trunc_normal"),
                 "train.trunc_normal");
    check_parity((0.5 - map.detach().masked_select(mask > 0)).clamp_min(0), fixture(io, "train.trunc_anomalous"),
                 "train.trunc_anomalous");

    const LossValues lv = ssn.losses(st);
    REQUIRE(lv.terms.size() == 3);
    check_parity(scalar(lv.terms[0].second),
                 fixture(io, "train.loss.trunc_normal") + fixture(io, "train.loss.trunc_anomalous"),
                 "truncated_l1 = train.loss.trunc_normal + trunc_anomalous");
    check_parity(scalar(lv.terms[1].second), fixture(io, "train.loss.focal_map"), "train.loss.focal_map");
    check_parity(scalar(lv.terms[2].second), fixture(io, "train.loss.focal_score"), "train.loss.focal_score");
    check_parity(lv.total, fixture(io, "train.loss.total"), "train.loss.total");

    lv.total.backward();
    const std::vector<std::pair<std::string, std::string>> grads = {
        {"adaptor", "projection.weight"},       {"adaptor", "projection.bias"},
        {"segmentation", "seg.0.weight"},       {"segmentation", "seg.1.weight"},
        {"segmentation", "seg.3.weight"},       {"classification", "dec_head.1.weight"},
        {"classification", "fc_score.weight"},  {"classification", "fc_score.bias"}};
    for (const auto& [part, name] : grads) {
      const std::string ref = part == "adaptor" ? "train.grad.feature_adaptor." + name : "train.grad.discriminator." + name;
      check_parity(parameter(*ssn.part(part).module(), name).grad(), fixture(io, ref), ref, kGradTol);
    }
    check_parity(parameter(*ssn.part("classification").module(), "dec_head.0.weight").grad().slice(0, 0, 16),
                 fixture(io, "train.grad.discriminator.dec_head.0.weight[:16]"),
                 "train.grad.discriminator.dec_head.0.weight[:16]", kGradTol);
  }
}
