// TransFusion against its reference code (MaticFuc/ECCV_TransFusion@4e8e961): the training step
// (TransFusion.py TransFusion.loss) and the inference (utils/EvaluationUtils.py
// get_transparentfussion_sample, Experiment.py evaluate) on tensors the reference computed,
// ../shared/fixtures/methods/transfusion (README section "methods/transfusion/").
#include <memory>
#include <string>
#include <vector>

#include "adfw/core/options.hpp"
#include "adfw/train/losses.hpp"
#include "methods/transfusion/transfusion.hpp"
#include "parity.hpp"

using namespace adfw;
using adfw::test::check_equal;
using adfw::test::check_parity;
using adfw::test::fixture;
using adfw::test::loss_term_value;
using adfw::test::scalar;
using adfw::test::kGradTol;

namespace {

// The fixture's UNet: n_channels 32, ch_mults [1, 2], attention at level 1, one block per level
// (README "methods/transfusion/"). The fixture's training step has the random rotation off.
std::unique_ptr<TransFusion> make_transfusion(const StateDict& weights) {
  const std::string text =
      "steps = 20\nrotation_probability = 0.0\n"
      "[network]\ntype = 'diffusion_unet'\nin_channels = 4\nout_channels = 7\nbase = 32\nmultipliers = [1, 2]\n"
      "attention_levels = [1]\nres_blocks = 1\ngroups = 32\n"
      "[synthesizer]\ntype = 'transparency'\ntexture_probability = 0.0\nsteps = 20\n";
  TransFusion::Options o;
  read_options(o, toml::parse(text), "method");
  auto tf = std::make_unique<TransFusion>(o);
  tf->build(RunContext{});
  StateDict w = weights;
  // positional-encodings' PositionalEncodingPermute2D(1) buffer: one frequency 1, i.e. the
  // sin(row) channel the diffusion U-Net appends itself.
  const auto it = w.find("model.pos_emb.penc.inv_freq");
  REQUIRE(it != w.end());
  CHECK(torch::equal(it->second, torch::ones({1})));
  w.erase(it);
  test::load_prefixed(*tf->module(), w, "model.");
  return tf;
}

}  // namespace

TEST_CASE("transfusion parity: training step (losses, heads, targets, gradients)", "[parity][transfusion]") {
  test::load_builtin_plugins();
  ADFW_REQUIRE_SHARED(dir, "fixtures/methods/transfusion");
  const StateDict io = load_state_dict(dir / "transfusion_train.safetensors");
  const auto net = make_transfusion(load_state_dict(dir / "transfusion_weights.safetensors"));
  TransFusion& tf = *net;
  tf.module()->train();

  // The reference synthesises anomalies for the first batch // 2 samples only; the last two get
  // the first two's anomalies here, which the training step must drop. Sample 1 is at t = 19,
  // where the step must zero the hint.
  const torch::Tensor appearance = fixture(io, "train.appearance");
  const torch::Tensor mask = fixture(io, "train.mask_in");
  const torch::Tensor hint = fixture(io, "train.hint_in");
  TransFusionTrainInput in;
  in.x0 = fixture(io, "train.x0");
  in.t = fixture(io, "train.t");
  in.source = torch::cat({appearance, appearance});
  in.mask = torch::cat({mask, mask});
  in.hint = torch::cat({hint, hint});
  std::mt19937_64 rng(0);
  const TransFusionTrainStep s = tf.train_step(in, rng);

  check_equal(s.mask, fixture(io, "train.mask"), "train.mask");
  check_equal(s.hint, fixture(io, "train.hint"), "train.hint");
  check_parity(s.eps, fixture(io, "train.eps"), "train.eps");
  check_parity(s.x_t, fixture(io, "train.x_t"), "train.x_t");
  check_parity(s.net_input, fixture(io, "train.net_input"), "train.net_input");
  check_parity(s.noise, fixture(io, "train.out.noise"), "train.out.noise");
  check_parity(s.normal, fixture(io, "train.out.mean"), "train.out.mean");
  check_parity(s.mask_logits, fixture(io, "train.out.mask_logits"), "train.out.mask_logits");
  check_parity(s.noise_target, fixture(io, "train.noise_target"), "train.noise_target");
  check_parity(s.next_actual, fixture(io, "train.next_actual"), "train.next_actual");
  check_parity(s.next_predicted, fixture(io, "train.next_predicted"), "train.next_predicted");

  // The method's own focal term: torchvision sigmoid_focal_loss defaults (alpha 0.25, gamma 2).
  const LossTerm* focal_term = nullptr;
  for (const LossTerm& t : tf.options().losses)
    if (t.type() == "focal") focal_term = &t;
  REQUIRE(focal_term != nullptr);
  const auto& focal = dynamic_cast<const FocalLoss&>(focal_term->loss());
  check_parity(focal.elementwise(s.mask_logits, s.mask), fixture(io, "train.focal_elementwise"),
               "train.focal_elementwise");
  // adfw's former focal form (no alpha) is the reference's alpha = -1 value, not the loss used.
  FocalOptions no_alpha;
  no_alpha.alpha = -1;
  check_parity(FocalLoss(no_alpha).forward(s.mask_logits, s.mask), fixture(io, "train.aux.focal_no_alpha_mean"),
               "train.aux.focal_no_alpha_mean");

  const LossValues& v = s.losses;
  const double focal_mean = loss_term_value(v, "focal:mask_logits"), smooth = loss_term_value(v, "smooth_l1:mask");
  const double ssim = loss_term_value(v, "ssim:normal"), l1 = loss_term_value(v, "l1:normal");
  check_parity(scalar(loss_term_value(v, "l2:noise")), fixture(io, "train.loss.anomaly"), "train.loss.anomaly");
  check_parity(scalar(focal_mean), fixture(io, "train.loss.focal_mean"), "train.loss.focal_mean");
  check_parity(scalar(smooth), fixture(io, "train.loss.smooth_l1"), "train.loss.smooth_l1");
  check_parity(scalar(5 * focal_mean + smooth), fixture(io, "train.loss.mask"), "train.loss.mask");
  check_parity(scalar(ssim), fixture(io, "train.loss.ssim"), "train.loss.ssim");
  check_parity(scalar(l1), fixture(io, "train.loss.l1"), "train.loss.l1");
  check_parity(scalar(ssim + l1), fixture(io, "train.loss.normal"), "train.loss.normal");
  check_parity(scalar(loss_term_value(v, "l2:next")), fixture(io, "train.loss.img"), "train.loss.img");
  check_parity(v.total, fixture(io, "train.loss.total"), "train.loss.total");

  v.total.backward();
  const auto params = tf.module()->named_parameters();
  for (const char* key : {"image_proj.weight", "down.0.res.conv1.weight", "middle.attn.projection.weight",
                          "final.weight", "final_mean.weight", "final_seg.conv.weight"}) {
    const std::string name = std::string("train.grad.model.") + key;
    const torch::Tensor* p = params.find(key);
    REQUIRE(p != nullptr);
    REQUIRE(p->grad().defined());
    check_parity(p->grad(), fixture(io, name), name, kGradTol);
  }
}

