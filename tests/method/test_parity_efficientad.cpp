// EfficientAD against its reference code (nelson1425/EfficientAD@fcab514): efficientad.py main()'s
// teacher normalisation, first training iteration, map_normalization and test(), and
// pretraining.py's FeatureExtractor.embed, feature_normalization and first distillation step, on
// tensors the reference computed: ../shared/fixtures/methods/efficientad (README section
// "methods/efficientad/"). Widths are the fixture's (PDN 16 / 32, autoencoder 4 / 8, 4 teacher
// channels); kernels, strides, paddings and upsampling sizes are the reference's.
#include <memory>
#include <string>
#include <vector>

#include "adfw/core/options.hpp"
#include "adfw/train/losses.hpp"
#include "methods/efficientad/efficientad.hpp"
#include "parity.hpp"

using namespace adfw;
using adfw::test::check_equal;
using adfw::test::check_parity;
using adfw::test::fixture;
using adfw::test::kGradTol;
using adfw::test::loss_term_value;
using adfw::test::parameter;
using adfw::test::scalar;

namespace {

// HWC u8 -> (1,3,H,W) float in 0..1 (torchvision ToTensor).
torch::Tensor to_image(const torch::Tensor& hwc_u8) {
  return hwc_u8.permute({2, 0, 1}).unsqueeze(0).to(torch::kFloat32).div(255);
}

std::unique_ptr<EfficientAd> make_efficientad(const StateDict& weights) {
  EfficientAd::Options o;
  read_options(o,
               toml::parse("out_channels = 4\npdn_width = 16\nae_width = 4\nteacher_weights = 'random'\n"
                           "penalty_folder = ''\n"),
               "method");
  auto m = std::make_unique<EfficientAd>(o);
  m->build(RunContext{});
  test::load_prefixed(*m->teacher(), weights, "teacher.");
  test::load_prefixed(*m->student(), weights, "student.");
  test::load_prefixed(*m->autoencoder(), weights, "autoencoder.");
  return m;
}

std::vector<torch::Tensor> train_images(const StateDict& io) {
  const torch::Tensor all = fixture(io, "data.train_u8");
  const torch::Tensor split = fixture(io, "data.train_split");
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < split.numel(); ++i) out.push_back(to_image(all[split[i].item<int64_t>()]));
  return out;
}

}  // namespace

TEST_CASE("efficientad parity: held-out split, teacher statistics, networks", "[parity][efficientad]") {
  test::load_builtin_plugins();
  ADFW_REQUIRE_SHARED(dir, "fixtures/methods/efficientad");
  const StateDict io = load_state_dict(dir / "efficientad_io.safetensors");
  const auto m = make_efficientad(load_state_dict(dir / "efficientad_weights.safetensors"));

  // random_split(3 images, [2, 1], Generator().manual_seed(42)).
  const EfficientAdSplit split = efficientad_split(3, 0.1, 42);
  check_equal(torch::tensor(split.train, torch::kInt64), fixture(io, "data.train_split"), "data.train_split");
  REQUIRE(split.validation.size() == 1);
  CHECK(split.validation[0] == fixture(io, "data.val_index").item<int64_t>());

  const ChannelStats s = m->teacher_statistics(train_images(io));
  check_parity(s.mean, fixture(io, "norm.teacher_mean"), "norm.teacher_mean");
  check_parity(s.std, fixture(io, "norm.teacher_std"), "norm.teacher_std");
}

