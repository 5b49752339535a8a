// DSR (Zavrtanik, Kristan, Skočaj, "DSR – A dual subspace re-projection network for surface
// anomaly detection", ECCV 2022; VitjanZ/DSR_anomaly_detection train_dsr.py, test_dsr.py,
// data_loader.py). A VQ-VAE pretrained on natural images (frozen) quantises an image into lo
// (1/8) and hi (1/4) codes; anomalies are synthesised in that latent space (family
// "latent_anomaly"); two subspace restriction modules re-project the codes onto normal
// appearance; an object-specific decoder and the VQ-VAE's general decoder produce two images,
// whose disagreement the anomaly detection U-Net segments. A second training stage trains an
// upsampling U-Net on image-space anomalies (synthesizer "perlin_color") to refine the mask.
//
// Stage 1 (train_on_device): loss = mse(restored hi, clean hi codes) + mse(restored lo, clean lo
// codes) + 10 mse(image, object-specific reconstruction) + focal(softmax(mask), target); Adam
// 2e-4, batch 8, x0.1 at 80%. Stage 2 (train_upsampling_module): focal(softmax(refined mask),
// mask) on the upsampling module alone.
// Inference (test_dsr.py evaluate_model): the pixel map is softmax(refined mask)[:, 1]; the image
// score is the max of the 21x21 average-pooled softmax(detection mask)[:, 1] (the detection
// module's map, not the refined one).
//
// Images enter the networks in [0, 1], channel order B, G, R (the reference reads with cv2), no
// normalisation; `channel_order` converts adfw's RGB.
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "adfw/core/checkpoint.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/method/method.hpp"
#include "adfw/method/trained.hpp"
#include "adfw/synth/latent_anomaly.hpp"
#include "adfw/synth/perlin.hpp"
#include "adfw/synth/synthesizer.hpp"
#include "methods/dsr/dsr_networks.hpp"

