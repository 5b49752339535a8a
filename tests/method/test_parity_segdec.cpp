// Mixed-supervision SegDecNet against its reference code (vicoslab/mixed-segdec-net-comind2021:
// models.py, end2end.py, data/dataset.py, data/input_ksdd2.py): ../shared/fixtures/methods/segdec
// (README section "methods/segdec/"). Volume widths 32/64/1024 divided by 16; input 64 x 128.
// Images and labels go through adfw's transforms and SegDec's target code; the network, the loss
// terms, the gradients with the decision-to-segmentation multiplier at 0 and 1, the SGD step and
// the scores through SegDec's own code.
#include <opencv2/imgcodecs.hpp>

#include "adfw/core/options.hpp"
#include "adfw/data/transforms.hpp"
#include "methods/segdec/segdec.hpp"
#include "parity.hpp"

namespace fs = std::filesystem;
using namespace adfw;
using test::check_equal;
using test::check_parity;
using test::fixture;
using test::kGradTol;
using test::parameter;

namespace {

const std::vector<std::string> kParts = {"p0", "p1", "n0", "n1"};

SegDec::Options fixture_options(double multiplier) {
  SegDec::Options o;
  o.network.widths = {2, 4, 64};
  o.dec_grad_multiplier = multiplier;
  return o;
}

cv::Mat as_mat(const torch::Tensor& t) {
  torch::Tensor c = t.contiguous();
  const int type = c.dim() == 3 ? CV_8UC3 : CV_8U;
  return cv::Mat(static_cast<int>(c.size(0)), static_cast<int>(c.size(1)), type, c.data_ptr<uint8_t>()).clone();
}

/// The fixture's PNGs written back to disk (image as cv2 read it, BGR; label grey).
SampleInfo write_part(const StateDict& io, const fs::path& dir, const std::string& p, Supervision sup) {
  SampleInfo s;
  s.path = (dir / (p + ".png")).string();
  REQUIRE(cv::imwrite(s.path, as_mat(fixture(io, "data." + p + ".image_file"))));
  s.mask_path = (dir / (p + "_GT.png")).string();
  REQUIRE(cv::imwrite(s.mask_path, as_mat(fixture(io, "data." + p + ".gt_file"))));
  s.label = sup == Supervision::normal ? 0 : 1;
  s.supervision = sup;
  if (sup != Supervision::pixel_mask) s.mask_path.clear();
  return s;
}

/// The fixture's network input of part p as adfw's [0, 1] RGB image (C,H,W).
torch::Tensor rgb_input(const StateDict& io, const std::string& p) {
  return (fixture(io, "data." + p + ".image_resized").permute({2, 0, 1}).to(torch::kFloat32) / 255.0f).flip({0});
}

SegDec::Targets fixture_targets(const StateDict& io, const std::vector<std::string>& parts) {
  std::vector<torch::Tensor> m, lm, pos, seg;
  for (const auto& p : parts) {
    m.push_back(fixture(io, "data." + p + ".seg_mask"));
    lm.push_back(fixture(io, "data." + p + ".seg_loss_mask"));
    pos.push_back(m.back().max().reshape({1}));  // end2end.py: is_pos = seg_mask.max()
    seg.push_back(fixture(io, "data." + p + ".is_segmented").to(torch::kFloat32).reshape({1}));
  }
  return {torch::stack(m), torch::stack(lm), torch::cat(pos), torch::cat(seg)};
}

}  // namespace