TEST_CASE("efficientad parity: training step (outputs, losses, gradients)", "[parity][efficientad]") {
  test::load_builtin_plugins();
  ADFW_REQUIRE_SHARED(dir, "fixtures/methods/efficientad");
  const StateDict io = load_state_dict(dir / "efficientad_io.safetensors");
  const auto m = make_efficientad(load_state_dict(dir / "efficientad_weights.safetensors"));
  m->set_teacher_statistics({fixture(io, "norm.teacher_mean"), fixture(io, "norm.teacher_std")});
  m->student()->train();
  m->autoencoder()->train();

  EfficientAdTrainInput in;
  const int64_t st_index = fixture(io, "train.image_st_index").item<int64_t>();
  in.image_st = to_image(fixture(io, "data.train_u8")[st_index]);
  in.image_ae = to_image(fixture(io, "train.image_ae_u8"));
  in.image_penalty = to_image(fixture(io, "train.image_penalty_u8"));
  for (const char* k : {"14", "18", "22", "26", "30", "34"})
    in.ae_keep.push_back(fixture(io, std::string("train.ae_dropout_keep.") + k));
  const EfficientAdTrainStep s = m->train_step(in);

  check_parity(s.teacher_st, fixture(io, "train.teacher_output_st"), "train.teacher_output_st");
  check_parity(s.student_st, fixture(io, "train.student_output_st[:,:4]"), "train.student_output_st[:,:4]");
  check_parity(s.student_penalty, fixture(io, "train.student_output_penalty[:,:4]"),
               "train.student_output_penalty[:,:4]");
  check_parity(s.autoencoder, fixture(io, "train.ae_output"), "train.ae_output");
  check_parity(s.teacher_ae, fixture(io, "train.teacher_output_ae"), "train.teacher_output_ae");
  check_parity(s.student_ae, fixture(io, "train.student_output_ae[:,4:]"), "train.student_output_ae[:,4:]");

  // The hard-feature threshold through the registered loss's own quantile.
  const HardFeatureLoss hard(HardFeatureOptions{0.999});
  check_parity(hard.threshold(s.student_st, s.teacher_st_norm), fixture(io, "train.d_hard"), "train.d_hard");
  const LossValues& v = s.losses;
  check_parity(scalar(loss_term_value(v, "hard_feature:student_st")), fixture(io, "train.loss_hard"), "train.loss_hard");
  check_parity(scalar(loss_term_value(v, "l2:student_penalty")), fixture(io, "train.loss_penalty"),
               "train.loss_penalty");
  check_parity(scalar(loss_term_value(v, "l2:autoencoder")), fixture(io, "train.loss_ae"), "train.loss_ae");
  check_parity(scalar(loss_term_value(v, "l2:student_ae")), fixture(io, "train.loss_stae"), "train.loss_stae");
  check_parity(v.total, fixture(io, "train.loss_total"), "train.loss_total");

  v.total.backward();
  for (const char* key : {"0.weight", "8.weight", "8.bias"}) {
    const std::string name = std::string("train.grad.student.") + key;
    check_parity(parameter(*m->student(), key).grad(), fixture(io, name), name, kGradTol);
  }
  for (const char* key : {"0.weight", "10.weight", "12.weight", "38.weight", "38.bias"}) {
    const std::string name = std::string("train.grad.autoencoder.") + key;
    check_parity(parameter(*m->autoencoder(), key).grad(), fixture(io, name), name, kGradTol);
  }
}

TEST_CASE("efficientad parity: map normalisation, test maps, image scores", "[parity][efficientad]") {
  test::load_builtin_plugins();
  ADFW_REQUIRE_SHARED(dir, "fixtures/methods/efficientad");
  const StateDict io = load_state_dict(dir / "efficientad_io.safetensors");
  const auto m = make_efficientad(load_state_dict(dir / "efficientad_weights.safetensors"));
  m->set_teacher_statistics({fixture(io, "norm.teacher_mean"), fixture(io, "norm.teacher_std")});

  const torch::Tensor val = to_image(fixture(io, "data.train_u8")[fixture(io, "data.val_index").item<int64_t>()]);
  const EfficientAdMaps raw = m->maps(val);
  check_parity(raw.map_st, fixture(io, "mapnorm.map_st"), "mapnorm.map_st");
  check_parity(raw.map_ae, fixture(io, "mapnorm.map_ae"), "mapnorm.map_ae");
  m->fit_quantiles(std::vector<torch::Tensor>{val});
  const auto q = m->quantiles();
  check_parity(scalar(q[0]), fixture(io, "mapnorm.q_st_start"), "mapnorm.q_st_start");
  check_parity(scalar(q[1]), fixture(io, "mapnorm.q_st_end"), "mapnorm.q_st_end");
  check_parity(scalar(q[2]), fixture(io, "mapnorm.q_ae_start"), "mapnorm.q_ae_start");
  check_parity(scalar(q[3]), fixture(io, "mapnorm.q_ae_end"), "mapnorm.q_ae_end");

  const torch::Tensor images = fixture(io, "test.image_u8");
  const torch::Tensor x = torch::cat({to_image(images[0]), to_image(images[1])});
  const EfficientAdMaps t = m->maps(x);
  check_parity(t.st, fixture(io, "test.map_st"), "test.map_st");
  check_parity(t.ae, fixture(io, "test.map_ae"), "test.map_ae");
  check_parity(t.combined, fixture(io, "test.map_combined"), "test.map_combined");

  // test(): each map padded and upsampled to its file's own size; the score is its maximum.
  const torch::Tensor hw = fixture(io, "test.file_hw");
  const char* names[] = {"test.map_final.defect", "test.map_final.good"};
  std::vector<float> scores;
  for (int64_t i = 0; i < 2; ++i) {
    const Prediction p = m->infer(x.slice(0, i, i + 1), hw[i][0].item<int64_t>(), hw[i][1].item<int64_t>());
    check_parity(p.maps[0][0], fixture(io, names[i]), names[i]);
    scores.push_back(p.scores[0].item<float>());
  }
  check_parity(torch::tensor(scores), fixture(io, "test.image_score"), "test.image_score");
  check_equal(fixture(io, "test.label"), torch::tensor({int64_t(1), int64_t(0)}), "test.label");
  CHECK(scores[0] > scores[1]);  // AUROC 1.0, as the reference's
}

