// Methods trained on synthetic (or a few real) anomalies, assembled from registered parts:
// networks (family "network"), synthesizers ("synthesizer", "feature_noise"), losses ("loss"),
// image-score reducers ("image_score") and the shared trainer (train/trainer.hpp).
//
//   DRAEM          (Zavrtanik et al., ICCV 2021)   reconstructive + discriminative U-Nets on
//                                                  Perlin/texture anomalies
//   RIAD           (Zavrtanik et al., PR 2021)     inpainting of random mosaic masks, MSGMS map
//   SuperSimpleNet (Rolih et al., ICPR 2024)       frozen features, adaptor, Perlin-masked feature
//                                                  noise, segmentation + classification heads; every
//                                                  supervision regime (normal only, image labels,
//                                                  pixel masks, mixed)
//   SimpleNet      (Liu et al., CVPR 2023)         a configuration of "supersimplenet": whole-map
//                                                  noise, discriminator head, no classification head
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "adfw/backbone/backbone.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/method/method.hpp"
#include "adfw/method/training_free.hpp"
#include "adfw/metric/reducers.hpp"
#include "adfw/synth/feature_noise.hpp"
#include "adfw/synth/synthesizer.hpp"
#include "adfw/train/loss.hpp"
#include "adfw/train/network.hpp"
#include "adfw/train/trainer.hpp"

namespace adfw {

/// A loss term from TOML text (defaults of methods' loss lists).
LossTerm loss_term(const std::string& toml_text);

/// Reflect-pads (N,C,H,W) at the bottom/right to multiples of `multiple` (U-Nets that halve the
/// size k times need multiples of 2^k); crop_to() undoes it on outputs.
torch::Tensor pad_to_multiple(const torch::Tensor& x, int64_t multiple);
torch::Tensor crop_to(const torch::Tensor& x, int64_t height, int64_t width);

/// Per-sample weight of pixel losses under mixed supervision, shaped (N,1,1,1): 0 for anomalous
/// samples that only carry an image label (their masks are unknown, not empty), 1 otherwise.
torch::Tensor pixel_loss_weights(const Batch& batch);

// ---------------------------------------------------------------------------------------------
class Draem : public Method {
 public:
  struct Options {
    Slot<Network> reconstructive{"draem_reconstructive"};
    Slot<Network> discriminative{"draem_discriminative"};
    Slot<Synthesizer> synthesizer{"perlin_texture"};
    std::vector<LossTerm> losses;
    TrainerOptions trainer;
    Slot<ImageScoreReducer> image_score{"avgpool_max"};
    PostprocessChain postprocess;
    int64_t pad_multiple = 32;
    Options();
    template <class V>
    void fields(V& v) {
      v("reconstructive", reconstructive, "reconstructive sub-network (DRAEM: autoencoder, base width 128)");
      v("discriminative", discriminative,
        "discriminative sub-network on [reconstruction, input] (DRAEM: U-Net, base 64, 2 output logits)");
      v("synthesizer", synthesizer,
        "anomaly synthesizer (DRAEM: perlin_texture: the normal image rotated with probability 0.3, Perlin mask "
        "+ DTD texture, beta in [0, 0.8])");
      v("losses", losses,
        "loss terms; outputs: reconstruction (N,3,H,W), segmentation (N,2,H,W) logits; targets: image (the "
        "clean image, as the synthesizer left it), mask (N,1,H,W) (DRAEM: l2 + ssim with data_range 0 (from the "
        "reconstruction) on reconstruction/image, focal gamma 2 smooth 1e-5 on segmentation/mask)");
      v("trainer", trainer, "training (DRAEM: Adam 1e-4, batch 8, 700 epochs, x0.2 at 80% and 90%)");
      v("image_score", image_score, "image score from the map (DRAEM: max of the 21x21 mean-filtered map)");
      v("postprocess", postprocess,
        "map post-processing parts, in order, on the softmax map (already at the input size; DRAEM: none, [])");
      v("pad_multiple", pad_multiple,
        "inputs whose sides are not multiples of this are reflect-padded for the networks and the outputs "
        "cropped back (DRAEM's U-Nets halve the size 5 times: 32)",
        Check::at_least(1));
      retired_key(v, "smoothing", smoothing_retired());
    }
  };
  explicit Draem(const Options& o);
  std::string normalization() const override { return "none"; }
  void fit(FitContext& ctx) override;
  Prediction predict(const Batch& batch, const RunContext& ctx) override;
  nlohmann::json summary() const override;
  StateDict state() const override;
  void load_state(const StateDict& state, const RunContext& ctx, const std::string& source) override;
  /// Builds both networks on ctx.device (fit() does this; tests call it to load weights).
  void build(const RunContext& ctx);
  /// A network after build(): "reconstructive" or "discriminative".
  Network& part(const std::string& name);
  struct Outputs {
    torch::Tensor reconstruction;  ///< (N,3,H,W)
    torch::Tensor segmentation;    ///< (N,2,H,W) logits; softmax channel 1 is the anomaly map
  };
  /// Both networks on `images` (N,3,H,W) in [0, 1], in the networks' current mode. The
  /// discriminative network sees [reconstruction, images], the reconstruction not detached, as in
  /// train_DRAEM.py (predict() runs without gradients).
  Outputs forward(const torch::Tensor& images);
  /// The discriminative network's logits (N,2,H,W) on [reconstruction, images]: forward()'s second
  /// half for a given reconstruction (the pair is reflect-padded to pad_multiple, where forward()
  /// pads the input before the reconstructive network; the same for sides that are multiples).
  torch::Tensor segment(const torch::Tensor& reconstruction, const torch::Tensor& images);
  /// The anomaly maps (softmax channel 1, post-processed as configured) and image scores of
  /// segmentation logits, as predict() returns them.
  Prediction finish(const torch::Tensor& segmentation) const;
  /// The losses of one batch as training computes them (tests inspect them): batch.images are the
  /// augmented images, extras["image_clean"] the targets of the reconstruction.
  LossValues losses(const Batch& batch, const torch::Device& device);
  /// The loss terms on given outputs, with the clean images and the masks as targets.
  LossValues losses(const Outputs& outputs, const torch::Tensor& clean, const torch::Tensor& masks) const;

