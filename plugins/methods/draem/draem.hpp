// DRAEM (Zavrtanik, Kristan, Skočaj, "DRAEM – A discriminatively trained reconstruction embedding
// for surface anomaly detection", ICCV 2021; VitjanZ/DRAEM): a reconstructive and a discriminative
// U-Net trained on Perlin/texture anomalies. Recipe, options and sources: README.md in this folder.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "adfw/core/registry.hpp"
#include "adfw/method/method.hpp"
#include "adfw/method/trained.hpp"
#include "adfw/metric/reducers.hpp"
#include "adfw/synth/synthesizer.hpp"
#include "adfw/train/loss.hpp"
#include "adfw/train/network.hpp"
#include "adfw/train/trainer.hpp"

namespace adfw {

class Draem : public TrainedMethod {
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
  Prediction predict(const Batch& batch, const RunContext& ctx) override;
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

 protected:
  void build_parts(const RunContext& ctx) override;
  void configure_training(TrainSpec& spec, FitContext& ctx) override;
  const TrainerOptions& trainer_options() const override { return opt_.trainer; }
  const std::vector<LossTerm>* loss_terms() const override { return &opt_.losses; }

 private:
  Options opt_;
  std::unique_ptr<Network> rec_, disc_;
  MapScoring scoring_;
};

}  // namespace adfw