TEST_CASE("efficientad parity: autoencoder colour jitter of the training image", "[parity][efficientad]") {
  ADFW_REQUIRE_SHARED(dir, "fixtures/methods/efficientad");
  const StateDict io = load_state_dict(dir / "efficientad_io.safetensors");
  // transform_ae chose ColorJitter(saturation) with factor 1.12041175365448 (efficientad.json).
  const torch::Tensor image = to_image(fixture(io, "data.train_u8")[fixture(io, "train.image_st_index").item<int64_t>()]);
  const torch::Tensor jittered = pil_color_jitter(image[0], 2, 1.12041175365448);
  const torch::Tensor u8 = (jittered * 255).round().to(torch::kUInt8).permute({1, 2, 0});
  check_equal(u8, fixture(io, "train.image_ae_u8"), "train.image_ae_u8");
}

TEST_CASE("efficientad parity: teacher pretraining (embedding, normalisation, distillation step)",
          "[parity][efficientad]") {
  test::load_builtin_plugins();
  ADFW_REQUIRE_SHARED(dir, "fixtures/methods/efficientad");
  const StateDict io = load_state_dict(dir / "efficientad_io.safetensors");
  const StateDict weights = load_state_dict(dir / "efficientad_weights.safetensors");
  // The backbone only names the taps here: the fixture's stand-in returns fixed layer2 / layer3 maps.
  EfficientAdTeacher::Options o;
  read_options(o,
               toml::parse("out_channels = 4\npdn_width = 16\n[backbone]\ntype = 'resnet'\narch = 'resnet18'\n"
                           "weights = 'random'\nlayers = ['layer2', 'layer3']\n"),
               "method");
  EfficientAdTeacher t(o);
  t.build(RunContext{});
  test::load_prefixed(*t.pdn(), weights, "pretrain_pdn.");

  const torch::Tensor embed = t.embed({{"layer2", fixture(io, "pretrain.features.layer2")},
                                       {"layer3", fixture(io, "pretrain.features.layer3")}});
  check_parity(embed, fixture(io, "pretrain.embed"), "pretrain.embed");
  // feature_normalization(steps = 1): one embedding for the mean, one for the variance.
  const ChannelStats s = channel_statistics(std::vector<torch::Tensor>{embed});
  check_parity(s.mean, fixture(io, "pretrain.channel_mean"), "pretrain.channel_mean");
  check_parity(s.std, fixture(io, "pretrain.channel_std"), "pretrain.channel_std");

  t.set_statistics(s);
  t.pdn()->train();
  const int64_t idx = fixture(io, "pretrain.image_pdn_train_index").item<int64_t>();
  const TeacherDistillStep step = t.train_step(embed, to_image(fixture(io, "data.train_u8")[idx]));
  check_parity(step.prediction, fixture(io, "pretrain.prediction"), "pretrain.prediction");
  check_parity(step.losses.total, fixture(io, "pretrain.loss"), "pretrain.loss");
  step.losses.total.backward();
  for (const char* key : {"0.weight", "8.weight", "8.bias"}) {
    const std::string name = std::string("pretrain.grad.pretrain_pdn.") + key;
    check_parity(parameter(*t.pdn(), key).grad(), fixture(io, name), name, kGradTol);
  }
}