TEST_CASE("segdec parity: labels, loss masks, targets and network input match the reference data code",
          "[parity][segdec]") {
  adfw::test::load_builtin_plugins();  // the scoring slots' registered reducers
  ADFW_REQUIRE_SHARED(dir, "fixtures/methods/segdec");
  const StateDict io = load_state_dict(dir / "segdec_io.safetensors");
  const fs::path tmp = test::temp_dir("segdec_parity_data");
  SegDec segdec(fixture_options(0.0));
  TransformOptions to;
  to.resize = ImageSize(128, 64);
  to.normalize = "none";
  const Transform transform(to);

  for (const auto& p : kParts) {
    INFO("part " << p);
    const bool positive = p[0] == 'p';
    // The network input: adfw decodes RGB and resizes with INTER_LINEAR like cv2.resize; SegDec feeds
    // the reference's BGR order.
    const SampleInfo plain = write_part(io, tmp, p, Supervision::normal);
    const Sample s = transform(plain);
    const torch::Tensor net_in = segdec.network_input(s.image.unsqueeze(0))[0];
    check_equal((net_in * 255.0f).round().to(torch::kUInt8),
                fixture(io, "data." + p + ".image_resized").permute({2, 0, 1}), "data." + p + ".image_resized");
    check_parity(net_in, fixture(io, "data." + p + ".image_resized").permute({2, 0, 1}).to(torch::kFloat32) / 255.0f,
                 "data." + p + ".image_resized / 255");

    // Labels: dilated at the file's resolution, then resized.
    const torch::Tensor gt = fixture(io, "data." + p + ".gt_file");
    const torch::Tensor label = segdec_label(gt, 15, 128, 64);
    check_equal((label * 255.0f).round().to(torch::kUInt8), fixture(io, "data." + p + ".gt_resized"),
                "data." + p + ".gt_resized");
    if (positive)
      check_parity(segdec_distance_weights(label, 3.0, 2.0), fixture(io, "data." + p + ".loss_mask_full"),
                   "data." + p + ".loss_mask_full");
    const SegDec::Targets t = segdec.targets(gt, true, 128, 64);
    check_parity(t.seg_mask, fixture(io, "data." + p + ".seg_mask"), "data." + p + ".seg_mask");
    check_parity(t.seg_loss_mask, fixture(io, "data." + p + ".seg_loss_mask"), "data." + p + ".seg_loss_mask");
    check_parity(t.is_pos, fixture(io, "data." + p + ".seg_mask").max().reshape({1}), "is_pos of " + p);
  }

  SECTION("the loader hook: pixel-labelled, image-labelled and normal samples") {
    const auto hook = segdec.target_hook();
    std::mt19937_64 g(0);
    Sample p0 = transform(write_part(io, tmp, "p0", Supervision::pixel_mask));
    hook(p0, g);
    check_parity(p0.extras.at("seg_mask"), fixture(io, "data.p0.seg_mask"), "hook p0 seg_mask");
    check_parity(p0.extras.at("seg_loss_mask"), fixture(io, "data.p0.seg_loss_mask"), "hook p0 seg_loss_mask");
    CHECK(p0.extras.at("is_segmented").item<float>() == 1.0f);
    CHECK(fixture(io, "data.p1.is_segmented").item<bool>() == false);
    Sample p1 = transform(write_part(io, tmp, "p1", Supervision::image_label));
    hook(p1, g);
    CHECK(p1.extras.at("is_segmented").item<float>() == 0.0f);
    // The mask is withheld in adfw, so the decision target is the label (the reference, which still
    // reads the file, uses its soft maximum 0.760).
    CHECK(p1.extras.at("is_pos").item<float>() == 1.0f);
    Sample n0 = transform(write_part(io, tmp, "n0", Supervision::normal));
    hook(n0, g);
    check_parity(n0.extras.at("seg_mask"), fixture(io, "data.n0.seg_mask"), "hook n0 seg_mask");
    check_parity(n0.extras.at("seg_loss_mask"), fixture(io, "data.n0.seg_loss_mask"), "hook n0 seg_loss_mask");
    CHECK(n0.extras.at("is_pos").item<float>() == 0.0f);
  }
}