namespace adfw {

/// The VQ-VAE's sizes (DSR: 128 hiddens, 2 residual layers of 64, 4096 codes of 128, commitment
/// 0.25, decay 0.99: vq_model_pretrained_128_4096.pckl).
struct DsrVqOptions {
  int64_t num_hiddens = 128;
  int64_t num_residual_layers = 2;
  int64_t num_residual_hiddens = 64;
  int64_t num_embeddings = 4096;
  int64_t embedding_dim = 128;
  double commitment_cost = 0.25;
  double decay = 0.99;
  template <class V>
  void fields(V& v) {
    v("num_hiddens", num_hiddens, "encoder/decoder channels (DSR: 128)", Check::at_least(2));
    v("num_residual_layers", num_residual_layers, "residual blocks per stack (DSR: 2)", Check::at_least(0));
    v("num_residual_hiddens", num_residual_hiddens, "channels inside a residual block (DSR: 64)", Check::at_least(1));
    v("num_embeddings", num_embeddings, "codes per codebook K (DSR: 4096)", Check::at_least(2));
    v("embedding_dim", embedding_dim, "code dimension D (DSR: 128)", Check::at_least(1));
    v("commitment_cost", commitment_cost, "weight of the commitment loss (DSR: 0.25)", Check::at_least(0));
    v("decay", decay, "EMA decay of the codebooks during VQ-VAE training (DSR: 0.99)", Check::range(0, 1));
  }
  DiscreteLatentModelOptions model() const {
    return {num_hiddens, num_residual_layers, num_residual_hiddens, num_embeddings, embedding_dim, commitment_cost, decay};
  }
};

/// Trained DSR weights to evaluate instead of training (train_dsr.py's per-object .pckl files or
/// safetensors, the reference's key names; loaded strictly).
struct DsrCheckpointOptions {
  std::string sub_res_hi, sub_res_lo, image_recon, anomaly_det, upsample;
  template <class V>
  void fields(V& v) {
    v("sub_res_hi", sub_res_hi, "subspace_restriction_hi_<object>.pckl (default \"\": train)");
    v("sub_res_lo", sub_res_lo, "subspace_restriction_lo_<object>.pckl");
    v("image_recon", image_recon, "image_recon_module_<object>.pckl");
    v("anomaly_det", anomaly_det, "anomaly_det_module_<object>.pckl");
    v("upsample", upsample, "the upsampling module's _upsample.pckl");
  }
  bool any() const;
  bool all() const;
};

/// Draws of one stage-1 step (train_on_device), all injectable.
struct DsrStage1Draws {
  LatentAnomalyDraws lo, hi, hi_usebot;  ///< the three generate_fake_anomalies_joined calls
  LatentLevels levels;
};

/// Everything one stage-1 step computes (names as in train_dsr.py).
struct DsrStage1Step {
  torch::Tensor enc_b, enc_t, zt, quantized_t, indices_t, loss_t;
  torch::Tensor up_quantized_t, up_quantized_t_real, zb, zb_real;
  torch::Tensor quantized_b, quantized_b_real, indices_b, indices_b_real;
  LatentAnomalyResult anomaly_lo, anomaly_hi, anomaly_hi_usebot;
  torch::Tensor anomaly_embedding_hi, anomaly_embedding_lo;
  torch::Tensor recon_feat_hi, recon_feat_lo, recon_embeddings_hi, recon_embeddings_lo;
  torch::Tensor recon_indices_hi, recon_indices_lo, sub_res_loss_hi, sub_res_loss_lo;
  torch::Tensor recon_image_general, recon_image_recon, out_mask, anomaly_mask_target;
  LossValues losses;
};

/// The inference forward pass (also stage 2's): test_dsr.py / train_upsampling_module.
struct DsrForward {
  DiscreteLatentOutput vq;
  torch::Tensor recon_feat_hi, recon_feat_lo, recon_embeddings_hi, recon_embeddings_lo;
  torch::Tensor recon_indices_hi, recon_indices_lo;
  torch::Tensor recon_image, recon_image_recon;  ///< general and object-specific reconstructions
  torch::Tensor out_mask, refined_mask;          ///< (N,2,H,W) logits of detection and upsampling modules
};

class Dsr : public TrainedMethod {
 public:
  struct Options {
    DsrVqOptions vq;
    std::string vq_checkpoint;
    DsrCheckpointOptions checkpoints;
    int64_t unet_base_width = 64;
    int64_t image_recon_bottleneck = 64;
    std::string channel_order = "bgr";
    Slot<LatentAnomaly> latent_anomaly{"dsr"};
    PerlinOptions perlin;
    double rotate_probability = 0.4;
    std::vector<LossTerm> losses;
    TrainerOptions trainer;
    Slot<Synthesizer> upsampling_synthesizer{"perlin_color"};
    double upsampling_rotate_probability = 0.3;
    std::vector<LossTerm> upsampling_losses;
    TrainerOptions upsampling_trainer;
    ImageScoreSlot image_score{"type = 'avgpool_max'\nkernel = 21\nmap = 'raw'\n"};
    PostprocessChain postprocess;
    Options();
    template <class V>
    void fields(V& v) {
      v("vq", vq, "sizes of the pretrained VQ-VAE (must match vq_checkpoint)");
      v("vq_checkpoint", vq_checkpoint,
        "the pretrained VQ-VAE: vq_model_pretrained_128_4096.pckl (the reference's, ImageNet) or the "
        "vq_model.safetensors of an experiments/dsr_vq_pretrain.toml run; \"random\" = untrained (tests "
        "only). Required");
      v("checkpoints", checkpoints, "trained DSR modules to evaluate instead of training (all five or none)");
      v("unet_base_width", unet_base_width,
        "base width of the anomaly detection and upsampling U-Nets (DSR: 64, fixed in dsr_model.py)",
        Check::at_least(1));
      v("image_recon_bottleneck", image_recon_bottleneck,
        "channels of the image reconstruction network's bottleneck (DSR: 64, fixed in dsr_model.py)",
        Check::at_least(1));
      v("channel_order", channel_order,
        "channel order the networks see: bgr (the reference reads images with cv2; needed for its "
        "checkpoints) or rgb",
        Check::one_of({"bgr", "rgb"}));
      v("latent_anomaly", latent_anomaly,
        "latent-space anomaly generator (DSR: strength U(0.2, 1), skip the nearest 5%, levels as the reference)");
      v("perlin", perlin,
        "stage 1's anomaly mask at image resolution (data_loader.py TrainWholeImageDataset: scale 2^[0,6), "
        "rotation +-90, threshold 0.5, empty with probability 0.5)");
      v("rotate_probability", rotate_probability,
        "stage 1: probability that the training image is rotated by U(-90, 90) degrees first (TrainWholeImageDataset: "
        "torch.rand(1) > 0.6, i.e. 0.4)",
        Check::range(0, 1));
      v("losses", losses,
        "stage 1 loss terms; outputs: feat_hi, feat_lo (restored features before quantisation), image_recon "
        "(object-specific reconstruction), segmentation (N,2,H,W) logits; targets: quantized_hi, quantized_lo "
        "(clean codes), image, mask (DSR: l2 + l2 + 10 l2 + focal gamma 2 on softmax)");
      v("trainer", trainer, "stage 1 (DSR: Adam 2e-4, batch 8, 100 epochs of 8000 images, x0.1 at 80%)");
      v("upsampling_synthesizer", upsampling_synthesizer,
        "stage 2's image-space anomalies (DSR MVTecImageAnomTrainDataset: a solid colour through a Perlin mask, "
        "beta U(0, 0.8), half the images unchanged)");
      v("upsampling_rotate_probability", upsampling_rotate_probability,
        "stage 2: probability that the image is rotated by U(-90, 90) degrees before the anomaly (torch.rand(1) > "
        "0.7: 0.3)",
        Check::range(0, 1));
      v("upsampling_losses", upsampling_losses,
        "stage 2 loss terms; outputs: refined (N,2,H,W) logits; targets: mask (DSR: focal gamma 2 on softmax)");
      v("upsampling_trainer", upsampling_trainer,
        "stage 2, the upsampling module alone (DSR: epochs // 2 epochs, Adam 2e-4; the reference's MultiStepLR "
        "milestones lie at 80% and 90% of the stage-1 epochs, beyond stage 2's end: constant lr)");
      v("image_score", image_score,
        "image score; map = \"raw\" reads the anomaly detection module's map, \"final\" the upsampling module's "
        "map after the postprocess chain (DSR: max of the detection map's 21x21 average pool, raw)");
      v("postprocess", postprocess,
        "map post-processing parts, in order, on the upsampling module's map (at the input size; DSR: none, [])");
    }
  };
  explicit Dsr(const Options& o);
  std::string normalization() const override { return "none"; }
  /// Two stages (train_stages): the subspace, reconstruction and detection modules, then the
  /// upsampling module on frozen ones; nothing when method.checkpoints gives them trained.
  void fit(FitContext& ctx) override;
  Prediction predict(const Batch& batch, const RunContext& ctx) override;
  /// Both stages' summaries ("stages"), the second's at the top level.
  nlohmann::json summary() const override;

