// DSR against its reference code (VitjanZ/DSR_anomaly_detection@672bfb8: discrete_model.py,
// dsr_model.py, train_dsr.py train_on_device / train_upsampling_module, test_dsr.py
// evaluate_model): ../shared/fixtures/methods/dsr, README section "methods/dsr/". Reduced widths
// (VQ-VAE 16 hiddens, 64 codes of 8; U-Nets base 4; image-reconstruction bottleneck 16) on 64 x 64
// images, batch 2, through adfw's own DSR code path with the reference's random draws injected.
// With ADFW_PARITY_VERBOSE set, every comparison prints its relative error.
//
// Conditioning. The object-specific reconstruction that enters the anomaly detection U-Net is
// nearly flat (range [-0.14, -0.08], from weights_init's N(0, 0.02) convs), and the U-Net's first
// InstanceNorm divides it by its small spread: float32 rounding is amplified about 2000x. Our own
// float32 and float64 detection masks differ by 1.2e-4 of their max on the reference's inputs,
// while our float64 result is within 1.6e-5 of the reference. So the detection and upsampling
// modules are compared on the reference's own inputs (the detection module in float64), at the
// stated tolerances, with the stage-2 loss and gradients taken there; the whole float32 path is
// compared as well, with the three amplified tensors (detection mask, refined mask, pixel map)
// at kAmplifiedTol.
#include <cstdlib>
#include <iostream>

#include "adfw/core/options.hpp"
#include "adfw/metric/reducers.hpp"
#include "methods/dsr/dsr.hpp"
#include "parity.hpp"

using namespace adfw;
using adfw::test::check_equal;
using adfw::test::fixture;
using adfw::test::kGradTol;
using adfw::test::loss_term_value;
using adfw::test::scalar;

namespace {
/// End-to-end float32 tolerance of the tensors downstream of the detection module's first
/// InstanceNorm (see above): 1.2e-4 measured.
constexpr double kAmplifiedTol = 5e-4;
}  // namespace

namespace {

void check(const torch::Tensor& got, const torch::Tensor& want, const std::string& what,
           double tol = adfw::test::kForwardTol) {
  if (std::getenv("ADFW_PARITY_VERBOSE"))
    std::cerr << "dsr parity " << what << ": " << adfw::test::relative_error(got, want) << "\n";
  adfw::test::check_parity(got, want, what, tol);
}

void check_codes(const torch::Tensor& got, const torch::Tensor& want, const std::string& what) {
  if (std::getenv("ADFW_PARITY_VERBOSE"))
    std::cerr << "dsr parity " << what << ": "
              << (got.sizes() == want.sizes() ? (got != want).sum().item<int64_t>() : -1) << " differ\n";
  check_equal(got, want, what);
}

std::unique_ptr<Dsr> make_dsr(const StateDict& weights) {
  const std::string text =
      "vq_checkpoint = 'random'\nunet_base_width = 4\nimage_recon_bottleneck = 16\n"
      "[vq]\nnum_hiddens = 16\nnum_residual_layers = 2\nnum_residual_hiddens = 8\nnum_embeddings = 64\n"
      "embedding_dim = 8\n";
  Dsr::Options o;
  read_options(o, toml::parse(text), "method");
  auto d = std::make_unique<Dsr>(o);
  d->build(RunContext{});
  d->load(weights, "dsr_weights.safetensors");
  return d;
}

torch::Tensor image(const StateDict& io, const std::string& name) {
  return fixture(io, name).to(torch::kFloat32) / 255.0;
}

LatentAnomalyDraws latent_draws(const StateDict& io, const std::string& call) {
  return {fixture(io, call + ".strength"), fixture(io, call + ".randint")};
}

torch::Tensor grad_of(torch::nn::Module& m, const std::string& key) {
  const torch::Tensor p = test::parameter(m, key);
  REQUIRE(p.grad().defined());
  return p.grad();
}

}  // namespace