 private:
  StateLayout layout();
  Options opt_;
  std::unique_ptr<Network> rec_, disc_;
  MapScoring scoring_;
  TrainSummary trained_;
};

// ---------------------------------------------------------------------------------------------
class Riad : public Method {
 public:
  struct Options {
    Slot<Network> network{"riad_unet"};
    std::vector<int64_t> cutout_sizes{2, 4, 8, 16};
    int64_t num_masks = 3;
    int64_t msgms_scales = 4;
    std::string cell_weighting = "cells";
    bool signed_range = true;
    std::vector<LossTerm> losses;
    TrainerOptions trainer;
    PostprocessChain postprocess;
    Slot<ImageScoreReducer> image_score{"max"};
    int64_t pad_multiple = 32;
    Options();
    template <class V>
    void fields(V& v) {
      v("network", network, "inpainting network (RIAD: U-Net)");
      v("cutout_sizes", cutout_sizes, "mosaic cell sides k in pixels; training draws one per batch, inference uses "
                                      "all (RIAD: [2, 4, 8, 16])",
        Check::at_least(1));
      v("num_masks", num_masks, "disjoint cell sets per image; each is inpainted from the rest (RIAD: 3)",
        Check::at_least(2));
      v("msgms_scales", msgms_scales, "scales of the MSGMS anomaly map (RIAD: 4)", Check::at_least(1));
      v("cell_weighting", cell_weighting,
        "how the MSGMS maps of the cell sizes are added up: \"cells\" weights cell size k by 1/N^2 with "
        "N = image width / k, so the coarsest cells dominate (RIAD test.py: \"cells\"); \"equal\" takes "
        "their plain mean",
        Check::one_of({"cells", "equal"}));
      v("signed_range", signed_range,
        "map the [0, 1] input images (input.normalize = \"none\") to [-1, 1] for the network, the losses and "
        "the map, so hidden cells are mid-grey and the SSIM and GMS constants sit where the reference put "
        "them (RIAD datasets/mvtec.py Normalize(0.5, 0.5) with a tanh output: true); false = use the [0, 1] "
        "images as they arrive (hidden cells black)");
      v("losses", losses,
        "loss terms; output reconstruction (N,3,H,W), target image, both in the network's range (RIAD: l2 + "
        "msgms + ssim with data_range 1, weights 1)");
      v("trainer", trainer,
        "training (RIAD: Adam 1e-4, weight decay 1e-5, batch 4, 300 epochs, lr x0.1 from epoch 250 of 300: "
        "multistep at 0.83, the 250th epoch)");
      v("postprocess", postprocess,
        "map post-processing parts, in order, on the MSGMS map (RIAD test.py: scipy gaussian_filter sigma 7, "
        "mirrored borders, truncated at 4 sigma: upsample (a no-op at the input size), then gaussian sigma 7 with "
        "kernel_size 57)");
      v("image_score", image_score, "image score from the map (RIAD: max)");
      v("pad_multiple", pad_multiple,
        "inputs are reflect-padded to multiples of this and of every cutout size, outputs cropped back "
        "(RIAD's U-Net: 32)",
        Check::at_least(1));
      retired_key(v, "smoothing", smoothing_retired());
    }
  };
  explicit Riad(const Options& o);
  /// Images arrive in [0, 1]; to_network_range() maps them to the reference's [-1, 1].
  std::string normalization() const override { return "none"; }
  void fit(FitContext& ctx) override;
  Prediction predict(const Batch& batch, const RunContext& ctx) override;
  nlohmann::json summary() const override;
  StateDict state() const override;
  void load_state(const StateDict& state, const RunContext& ctx, const std::string& source) override;
  /// Builds the network on ctx.device (fit() does this; tests call it to load weights).
  void build(const RunContext& ctx);
  /// The network after build(): "network".
  Network& part(const std::string& name);
  /// [0, 1] images as the network, the losses and the map see them ([-1, 1] with signed_range).
  torch::Tensor to_network_range(const torch::Tensor& images) const;
  /// One mosaic (utils/gen_mask.py): (num_masks,H,W) float masks, 1 = visible. The k x k cells are
  /// shuffled and cut into num_masks consecutive runs of ceil(cells / num_masks) (the last one
  /// shorter); mask i hides run i, so every cell is hidden by exactly one mask.
  torch::Tensor mosaic_masks(int64_t height, int64_t width, int64_t k, std::mt19937_64& rng) const;
  /// sum_i net(x * M_i) * (1 - M_i) for masks (S,H,W) of x's size (1 = visible).
  torch::Tensor inpaint(const torch::Tensor& x, const torch::Tensor& masks);
  /// Inpaints x (N,3,H,W) with cells of side k split into num_masks sets drawn from `rng`.
  torch::Tensor inpaint(const torch::Tensor& x, int64_t k, std::mt19937_64& rng);
  /// The anomaly map before smoothing (N,1,H,W): for each cell size cutout_sizes[i], the MSGMS map
  /// (msgms_map, RIAD's MSGMS_Score) between x and its inpainting with masks[i], weighted as
  /// cell_weighting says. x in the network's range; masks[i] sized as x padded for the network.
  torch::Tensor raw_map(const torch::Tensor& x, const std::vector<torch::Tensor>& masks);
  /// The postprocess chain on a raw map and the image scores, as predict() returns them.
  Prediction finish(const torch::Tensor& raw_map, int64_t height, int64_t width) const;
  /// The loss terms on a reconstruction of x (both in the network's range).
  LossValues losses(const torch::Tensor& x, const torch::Tensor& reconstruction) const;