  /// The modules after build(): vq, sub_res_hi, sub_res_lo, image_recon, anomaly_det, upsample.
  std::shared_ptr<torch::nn::Module> module(const std::string& name) { return part_module(name); }
  DiscreteLatentModel& vq() { return vq_; }
  /// Loads the modules from one state dict whose keys are "<module>.<reference key>" for the
  /// modules present (strict per module: every key of a present module must match).
  void load(const StateDict& state, const std::string& source);

  /// Stage-1 draws for a batch of `n` images of size (h, w), all from `rng`.
  DsrStage1Draws draw_stage1(int64_t n, int64_t h, int64_t w, std::mt19937_64& rng) const;
  /// One stage-1 step on images (N,3,H,W) in [0, 1] in network channel order (sides multiples of
  /// 32; training pads the pipeline's images), masks (N,1,H,W): the VQ-VAE in eval mode, the
  /// trained modules in their current mode.
  DsrStage1Step stage1_step(const torch::Tensor& images, const torch::Tensor& masks, const DsrStage1Draws& draws);
  /// The forward pass of stage 2 and inference; only the upsampling module records gradients.
  DsrForward forward(const torch::Tensor& images);
  /// Stage-2 loss terms of a forward pass against masks (N,1,H,W).
  LossValues stage2_losses(const DsrForward& f, const torch::Tensor& masks) const;
  /// Pixel maps (N,1,H,W) = softmax(refined)[:, 1] and image scores from the detection map.
  Prediction finish(const DsrForward& f) const;
  /// adfw's RGB images to the networks' channel order.
  torch::Tensor to_network(const torch::Tensor& rgb) const;
  const Options& options() const { return opt_; }