TEST_CASE("dsr parity: stage 1 (VQ, latent anomalies, subspace restriction, losses, gradients)", "[parity][dsr]") {
  test::load_builtin_plugins();
  ADFW_REQUIRE_SHARED(dir, "fixtures/methods/dsr");
  const StateDict io = load_state_dict(dir / "dsr_io.safetensors");
  auto net = make_dsr(load_state_dict(dir / "dsr_weights.safetensors"));
  Dsr& dsr = *net;
  for (const char* m : {"sub_res_hi", "sub_res_lo", "image_recon", "anomaly_det"}) dsr.module(m)->train();

  // The injected draws: strength = u * 0.8 + 0.2 for the stored torch.rand values.
  check(fixture(io, "s1.anomaly_lo.strength"), fixture(io, "s1.rand_lo") * 0.8 + 0.2, "s1.strength_lo (closed form)");
  check(fixture(io, "s1.anomaly_hi.strength"), fixture(io, "s1.rand_hi") * 0.8 + 0.2, "s1.strength_hi (closed form)");
  DsrStage1Draws draws;
  draws.lo = latent_draws(io, "s1.anomaly_lo");
  draws.hi = latent_draws(io, "s1.anomaly_hi");
  draws.hi_usebot = latent_draws(io, "s1.anomaly_hi_usebot");
  draws.levels = {fixture(io, "s1.use_both"), fixture(io, "s1.use_lo")};

  DsrStage1Step s = dsr.stage1_step(image(io, "s1.image_u8"), fixture(io, "s1.mask"), draws);

  check(s.enc_b, fixture(io, "s1.enc_b"), "s1.enc_b");
  check(s.enc_t, fixture(io, "s1.enc_t"), "s1.enc_t");
  check(s.zt, fixture(io, "s1.zt"), "s1.zt");
  check(s.quantized_t, fixture(io, "s1.quantized_t"), "s1.quantized_t");
  check_codes(s.indices_t, fixture(io, "s1.indices_t"), "s1.indices_t");
  check(s.loss_t, fixture(io, "s1.loss_t"), "s1.loss_t");
  for (const char* call : {"anomaly_lo", "anomaly_hi", "anomaly_hi_usebot"}) {
    const LatentAnomalyResult& r =
        std::string(call) == "anomaly_lo" ? s.anomaly_lo : std::string(call) == "anomaly_hi" ? s.anomaly_hi : s.anomaly_hi_usebot;
    const std::string name = std::string("s1.") + call;
    check(r.features, fixture(io, name), name);
    check_codes(r.codes, fixture(io, name + ".code"), name + ".code");
    check_codes(r.candidates, fixture(io, name + ".randint_high"), name + ".randint_high");
  }
  check(s.up_quantized_t, fixture(io, "s1.up_quantized_t"), "s1.up_quantized_t");
  check(s.up_quantized_t_real, fixture(io, "s1.up_quantized_t_real"), "s1.up_quantized_t_real");
  check(s.zb, fixture(io, "s1.zb"), "s1.zb");
  check(s.zb_real, fixture(io, "s1.zb_real"), "s1.zb_real");
  check(s.quantized_b, fixture(io, "s1.quantized_b"), "s1.quantized_b");
  check(s.quantized_b_real, fixture(io, "s1.quantized_b_real"), "s1.quantized_b_real");
  check_codes(s.indices_b, fixture(io, "s1.indices_b"), "s1.indices_b");
  check_codes(s.indices_b_real, fixture(io, "s1.indices_b_real"), "s1.indices_b_real");
  check(s.anomaly_embedding_hi, fixture(io, "s1.anomaly_embedding_hi"), "s1.anomaly_embedding_hi");
  check(s.anomaly_embedding_lo, fixture(io, "s1.anomaly_embedding_lo"), "s1.anomaly_embedding_lo");
  check(s.recon_feat_hi, fixture(io, "s1.recon_feat_hi"), "s1.recon_feat_hi");
  check(s.recon_feat_lo, fixture(io, "s1.recon_feat_lo"), "s1.recon_feat_lo");
  check(s.recon_embeddings_hi, fixture(io, "s1.recon_embeddings_hi"), "s1.recon_embeddings_hi");
  check(s.recon_embeddings_lo, fixture(io, "s1.recon_embeddings_lo"), "s1.recon_embeddings_lo");
  check_codes(s.recon_indices_hi, fixture(io, "s1.recon_indices_hi"), "s1.recon_indices_hi");
  check_codes(s.recon_indices_lo, fixture(io, "s1.recon_indices_lo"), "s1.recon_indices_lo");
  check(s.sub_res_loss_hi, fixture(io, "s1.sub_res_hi.loss"), "s1.sub_res_hi.loss");
  check(s.sub_res_loss_lo, fixture(io, "s1.sub_res_lo.loss"), "s1.sub_res_lo.loss");
  check(s.recon_image_general, fixture(io, "s1.recon_image_general"), "s1.recon_image_general");
  check(s.recon_image_recon, fixture(io, "s1.recon_image_recon"), "s1.recon_image_recon");
  check(s.out_mask, fixture(io, "s1.out_mask"), "s1.out_mask");
  check_codes(s.anomaly_mask_target, fixture(io, "s1.anomaly_mask_target"), "s1.anomaly_mask_target");

  const LossValues& v = s.losses;
  check(scalar(loss_term_value(v, "l2:feat_hi")), fixture(io, "s1.loss.feat_hi"), "s1.loss.feat_hi");
  check(scalar(loss_term_value(v, "l2:feat_lo")), fixture(io, "s1.loss.feat_lo"), "s1.loss.feat_lo");
  check(scalar(loss_term_value(v, "l2:image_recon")), fixture(io, "s1.loss.l2_recon_img"), "s1.loss.l2_recon_img");
  check(scalar(loss_term_value(v, "focal:segmentation")), fixture(io, "s1.loss.focal"), "s1.loss.focal");
  check(v.total, fixture(io, "s1.loss.total"), "s1.loss.total");

  v.total.backward();
  for (const char* key : {"sub_res_hi.unet.encoder.block1.0.weight", "sub_res_hi.unet.decoder.fin_out.0.weight",
                          "sub_res_lo.unet.decoder.fin_out.0.weight", "sub_res_lo.unet.decoder.fin_out.0.bias",
                          "image_recon.block1.0.weight", "image_recon.upblock1.weight",
                          "image_recon._conv_trans_2.weight", "image_recon._conv_trans_2.bias",
                          "anomaly_det.unet.encoder.block1.0.weight", "anomaly_det.unet.decoder.fin_out.0.weight",
                          "anomaly_det.unet.decoder.fin_out.0.bias"}) {
    const std::string k = key, module = k.substr(0, k.find('.'));
    check(grad_of(*dsr.module(module), k.substr(module.size() + 1)), fixture(io, "s1.grad." + k), "s1.grad." + k,
          kGradTol);
  }
  // The frozen VQ-VAE gets no gradient.
  for (const auto& p : dsr.module("vq")->parameters()) CHECK_FALSE(p.grad().defined());
}

