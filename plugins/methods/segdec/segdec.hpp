// Mixed-supervision SegDecNet (Božič, Tabernik, Skočaj, "Mixed supervision for surface-defect
// detection: from weakly to fully supervised learning", Computers in Industry 2021; reference code
// vicoslab/mixed-segdec-net-comind2021: models.py, end2end.py, data/dataset.py, config.py).
//
// A segmentation network (a conv volume at 1/8 resolution and a 1x1 seg_mask head) and a decision
// network (an extractor on [volume, seg_mask] plus global max/avg pooling of features and of the
// map, one fc logit), both trained with BCE-with-logits:
//   - pixel-labelled positives and negatives: w_seg * mean(BCE(seg, m) * loss_mask) + w_dec * BCE(dec, y)
//   - image-labelled positives: w_dec * BCE(dec, y) only
// with dynamic balancing (w_seg = 1 - e/E, w_dec = delta * e/E), a multiplier on the gradient the
// decision loss sends into the segmentation network (0 in the reference), distance-transform
// weighted segmentation loss on dilated masks, frequency sampling of negatives, plain SGD.
// Image score = sigmoid(decision logit); anomaly map = sigmoid(seg logit) upsampled bilinearly.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "adfw/method/method.hpp"
#include "adfw/method/trained.hpp"
#include "adfw/metric/reducers.hpp"
#include "adfw/train/trainer.hpp"

namespace adfw {

namespace segdec_detail {
class SegDecNetImpl;
}

/// The SegDecNet network (models.py SegDecNet); parameter names are the reference's state_dict keys.
struct SegDecNetOptions {
  int64_t in_channels = 3;
  std::vector<int64_t> widths{32, 64, 1024};
  template <class V>
  void fields(V& v) {
    v("in_channels", in_channels, "input image channels (default 3)", Check::at_least(1));
    v("widths", widths,
      "channels of the segmentation volume: first block, the 5x5 blocks, the final 15x15 block (SegDecNet: "
      "[32, 64, 1024]); the decision network's 8/16/32 channels and its 66-input fc are fixed",
      Check::at_least(1));
  }
};

class SegDecNet {
 public:
  explicit SegDecNet(const SegDecNetOptions& o);
  struct Outputs {
    torch::Tensor decision;  ///< (N,1) logits
    torch::Tensor seg;       ///< (N,1,H/8,W/8) logits
  };
  /// images (N,C,H,W) with H, W multiples of 8; `dec_grad_multiplier` scales the gradient the
  /// decision head sends back into the volume and the map (models.py GradientMultiplyLayer).
  Outputs forward(const torch::Tensor& images, double dec_grad_multiplier);
  std::shared_ptr<torch::nn::Module> module();

 private:
  std::shared_ptr<segdec_detail::SegDecNetImpl> net_;
};

/// data/dataset.py read_label_resize: the grey label u8 (H,W) dilated by a k x k square (k > 1),
/// resized with INTER_LINEAR to (height, width) and divided by 255 (float32, soft at the borders).
torch::Tensor segdec_label(const torch::Tensor& gt_u8, int64_t dilate, int64_t height, int64_t width);
/// data/dataset.py distance_transform: per 8-connected component of mask > 0, the Euclidean distance
/// to the nearest pixel outside it, divided by its maximum, to the power p, times max_val, summed
/// over components; 1 outside the mask. mask float32 (H,W) -> float32 (H,W).
torch::Tensor segdec_distance_weights(const torch::Tensor& mask, double max_val, double p);
/// data/dataset.py downsize: ReflectionPad2d(f) then AvgPool2d(2f + 1, stride f): (H,W) -> (1,H/f,W/f).
torch::Tensor segdec_downsize(const torch::Tensor& x, int64_t factor = 8);

class SegDec : public TrainedMethod {
 public:
  struct Options {
    SegDecNetOptions network;
    int64_t dilate = 15;
    bool weighted_seg_loss = true;
    double weight_p = 2.0;
    double weight_max = 3.0;
    bool dynamic_balancing = true;
    double delta = 1.0;
    double dec_grad_multiplier = 0.0;
    bool frequency_sampling = true;
    bool bgr = true;
    TrainerOptions trainer;
    Slot<ImageScoreReducer> image_score{"method"};
    PostprocessChain postprocess;
    Options();
    template <class V>
    void fields(V& v) {
      v("network", network, "the SegDecNet network");
      v("dilate", dilate,
        "side of the square that dilates pixel labels before resizing (KSDD2: 15; DAGM, KSDD: 7; 0 or 1 = none)",
        Check::at_least(0));
      v("weighted_seg_loss", weighted_seg_loss,
        "weight the segmentation BCE by the distance transform of the dilated mask (WEIGHTED_SEG_LOSS: true); "
        "false = the plain mean");
      v("weight_p", weight_p, "exponent p of the normalised distance (WEIGHTED_SEG_LOSS_P: 2)", Check::positive());
      v("weight_max", weight_max, "weight at the centre of a defect (WEIGHTED_SEG_LOSS_MAX: 3)", Check::positive());
      v("dynamic_balancing", dynamic_balancing,
        "segmentation weight 1 - e/E and decision weight delta * e/E at epoch e of E (DYN_BALANCED_LOSS: true; "
        "KSDD2 N = 0: false); false = 1 and delta");
      v("delta", delta, "decision-loss weight delta (DELTA_CLS_LOSS: 1)", Check::at_least(0));
      v("dec_grad_multiplier", dec_grad_multiplier,
        "factor on the gradient of the decision loss flowing into the segmentation network (GRADIENT_ADJUSTMENT "
        "true: 0; false: 1)",
        Check::range(0, 1));
      v("frequency_sampling", frequency_sampling,
        "each epoch sees every anomalous image and as many normal ones, the normal ones drawn favouring the "
        "least often seen (FREQUENCY_SAMPLING: true); false = a uniform draw of as many normal ones");
      v("bgr", bgr, "feed the network OpenCV's BGR channel order, as the reference (default true)");
      v("trainer", trainer,
        "training (SegDecNet KSDD2: SGD lr 0.01 without momentum, batch 1, 50 epochs, no augmentation, last "
        "epoch kept)");
      v("image_score", image_score,
        "image score: method = sigmoid of the decision head (SegDecNet), or a reducer of the map (map = \"raw\": "
        "the segmentation sigmoid on the network's 1/8 grid; \"final\": the map at the input size)");
      v("postprocess", postprocess,
        "map post-processing parts, in order, after the bilinear resize of the segmentation sigmoid to the input "
        "(SegDecNet: none, [])");
    }
  };
  explicit SegDec(const Options& o);
  std::string normalization() const override { return "none"; }
  /// Checks the training configuration and data, then trains (TrainedMethod::fit).
  void fit(FitContext& ctx) override;
  Prediction predict(const Batch& batch, const RunContext& ctx) override;