 private:
  StateLayout layout();
  int64_t multiple() const;
  Options opt_;
  std::unique_ptr<Network> net_;
  MapScoring scoring_;
  TrainSummary trained_;
};

// ---------------------------------------------------------------------------------------------
class SuperSimpleNet : public Method {
 public:
  struct Options {
    Slot<Backbone> backbone{"resnet"};
    std::string aggregation = "supersimplenet";
    bool upscale = true;
    int64_t pool = 3;
    PatchAggregationOptions embedding;
    Slot<Network> adaptor{"feature_adaptor"};
    Slot<FeatureNoise> noise{"supersimplenet"};
    Slot<Network> segmentation{"ssn_segmentation_head"};
    Slot<Network> classification{"ssn_classification_head"};
    bool classify = true;
    bool stop_grad = true;
    std::vector<LossTerm> losses;
    TrainerOptions trainer;
    PostprocessChain postprocess;
    Slot<ImageScoreReducer> image_score{"method"};
    Options();
    template <class V>
    void fields(V& v) {
      v("backbone", backbone, "frozen feature extractor and its taps (SuperSimpleNet: wide_resnet50_2 layer2 + "
                              "layer3, torchvision V1 weights)");
      v("aggregation", aggregation,
        "how the taps become one feature map: \"supersimplenet\" = taps resized bilinearly (align_corners true) "
        "and concatenated, then pool x pool average pooling (model/feature_extractor.py); \"simplenet\" = "
        "PatchCore-style patches of `embedding` on the first tap's grid (simplenet.py _embed)",
        Check::one_of({"supersimplenet", "simplenet"}));
      v("upscale", upscale,
        "aggregation supersimplenet: bring every tap to twice the first tap's resolution (SuperSimpleNet: true); "
        "false = the first tap's resolution");
      v("pool", pool,
        "aggregation supersimplenet: k x k average pooling, stride 1, zero padding counted, over the "
        "concatenated taps (SuperSimpleNet: 3; 1 = off)",
        Check::at_least(1));
      v("embedding", embedding,
        "aggregation simplenet: patch size, per-layer and final pooled lengths (SimpleNet: 3, "
        "pretrain_embed_dimension 1536, target_embed_dimension 1536); the adaptor's channels = target_dim");
      v("adaptor", adaptor,
        "feature adaptor (1x1 conv, C -> C); its in_channels \"auto\" = the aggregated features' C (the taps' "
        "total, or embedding.target_dim), which also feeds the heads' in_channels \"auto\"");
      v("noise", noise, "feature-space anomaly synthesis (supersimplenet: Perlin-masked; simplenet: whole map)");
      v("segmentation", segmentation,
        "head giving the anomaly logit map (N,1,h,w) (SuperSimpleNet head; SimpleNet discriminator)");
      v("classification", classification, "image-level head on [features, map] (SuperSimpleNet)");
      v("classify", classify,
        "use the classification head (SuperSimpleNet: true); false = no head, the image score is reduced from "
        "the map by image_score (SimpleNet: max)");
      v("stop_grad", stop_grad,
        "the classification head sees the segmentation map detached, so its loss does not train the "
        "segmentation head; the features keep their gradient into the adaptor, as in the reference's "
        "Discriminator.forward (SuperSimpleNet unsupervised: true; supervised: false)");
      v("losses", losses,
        "loss terms; outputs: segmentation (2N,1,h,w) logits, score (2N,) logits; targets: mask (2N,1,h,w), "
        "label (2N,); pixel terms get weight 0 for image-label-only anomalies (SuperSimpleNet: truncated_l1 "
        "margin 0.5 + focal gamma 4 on segmentation/mask + focal gamma 4 on score/label)");
      v("trainer", trainer,
        "training (SuperSimpleNet: AdamW at lr 2e-4 and weight decay 1e-5, with parameter groups adaptor (lr "
        "1e-4, weight decay 0.01), segmentation and classification; batch 32, 300 epochs, x0.4 at 80% and 90%)");
      v("postprocess", postprocess,
        "map post-processing parts, in order, from the head's patch-grid map to the final map (SuperSimpleNet: "
        "upsample, then gaussian sigma 4 with border \"reflect\" (torchvision's GaussianBlur, kernel 25); "
        "SimpleNet: upsample, then gaussian sigma 4, kernel_size 33, border \"symmetric\" (scipy))");
      v("image_score", image_score,
        "image score: method = sigmoid of the classification head (SuperSimpleNet), or a reducer of the map: "
        "map = \"raw\" reads the head's patch-grid map (SimpleNet _predict: max of the raw patch scores), "
        "\"final\" the post-processed one (SuperSimpleNet's seg- scores)");
      retired_key(v, "smoothing", smoothing_retired());
      retired_key(v, "score_raw_map",
                  "the image_score reducer says which map it reads; write\n  [method.image_score]\n"
                            "  type = \"max\"\n  map = \"raw\"");
    }
  };
  explicit SuperSimpleNet(const Options& o);
  std::string normalization() const override;
  void fit(FitContext& ctx) override;
  Prediction predict(const Batch& batch, const RunContext& ctx) override;
  nlohmann::json summary() const override;
  StateDict state() const override;
  void load_state(const StateDict& state, const RunContext& ctx, const std::string& source) override;