TEST_CASE("segdec parity: balancing, training iterations, gradients with multiplier 0 and 1, SGD and eval",
          "[parity][segdec]") {
  adfw::test::load_builtin_plugins();  // the scoring slots' registered reducers
  ADFW_REQUIRE_SHARED(dir, "fixtures/methods/segdec");
  const StateDict io = load_state_dict(dir / "segdec_io.safetensors");
  const StateDict weights = load_state_dict(dir / "segdec_weights.safetensors");
  RunContext run;

  SECTION("dynamic balancing weights per epoch") {
    SegDec segdec(fixture_options(0.0));
    const torch::Tensor epochs = fixture(io, "balance.epochs");
    const torch::Tensor want = fixture(io, "balance.weights");
    for (int64_t i = 0; i < epochs.numel(); ++i) {
      const auto [ws, wd] = segdec.loss_weights(epochs[i].item<int64_t>());
      check_parity(torch::tensor({ws, wd}, torch::kFloat64), want[i], "balance.weights[" + std::to_string(i) + "]");
    }
  }

  const std::map<std::string, std::vector<std::string>> batches = {{"a", {"p0", "n1"}}, {"b", {"p1", "n0"}}};
  const std::vector<std::string> grads = {
      "volume.0.0.weight", "volume.0.1.scale",   "volume.0.1.bias",     "volume.11.1.scale",
      "seg_mask.0.weight", "seg_mask.1.scale",   "seg_mask.1.bias",     "extractor.1.1.scale",
      "extractor.5.1.bias", "fc.weight",         "fc.bias"};
  for (const double mult : {0.0, 1.0}) {
    for (const auto& [b, parts] : batches) {
      const std::string tag = "train." + b + ".mult" + std::to_string(static_cast<int>(mult));
      DYNAMIC_SECTION(tag) {
        SegDec segdec(fixture_options(mult));
        segdec.build(run);
        auto module = segdec.network().module();
        test::load_prefixed(*module, weights, "segdecnet.");
        const SegDec::Targets t = fixture_targets(io, parts);
        const torch::Tensor images = torch::stack({rgb_input(io, parts[0]), rgb_input(io, parts[1])});
        const auto [w_seg, w_dec] = segdec.loss_weights(10);  // the fixture's training epoch: (0.8, 0.2)
        for (auto& p : module->parameters()) p.mutable_grad() = torch::Tensor();
        const SegDecNet::Outputs out = segdec.forward(images);
        const SegDec::Step st = segdec.step(out, t, w_seg, w_dec);
        for (int s = 0; s < 2; ++s) {
          const std::string k = "train." + b + "." + std::to_string(s) + ".";
          check_parity(out.decision[s].reshape({1, 1}), fixture(io, k + "decision_logit"), k + "decision_logit");
          check_parity(out.seg[s].unsqueeze(0), fixture(io, k + "seg_logit"), k + "seg_logit");
          check_parity(t.is_pos[s].reshape({1, 1}), fixture(io, k + "is_pos"), k + "is_pos");
          check_parity(st.loss_dec[s], fixture(io, k + "loss_dec"), k + "loss_dec");
          check_parity(st.loss[s], fixture(io, k + "loss"), k + "loss");
          if (t.is_segmented[s].item<float>() > 0) {
            check_parity(st.seg_bce[s].unsqueeze(0), fixture(io, k + "seg_bce"), k + "seg_bce");
            check_parity(st.loss_seg[s], fixture(io, k + "loss_seg"), k + "loss_seg");
          }
        }
        st.values.total.backward();
        for (const auto& g : grads) {
          const torch::Tensor got = parameter(*module, g).grad();
          REQUIRE(got.defined());
          check_parity(got, fixture(io, tag + ".grad.segdecnet." + g), tag + ".grad.segdecnet." + g, kGradTol);
        }
        if (b == "a" && mult == 0.0) {
          // end2end.py _get_optimizer: SGD(lr) without momentum.
          torch::optim::SGD sgd(module->parameters(), torch::optim::SGDOptions(0.01));
          sgd.step();
          check_parity(parameter(*module, "fc.weight"), fixture(io, "train.a.mult0.after_sgd_step.segdecnet.fc.weight"),
                       "train.a.mult0.after_sgd_step.segdecnet.fc.weight");
        }
      }
    }
  }

  SECTION("eval: decision and segmentation logits, image scores") {
    SegDec segdec(fixture_options(0.0));
    segdec.build(run);
    test::load_prefixed(*segdec.network().module(), weights, "segdecnet.");
    // eval_model on the TEST split: negatives first, then positives.
    const std::vector<std::string> order = {"n0", "n1", "p0", "p1"};
    std::vector<torch::Tensor> imgs;
    for (const auto& p : order) imgs.push_back(rgb_input(io, p));
    Batch batch;
    batch.images = torch::stack(imgs);
    batch.info.resize(order.size());
    const Prediction pred = segdec.predict(batch, run);
    check_parity(pred.scores, fixture(io, "eval.score"), "eval.score");
    CHECK(pred.maps.sizes() == torch::IntArrayRef({4, 1, 128, 64}));
    torch::NoGradGuard ng;
    const SegDecNet::Outputs out = segdec.forward(batch.images);
    check_parity(out.decision, fixture(io, "eval.decision_logit"), "eval.decision_logit");
    check_parity(out.seg, fixture(io, "eval.seg_logit"), "eval.seg_logit");
    const torch::Tensor is_pos = fixture(io, "eval.is_pos");
    for (int i = 0; i < 4; ++i) CHECK(is_pos[i].item<bool>() == (order[static_cast<std::size_t>(i)][0] == 'p'));
  }
}