TEST_CASE("transfusion parity: reverse loop, averaged mask, maps and scores", "[parity][transfusion]") {
  test::load_builtin_plugins();
  ADFW_REQUIRE_SHARED(dir, "fixtures/methods/transfusion");
  const StateDict io = load_state_dict(dir / "transfusion_infer.safetensors");
  const auto net = make_transfusion(load_state_dict(dir / "transfusion_weights.safetensors"));
  TransFusion& tf = *net;

  const torch::Tensor image = fixture(io, "infer.image");  // [-1, 1]
  std::vector<int64_t> ts;
  std::vector<torch::Tensor> mask_in, logits, xs;
  torch::Tensor first_noise, first_mean;
  const TransFusionMaps m =
      tf.infer(image, [&](int64_t t, const torch::Tensor& in, const TransparencyEstimates& e, const torch::Tensor& next) {
        if (ts.empty()) first_noise = e.noise, first_mean = e.normal;
        ts.push_back(t);
        mask_in.push_back(in);
        logits.push_back(e.logits);
        xs.push_back(next);
      });

  // Steps 18 .. 1 (the reference never runs t = 19), each mask input binary.
  check_equal(torch::tensor(ts), fixture(io, "infer.step_t"), "infer.step_t");
  REQUIRE(ts.size() == 18);
  check_equal(torch::stack(mask_in, 1).to(torch::kUInt8), fixture(io, "infer.step_mask_in"), "infer.step_mask_in");
  check_parity(torch::stack(logits, 1), fixture(io, "infer.step_mask_logits"), "infer.step_mask_logits");
  check_parity(torch::stack(xs, 1), fixture(io, "infer.step_x"), "infer.step_x");
  check_parity(first_noise, fixture(io, "infer.first_step.out_noise"), "infer.first_step.out_noise");
  check_parity(first_mean, fixture(io, "infer.first_step.out_mean"), "infer.first_step.out_mean");
  check_parity(m.mask, fixture(io, "infer.mask_avg"), "infer.mask_avg");
  check_parity(m.reconstruction, fixture(io, "infer.reconstruction_01"), "infer.reconstruction_01");
  check_parity(m.recon_error.squeeze(1), fixture(io, "infer.recon_error"), "infer.recon_error");
  check_parity(m.map.squeeze(1), fixture(io, "infer.anomaly_map"), "infer.anomaly_map");

  // predict() on the pipeline's [0, 1] images: the same map and the max as image score.
  Batch b;
  b.images = image / 2 + 0.5;
  const Prediction p = tf.predict(b, RunContext{});
  check_parity(p.maps.squeeze(1), fixture(io, "infer.anomaly_map"), "predict maps");
  check_parity(p.scores, fixture(io, "infer.image_score"), "infer.image_score");
}