  /// Frozen, aggregated backbone features (N,C,h,w) of normalised images.
  torch::Tensor features(const torch::Tensor& images);
  /// The same from the backbone's tap maps (everything after the backbone); `trace` receives the
  /// intermediate tensors of aggregation "simplenet".
  torch::Tensor aggregate(const std::map<std::string, torch::Tensor>& maps, PatchAggregationTrace* trace = nullptr);
  /// Outputs, targets and pixel weights of one training step (tests inspect the supervision), and
  /// the adapted features before and after the noise.
  struct StepTensors {
    TensorMap outputs, targets, weights;
    torch::Tensor adapted, perturbed;
  };
  StepTensors step_tensors(const Batch& batch, std::mt19937_64& rng, const torch::Device& device);
  /// One training step from aggregated `features` (N,C,h,w) of `batch` (its masks, labels and
  /// supervision; images unused) with the noise draws given.
  StepTensors step_tensors(const torch::Tensor& features, const Batch& batch, const FeatureNoiseDraws& draws);
  /// The configured losses of a step, as training computes them.
  LossValues losses(const StepTensors& st) const;
  /// Inference from aggregated features: the adapted features, the head's raw map (N,1,h,w), the
  /// final map at (height, width) (upsampled and smoothed), the classification logits (when
  /// classifying) and the image scores.
  struct Inference {
    torch::Tensor adapted, raw_map, map, score_logits, scores;
  };
  Inference infer(const torch::Tensor& features, int64_t height, int64_t width);
  /// Channels C of the aggregated features, declared by the backbone's taps (aggregation
  /// "supersimplenet": their total; "simplenet": embedding.target_dim); `source` receives what
  /// decides it, for contract errors.
  int64_t feature_channels(std::string* source = nullptr) const;
  /// Builds the networks (fit() does this; tests call it) for the backbone's feature channels, or
  /// for `channels` features of another origin (tests feeding reference features).
  void build(const RunContext& ctx, int64_t channels = 0);
  const Backbone* backbone() const override { return backbone_.get(); }
  /// A trained part after build(): "adaptor", "segmentation" or "classification".
  Network& part(const std::string& name);

 private:
  StateLayout layout();
  /// The network slots with their "auto" in_channels settled for `channels` feature channels
  /// (a given number checked: ConfigError naming the key path and both numbers).
  struct Parts {
    Slot<Network> adaptor, segmentation, classification;
  };
  Parts settle_parts(int64_t channels, const std::string& source) const;
  Options opt_;
  std::unique_ptr<Backbone> backbone_;
  Parts parts_;
  std::unique_ptr<Network> adaptor_, seg_, cls_;
  std::unique_ptr<FeatureNoise> noise_;
  MapScoring scoring_;
  TrainSummary trained_;
  torch::Device device_ = torch::kCPU;
};

}  // namespace adfw
