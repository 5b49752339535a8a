// RIAD against the unofficial reference code it follows (plutoyuxie/Reconstruction-by-inpainting-
// for-visual-anomaly-detection test.py, train.py, losses/, models/unet.py):
// ../shared/fixtures/methods/riad, README section "methods/riad/". riad_unet at base width 4 on
// 64 x 64 images in [-1, 1], batch 2, through adfw's own RIAD code path.
#include "adfw/train/losses.hpp"
#include "methods/riad/riad.hpp"
#include "parity.hpp"

using namespace adfw;
using adfw::test::check_parity;
using adfw::test::fixture;
using adfw::test::loss_term_value;
using adfw::test::scalar;

namespace {

Riad::Options riad_options() {
  Riad::Options o;
  read_options(o, toml::parse("[network]\ntype = 'riad_unet'\nbase_width = 4\n"), "method");
  return o;
}

}  // namespace

TEST_CASE("riad parity: U-Net, mosaic inpainting, MSGMS maps, score, losses", "[parity][riad]") {
  ADFW_REQUIRE_SHARED(dir, "fixtures/methods/riad");
  test::load_builtin_plugins();
  const StateDict w = load_state_dict((dir / "riad_weights.safetensors").string());
  const StateDict io = load_state_dict((dir / "riad_io.safetensors").string());
  Riad riad(riad_options());
  riad.build(RunContext{});
  Network& net = riad.part("network");
  test::load_prefixed(*net.module(), w, "unet.");

  // The fixture's images are the reference's [-1, 1] tensors; adfw's images arrive in [0, 1].
  const torch::Tensor image = fixture(io, "image");
  const torch::Tensor x = riad.to_network_range((image + 1) / 2);
  check_parity(x, image, "image mapped to the network's range");

  torch::NoGradGuard ng;
  net.module()->eval();
  check_parity(net.forward(x), fixture(io, "unet.output_eval"), "unet.output_eval");

  std::vector<torch::Tensor> masks;
  for (int64_t k : {2, 4, 8, 16}) {
    const std::string p = "k" + std::to_string(k) + ".";
    const torch::Tensor m = fixture(io, p + "masks");
    // gen_mask's mosaic: every cell is hidden by exactly one of the 3 masks.
    REQUIRE(((1 - m.to(torch::kInt64)).sum(0) == 1).all().item<bool>());
    masks.push_back(m);
    const torch::Tensor rec = riad.inpaint(x, m);
    check_parity(rec, fixture(io, p + "reconstruction"), p + "reconstruction");
    check_parity(msgms_map(x, rec), fixture(io, p + "msgms"), p + "msgms");
  }

  const torch::Tensor raw = riad.raw_map(x, masks);
  check_parity(raw, fixture(io, "score_raw"), "score_raw");
  const Prediction pred = riad.finish(raw, 64, 64);
  check_parity(pred.maps.squeeze(1), fixture(io, "score"), "score");
  check_parity(pred.scores, fixture(io, "image_score_raw"), "image_score_raw");

  const LossValues v = riad.losses(x, fixture(io, "k2.reconstruction"));
  check_parity(scalar(loss_term_value(v, "l2:reconstruction")), fixture(io, "train.loss.l2"), "train.loss.l2");
  check_parity(scalar(loss_term_value(v, "msgms:reconstruction")), fixture(io, "train.loss.gms"), "train.loss.gms");
  check_parity(scalar(loss_term_value(v, "ssim:reconstruction")), fixture(io, "train.loss.ssim"), "train.loss.ssim");
  check_parity(v.total, fixture(io, "train.loss.total"), "train.loss.total");

  // Last: a train-mode pass updates the BatchNorm running statistics.
  net.module()->train();
  check_parity(net.forward(x), fixture(io, "unet.output_train"), "unet.output_train");
}

TEST_CASE("riad: mosaic masks partition the cells as gen_mask does", "[riad]") {
  test::load_builtin_plugins();
  Riad riad(riad_options());
  std::mt19937_64 rng(3);
  // 16 cells in 3 sets: gen_mask pads the permutation to 18 and cuts it into rows of 6: 6, 6, 4.
  const torch::Tensor m = riad.mosaic_masks(8, 8, 2, rng);
  REQUIRE(m.sizes() == torch::IntArrayRef({3, 8, 8}));
  CHECK(((1 - m).sum(0) == 1).all().item<bool>());
  const torch::Tensor hidden_cells = (1 - m).sum({1, 2}) / 4;
  CHECK(hidden_cells[0].item<double>() == 6);
  CHECK(hidden_cells[1].item<double>() == 6);
  CHECK(hidden_cells[2].item<double>() == 4);
  // Cells are whole k x k blocks.
  const torch::Tensor blocks = m.view({3, 4, 2, 4, 2});
  CHECK(torch::equal(blocks, blocks.select(2, 0).select(3, 0).unsqueeze(2).unsqueeze(4).expand_as(blocks)));
  CHECK_THROWS_AS(riad.mosaic_masks(8, 10, 4, rng), Error);
}

TEST_CASE("riad: reference recipe defaults", "[riad]") {
  test::load_builtin_plugins();
  Riad::Options o;
  CHECK(o.signed_range);
  CHECK(o.cell_weighting == "cells");
  CHECK(o.trainer.batch_size == 4);
  // train.py adjust_learning_rate: x0.1 from the 250th of 300 epochs (index 249) on.
  CHECK(o.trainer.scheduler.factor(248, 300) == Approx(1.0));
  CHECK(o.trainer.scheduler.factor(249, 300) == Approx(0.1));
  CHECK(o.trainer.scheduler.factor(299, 300) == Approx(0.1));
  // scipy.ndimage.gaussian_filter(sigma 7): truncate 4 -> radius 28.
  REQUIRE(o.postprocess.parts().size() == 2);
  CHECK(o.postprocess.parts()[1].options<metric::GaussianOptions>().kernel_size == 57);
}
