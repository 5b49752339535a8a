// RIAD (Zavrtanik, Kristan, Skočaj, "Reconstruction by inpainting for visual anomaly detection",
// Pattern Recognition 2021; plutoyuxie/Reconstruction-by-inpainting-for-visual-anomaly-detection):
// inpainting of random mosaic masks, multi-scale gradient-magnitude-similarity anomaly map. Recipe,
// options and sources: README.md in this folder.
#pragma once

#include <memory>
#include <string>
#include <vector>
#include <random>

#include "adfw/core/registry.hpp"
#include "adfw/method/method.hpp"
#include "adfw/method/trained.hpp"
#include "adfw/metric/reducers.hpp"
#include "adfw/train/loss.hpp"
#include "adfw/train/network.hpp"
#include "adfw/train/trainer.hpp"

namespace adfw {

class Riad : public TrainedMethod {
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
  Prediction predict(const Batch& batch, const RunContext& ctx) override;
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

 protected:
  void build_parts(const RunContext& ctx) override;
  void configure_training(TrainSpec& spec, FitContext& ctx) override;
  const TrainerOptions& trainer_options() const override { return opt_.trainer; }
  const std::vector<LossTerm>* loss_terms() const override { return &opt_.losses; }

 private:
  int64_t multiple() const;
  Options opt_;
  std::unique_ptr<Network> net_;
  MapScoring scoring_;
};

}  // namespace adfw