 protected:
  /// Every module (seeded from the run's init stream; weights_init on the detection and
  /// reconstruction modules), vq_checkpoint and any trained checkpoints loaded.
  void build_parts(const RunContext& ctx) override;
  /// The first stage's hook, step and score.
  void configure_training(TrainSpec& spec, FitContext& ctx) override;
  const TrainerOptions& trainer_options() const override { return opt_.trainer; }

 private:
  Options opt_;
  DiscreteLatentModel vq_{nullptr};
  SubspaceRestrictionModule sub_res_hi_{nullptr}, sub_res_lo_{nullptr};
  ImageReconstructionNetwork image_recon_{nullptr};
  DsrUnetModule anomaly_det_{nullptr}, upsample_{nullptr};
  std::shared_ptr<LatentAnomaly> latent_;
  std::shared_ptr<Synthesizer> upsampling_synth_;
  MapScoring scoring_;
  std::vector<TrainSummary> stages_;
};

/// The VQ-VAE's own training (DSR pretrains it on ImageNet; no training code is published): loss
/// = mse(reconstruction, image) + both commitment losses, codebooks by EMA. fit() writes
/// <run>/vq_model.safetensors with the reference's keys, what Dsr's vq_checkpoint reads. The map
/// is the channel mean of the squared reconstruction error.
class DsrVqPretrain : public TrainedMethod {
 public:
  struct Options {
    DsrVqOptions vq;
    std::vector<std::string> folders;
    bool dataset_images = true;
    std::string channel_order = "bgr";
    TrainerOptions trainer;
    Slot<ImageScoreReducer> image_score{"max"};
    PostprocessChain postprocess;
    Options();
    template <class V>
    void fields(V& v) {
      v("vq", vq, "VQ-VAE sizes (DSR: 128 hiddens, 4096 codes of 128)");
      v("folders", folders,
        "image folders (searched recursively; png, jpg, jpeg, bmp, tif, tiff) whose images are trained on "
        "besides the data set's (DSR pretrains on ImageNet) (default none)");
      v("dataset_images", dataset_images,
        "also train on the data set's own training images (default true; false = the folders alone)");
      v("channel_order", channel_order, "channel order the network sees (bgr as DSR, which reads with cv2)",
        Check::one_of({"bgr", "rgb"}));
      v("trainer", trainer, "training (Adam 2e-4, batch 8)");
      v("image_score", image_score, "image score from the reconstruction-error map");
      v("postprocess", postprocess, "map post-processing parts, in order, on the reconstruction-error map (none, [])");
    }
  };
  explicit DsrVqPretrain(const Options& o);
  std::string normalization() const override { return "none"; }
  Prediction predict(const Batch& batch, const RunContext& ctx) override;
  DiscreteLatentModel& vq() { return vq_; }
  /// Loss terms of one batch (N,3,H,W) in network channel order: "l2:reconstruction",
  /// "commitment:hi", "commitment:lo".
  LossValues losses(const torch::Tensor& images);

 protected:
  /// The VQ-VAE, seeded as Dsr seeds its own ("dsr/vq").
  void build_parts(const RunContext& ctx) override;
  /// The training images (the data set's and the folders'), the step and the gradient-trained
  /// parameters (the codebooks follow their EMA).
  void configure_training(TrainSpec& spec, FitContext& ctx) override;
  std::optional<FitContext> training_data(FitContext& ctx) override;
  /// Writes <run>/vq_model.safetensors.
  void after_training(FitContext& ctx) override;
  const TrainerOptions& trainer_options() const override { return opt_.trainer; }

 private:
  Options opt_;
  DiscreteLatentModel vq_{nullptr};
  MapScoring scoring_;
  std::vector<SampleInfo> images_;  ///< what fit() trains on
};

/// test_dsr.py crop_image: drops max(0, side - size) // 2 pixels from each side of (N,C,H,W).
/// (The reference's slice [m:-m] is empty when the margin m is 0; this returns the input then.)
torch::Tensor dsr_crop(const torch::Tensor& x, int64_t size);

}  // namespace adfw