TEST_CASE("dsr parity: stage 2 (VQ forward, upsampling module, focal, gradients) and inference", "[parity][dsr]") {
  test::load_builtin_plugins();
  ADFW_REQUIRE_SHARED(dir, "fixtures/methods/dsr");
  const StateDict io = load_state_dict(dir / "dsr_io.safetensors");
  const StateDict weights = load_state_dict(dir / "dsr_weights.safetensors");
  auto net = make_dsr(weights);
  Dsr& dsr = *net;
  for (const char* m : {"sub_res_hi", "sub_res_lo", "image_recon", "anomaly_det"}) dsr.module(m)->eval();
  dsr.module("upsample")->train();

  // The dataset's blend for sample 0 (beta 0.3, colour (0.9, 0.2, 0.4)), sample 1 unchanged.
  const torch::Tensor img = image(io, "s2.image_u8"), m = fixture(io, "s2.mask");
  const torch::Tensor colour = torch::tensor({0.9f, 0.2f, 0.4f}).view({1, 3, 1, 1});
  const torch::Tensor blended = img * (1 - m) + 0.7 * colour * m + 0.3 * img * m;
  check(torch::cat({blended.slice(0, 0, 1), img.slice(0, 1, 2)}), fixture(io, "s2.augmented_image"),
        "s2.augmented_image (closed form)");

  const DsrForward f = dsr.forward(fixture(io, "s2.augmented_image"));
  check(f.vq.enc_b, fixture(io, "s2.enc_b"), "s2.enc_b");
  check(f.vq.enc_t, fixture(io, "s2.enc_t"), "s2.enc_t");
  check(f.vq.zt, fixture(io, "s2.zt"), "s2.zt");
  check(f.vq.top.quantized, fixture(io, "s2.quantized_t"), "s2.quantized_t");
  check_codes(f.vq.top.indices, fixture(io, "s2.indices_t"), "s2.indices_t");
  check(f.vq.top.loss, fixture(io, "s2.loss_t"), "s2.loss_t");
  check(f.vq.up_quantized_t, fixture(io, "s2.up_quantized_t"), "s2.up_quantized_t");
  check(f.vq.zb, fixture(io, "s2.zb"), "s2.zb");
  check(f.vq.bot.quantized, fixture(io, "s2.quantized_b"), "s2.quantized_b");
  check_codes(f.vq.bot.indices, fixture(io, "s2.indices_b"), "s2.indices_b");
  check(f.vq.bot.loss, fixture(io, "s2.loss_b"), "s2.loss_b");
  check(f.vq.recon, fixture(io, "s2.recon_fin"), "s2.recon_fin");
  check(f.recon_image, fixture(io, "s2.recon_fin"), "s2.recon_image (= recon_fin)");
  check(f.recon_feat_hi, fixture(io, "s2.recon_feat_hi"), "s2.recon_feat_hi");
  check(f.recon_feat_lo, fixture(io, "s2.recon_feat_lo"), "s2.recon_feat_lo");
  check(f.recon_embeddings_hi, fixture(io, "s2.recon_embeddings_hi"), "s2.recon_embeddings_hi");
  check(f.recon_embeddings_lo, fixture(io, "s2.recon_embeddings_lo"), "s2.recon_embeddings_lo");
  check_codes(f.recon_indices_hi, fixture(io, "s2.recon_indices_hi"), "s2.recon_indices_hi");
  check_codes(f.recon_indices_lo, fixture(io, "s2.recon_indices_lo"), "s2.recon_indices_lo");
  check(f.recon_image_recon, fixture(io, "s2.recon_image_recon"), "s2.recon_image_recon");
  check(f.out_mask, fixture(io, "s2.out_mask"), "s2.out_mask (float32 path)", kAmplifiedTol);
  check(f.refined_mask, fixture(io, "s2.refined_mask"), "s2.refined_mask (float32 path)", kAmplifiedTol);
  const LossValues v = dsr.stage2_losses(f, m);
  check(scalar(loss_term_value(v, "focal:refined")), fixture(io, "s2.loss.focal"), "s2.loss.focal (float32 path)");

  // The detection module on the reference's reconstructions, in float64 (a copy).
  const torch::Tensor recon_image_recon = fixture(io, "s2.recon_image_recon"), recon = fixture(io, "s2.recon_fin");
  {
    torch::NoGradGuard ng;
    DsrUnetModule det64(6, 4);
    test::load_prefixed(*det64, weights, "anomaly_det.");
    det64->to(torch::kFloat64);
    check(det64->forward({recon_image_recon.to(torch::kFloat64), recon.to(torch::kFloat64)}), fixture(io, "s2.out_mask"),
          "s2.out_mask (detection module, float64, reference inputs)");
  }
  // The upsampling module on the reference's reconstructions and mask: refined mask, focal loss and
  // gradients through adfw's stage-2 loss.
  auto up = std::dynamic_pointer_cast<DsrUnetModuleImpl>(dsr.module("upsample"));
  REQUIRE(up);
  DsrForward g;
  g.refined_mask = up->forward({recon_image_recon, recon, torch::softmax(fixture(io, "s2.out_mask"), 1)});
  g.out_mask = fixture(io, "s2.out_mask");
  check(g.refined_mask, fixture(io, "s2.refined_mask"), "s2.refined_mask (reference inputs)");
  const LossValues w = dsr.stage2_losses(g, m);
  check(scalar(loss_term_value(w, "focal:refined")), fixture(io, "s2.loss.focal"), "s2.loss.focal");
  check(w.total, fixture(io, "s2.loss.focal"), "s2.loss.total");
  w.total.backward();
  for (const char* key : {"unet.encoder.block1.0.weight", "unet.decoder.fin_out.0.weight", "unet.decoder.fin_out.0.bias"})
    check(grad_of(*up, key), fixture(io, std::string("s2.grad.upsample.") + key), std::string("s2.grad.upsample.") + key,
          kGradTol);

  // Inference: the pixel map is softmax(refined)[:, 1] (the reference scores its centre crop), the
  // image score the max of the 21x21 average-pooled detection map.
  check(dsr_crop(dsr.finish(g).maps, 56).squeeze(1), fixture(io, "test.pixel_map"), "test.pixel_map");
  check(dsr.finish(g).scores, fixture(io, "test.image_score"), "test.image_score (reference detection mask)");
  dsr.module("upsample")->eval();
  Prediction p;
  {
    torch::NoGradGuard ng;
    p = dsr.finish(dsr.forward(fixture(io, "s2.augmented_image")));
  }
  check(dsr_crop(p.maps, 56).squeeze(1), fixture(io, "test.pixel_map"), "test.pixel_map (float32 path)", kAmplifiedTol);
  const torch::Tensor det = torch::softmax(f.out_mask, 1).slice(1, 1, 2);
  check(metric::AvgPoolMaxReducer().pooled(det), fixture(io, "test.map_averaged"), "test.map_averaged");
  check(p.scores, fixture(io, "test.image_score"), "test.image_score");
  // predict() on adfw's RGB images: the same map and scores after the BGR flip.
  Batch b;
  b.images = fixture(io, "s2.augmented_image").flip({1});
  const Prediction q = dsr.predict(b, RunContext{});
  check(dsr_crop(q.maps, 56).squeeze(1), fixture(io, "test.pixel_map"), "predict maps (float32 path)", kAmplifiedTol);
  check(q.scores, fixture(io, "test.image_score"), "predict scores");
}

TEST_CASE("dsr parity: one train-mode VQ forward updates the codebook by EMA", "[parity][dsr]") {
  test::load_builtin_plugins();
  ADFW_REQUIRE_SHARED(dir, "fixtures/methods/dsr");
  const StateDict io = load_state_dict(dir / "dsr_io.safetensors");
  auto net = make_dsr(load_state_dict(dir / "dsr_weights.safetensors"));
  VectorQuantizerEMAImpl& q = *net->vq()->_vq_vae_top;
  q.train();
  const VqOutput o = q.forward(fixture(io, "s1.zt"));
  check_codes(o.indices, fixture(io, "ema.indices"), "ema.indices");
  check(o.loss, fixture(io, "ema.loss"), "ema.loss");
  check(o.perplexity, fixture(io, "ema.perplexity"), "ema.perplexity");
  check(q._ema_cluster_size, fixture(io, "ema._ema_cluster_size"), "ema._ema_cluster_size");
  check(q._ema_w, fixture(io, "ema._ema_w"), "ema._ema_w");
  check(q._embedding->weight, fixture(io, "ema._embedding.weight"), "ema._embedding.weight");
}

