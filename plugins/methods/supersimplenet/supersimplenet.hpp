// SuperSimpleNet (Rolih, Fučka, Skočaj, "SuperSimpleNet: Unifying Unsupervised and Supervised
// Learning for Fast and Reliable Surface Defect Detection", ICPR 2024; blaz-r/SuperSimpleNet):
// frozen features, adaptor, Perlin-masked feature noise, segmentation + classification heads, under
// every supervision regime (normal only, image labels, pixel masks, mixed). SimpleNet (Liu et al.,
// CVPR 2023; DonaldRR/SimpleNet) is a configuration of this class (experiments/simplenet.toml):
// whole-map noise, discriminator head, no classification head. Recipe, options and sources:
// README.md in this folder.
#pragma once

#include <memory>
#include <string>
#include <vector>
#include <map>
#include <random>

#include "adfw/backbone/backbone.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/method/memory_bank.hpp"
#include "adfw/method/method.hpp"
#include "adfw/method/trained.hpp"
#include "adfw/metric/reducers.hpp"
#include "adfw/synth/feature_noise.hpp"
#include "adfw/synth/synthesizer.hpp"
#include "adfw/train/loss.hpp"
#include "adfw/train/network.hpp"
#include "adfw/train/trainer.hpp"

namespace adfw {

class SuperSimpleNet : public TrainedMethod {
 public:
  struct Options {
    Slot<Backbone> backbone{"resnet"};
    std::string aggregation = "supersimplenet";
    bool upscale = true;
    int64_t pool = 3;
    PatchAggregationOptions embedding;
    Slot<Network> adaptor{"feature_adaptor"};
    Slot<FeatureNoise> noise{"supersimplenet"};
    std::string synthesis = "feature";
    Slot<Synthesizer> synthesizer{"perlin_self"};
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
      v("synthesis", synthesis,
        "where training anomalies are made: \"feature\" = `noise` on the adapted features (SuperSimpleNet, "
        "SimpleNet); \"image\" = `synthesizer` on the normal training images (DRAEM-style), which then go "
        "through the backbone, their masks brought to the feature grid like real masks (bilinear, >= 0.5)",
        Check::one_of({"feature", "image"}));
      v("synthesizer", synthesizer,
        "synthesis \"image\": the image-space synthesizer applied to each normal training image in the loader "
        "(e.g. perlin_texture with a DTD folder, cutpaste); real anomalous training images keep their own labels");
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
  Prediction predict(const Batch& batch, const RunContext& ctx) override;

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
  /// synthesis "image": a step whose anomalies are already in the images (from image_synthesis_hook):
  /// the heads on the clean adapted features, targets the batch's masks at the feature grid and its labels.
  StepTensors step_tensors_image(const torch::Tensor& features, const Batch& batch);
  /// The adaptor on aggregated features (a ConfigError naming method.adaptor when it cannot take
  /// their channels), and both heads on (possibly perturbed) adapted features into st.outputs.
  torch::Tensor adapt(const torch::Tensor& features);
  void run_heads(const torch::Tensor& adapted, StepTensors& st);
  /// synthesis "image": the loader hook that puts a synthetic anomaly into each normal training
  /// sample (image 0..1 before normalisation; mask, label and pixel supervision set from the result).
  SampleHook image_synthesis_hook() const;
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

 protected:
  void build_parts(const RunContext& ctx) override;
  void configure_training(TrainSpec& spec, FitContext& ctx) override;
  const TrainerOptions& trainer_options() const override { return opt_.trainer; }
  const std::vector<LossTerm>* loss_terms() const override { return &opt_.losses; }
  void describe(nlohmann::json& summary) const override;

 private:
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
  int64_t build_channels_ = 0;  ///< build()'s `channels` while it runs
  torch::Device device_ = torch::kCPU;
};

}  // namespace adfw