  SegDecNet& network();
  /// [0, 1] RGB images (N,C,H,W) as the network sees them (BGR when `bgr`).
  torch::Tensor network_input(const torch::Tensor& images) const;
  /// The network on [0, 1] RGB images with the configured gradient multiplier.
  SegDecNet::Outputs forward(const torch::Tensor& images);
  /// end2end.py get_loss_weights: (segmentation weight, decision weight) at epoch `epoch`.
  std::pair<double, double> loss_weights(int64_t epoch) const;
  /// The epoch whose weights the training steps use (the trainer sets it at every epoch start).
  void set_epoch(int64_t epoch) { epoch_ = epoch; }

  /// Per-sample targets (data/dataset.py), as the loader hook adds them to Sample::extras:
  /// "seg_mask" (1,h,w) soft mask at 1/8, "seg_loss_mask" (1,h,w) loss weights, "is_pos" (1,) the
  /// decision target (max of seg_mask; 1 for an image-labelled anomaly, whose mask is withheld),
  /// "is_segmented" (1,) 1 unless the sample is an image-labelled anomaly.
  struct Targets {
    torch::Tensor seg_mask, seg_loss_mask, is_pos, is_segmented;
  };
  /// The targets of one image of size (height, width) from its pixel label u8 (H0,W0) at the file's
  /// resolution (undefined = normal), and whether it is pixel-labelled. Images whose sides are not
  /// multiples of 8 or smaller than 128 high x 64 wide are zero-padded (bottom, right) for the
  /// network, and their targets with them.
  Targets targets(const torch::Tensor& gt_u8, bool segmented, int64_t height, int64_t width) const;
  /// The loader hook: reads pixel-labelled samples' masks from disk at their own resolution.
  SampleHook target_hook() const;

  /// One training iteration (end2end.py training_iteration) on network outputs: the per-sample
  /// losses summed over the batch (the reference's one-image sub-iterations each call backward, so
  /// the gradients add up). Also the per-sample terms for inspection.
  struct Step {
    LossValues values;
    torch::Tensor seg_bce;   ///< (N,1,h,w) BCE-with-logits, unreduced
    torch::Tensor loss_seg;  ///< (N,) mean of seg_bce * seg_loss_mask (0 where not segmented)
    torch::Tensor loss_dec;  ///< (N,) BCE-with-logits of the decision
    torch::Tensor loss;      ///< (N,) w_seg * loss_seg (segmented only) + w_dec * loss_dec
  };
  Step step(const SegDecNet::Outputs& out, const Targets& t, double w_seg, double w_dec) const;
  /// The batch's targets from its extras (as the hook left them).
  static Targets batch_targets(const Batch& batch, const torch::Device& device);

 protected:
  void build_parts(const RunContext& ctx) override;
  void configure_training(TrainSpec& spec, FitContext& ctx) override;
  const TrainerOptions& trainer_options() const override { return opt_.trainer; }
  void describe(nlohmann::json& summary) const override;

 private:
  Options opt_;
  std::unique_ptr<SegDecNet> net_;
  MapScoring scoring_;
  int64_t epoch_ = 0;
  torch::Device device_ = torch::kCPU;
};

}  // namespace adfw
