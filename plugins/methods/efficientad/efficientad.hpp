// EfficientAD (Batzner, Heckler, König, "EfficientAD: Accurate Visual Anomaly Detection at
// Millisecond-Level Latencies", WACV 2024), as the unofficial reference nelson1425/EfficientAD
// (efficientad.py, pretraining.py, common.py) implements it; see README.md beside this file.
//
//   efficientad          a frozen PDN teacher, a PDN student with twice the teacher's channels and
//                        an autoencoder. The student's first half learns the teacher (hard-feature
//                        loss + a penalty on a folder of other images), the autoencoder learns the
//                        teacher too, and the student's second half learns the autoencoder. Maps:
//                        st = channel mean of (teacher - student[:C])^2, ae = channel mean of
//                        (autoencoder - student[C:])^2, each normalised by quantiles of the maps of a
//                        held-out 10% of the training images.
//   efficientad_teacher  the teacher's pretraining (pretraining.py): a PDN learns a frozen
//                        backbone's PatchCore-style patch features, normalised per channel.
//
// Module names are the reference's nn.Sequential indices ("0.weight", "3.weight", ...), so the
// published teacher_small.pth / teacher_medium.pth and trained students load as they are.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "adfw/backbone/backbone.hpp"
#include "adfw/core/registry.hpp"
#include "adfw/method/memory_bank.hpp"
#include "adfw/method/method.hpp"
#include "adfw/method/trained.hpp"
#include "adfw/metric/reducers.hpp"
#include "adfw/train/loss.hpp"
#include "adfw/train/trainer.hpp"

namespace adfw {

// ---------------------------------------------------------------------------------------------
// Networks (common.py)
// ---------------------------------------------------------------------------------------------

/// Patch description network. small: conv4 (w) - relu - avgpool2 - conv4 (2w) - relu - avgpool2 -
/// conv3 (2w) - relu - conv4 (out); medium: conv4 (2w) - relu - avgpool2 - conv4 (4w) - relu -
/// avgpool2 - conv1 (4w) - relu - conv3 (4w) - relu - conv4 (out) - relu - conv1 (out). The
/// reference's w = 128. `padding` is pretraining.py's variant (padding 3 / 1 on the first two
/// convs and pools and 1 on the 3x3 conv): a 256-px input gives 64 x 64 instead of 56 x 56.
/// Receptive field of small: 33 px (medium: 33 px as well).
class PdnImpl : public torch::nn::Module {
 public:
  PdnImpl(const std::string& size, int64_t out_channels, int64_t width = 128, bool padding = false);
  torch::Tensor forward(const torch::Tensor& x);
  const std::string& size() const { return size_; }
  int64_t out_channels() const { return out_channels_; }

 private:
  std::string size_;
  int64_t out_channels_ = 0;
  int64_t pool_padding_ = 0;
  std::vector<std::pair<int, torch::nn::Conv2d>> convs_;  // (Sequential index, conv)
};
TORCH_MODULE(Pdn);

/// The autoencoder of common.py get_autoencoder: six strided convs (3 -> a -> a -> b -> b -> b,
/// 4x4 stride 2 padding 1, then an 8x8 conv to 1x1), then bilinear upsampling to 3, 8, 15, 32, 63,
/// 127 with a 4x4 conv (padding 2), ReLU and Dropout(0.2) after each, upsampling to 56, a 3x3
/// conv - relu - 3x3 conv (out). The reference's a = 32, b = 64. The sizes assume 256-px inputs
/// (the 8x8 conv needs an 8x8 map at 1/32).
class EfficientAdAutoencoderImpl : public torch::nn::Module {
 public:
  EfficientAdAutoencoderImpl(int64_t out_channels, int64_t width = 32, double dropout = 0.2);
  /// `keep`, when given, holds the six dropout keep masks (0/1, shaped like each decoder
  /// activation, Sequential indices 14, 18, ..., 34) used in train mode instead of random draws:
  /// out = x * keep / (1 - p), as F.dropout.
  torch::Tensor forward(const torch::Tensor& x, const std::vector<torch::Tensor>* keep = nullptr);

 private:
  std::vector<torch::nn::Conv2d> enc_, dec_;
  torch::nn::Conv2d last1_{nullptr}, last2_{nullptr};
  double dropout_ = 0.2;
};
TORCH_MODULE(EfficientAdAutoencoder);

// ---------------------------------------------------------------------------------------------
// Pieces of the pipeline (public for tests and the teacher pretraining)
// ---------------------------------------------------------------------------------------------

/// (x - mean) / std with torchvision's ImageNet statistics, for (N,3,H,W) images in 0..1
/// (efficientad.py default_transform's Normalize).
torch::Tensor efficientad_normalize(const torch::Tensor& images01);

/// efficientad.py's split of the training images: torch.utils.data.random_split with
/// torch.Generator().manual_seed(seed) and lengths [int(0.9 n) ... ]: a permutation of the
/// indices 0..n-1 (torch.randperm on a CPU generator seeded `seed`), the first int((1 - f) n)
/// train the student, the rest normalise the maps. At least one image goes to each side.
struct EfficientAdSplit {
  std::vector<int64_t> train, validation;
};
EfficientAdSplit efficientad_split(int64_t n, double validation_fraction, uint64_t seed);

/// 0.1 * (map - q_start) / (q_end - q_start) (efficientad.py predict()), in float32; the
/// denominator is floored at 1e-12 (flat held-out maps would divide by zero).
torch::Tensor quantile_normalize(const torch::Tensor& map, double q_start, double q_end);

/// torchvision ColorJitter(brightness | contrast | saturation = strength) applied to a PIL image,
/// as efficientad.py's transform_ae: `kind` 0 brightness, 1 contrast, 2 saturation, with factor f
/// (U(1 - strength, 1 + strength) in the reference). Works on (3,H,W) images in 0..1 holding
/// 8-bit values and reproduces PIL's integer arithmetic (ImageEnhance: L = (19595 R + 38470 G +
/// 7471 B + 32768) >> 16; blend truncated to 0..255; contrast blends with round(mean L)).
torch::Tensor pil_color_jitter(const torch::Tensor& image01, int kind, double factor);
/// PIL's convert("L") replicated to three channels (RandomGrayscale), for (3,H,W) in 0..1.
torch::Tensor pil_grayscale(const torch::Tensor& image01);

/// Per-channel statistics over images, as efficientad.py teacher_normalization and
/// pretraining.py feature_normalization: mean = mean over images of each image's channel means;
/// std = sqrt(mean over images of each image's channel mean of (x - mean)^2). Both (1,C,1,1).
struct ChannelStats {
  torch::Tensor mean, std;
};
/// Streams (N,C,h,w) feature maps of one pass to `visit`; pass 0 gives the maps for the mean,
/// pass 1 those for the variance (pretraining.py draws new images for the second pass,
/// efficientad.py uses the same ones).
using FeatureSource = std::function<void(int pass, const std::function<void(const torch::Tensor&)>& visit)>;
/// The statistics above, accumulated map by map (memory independent of the image count).
ChannelStats channel_statistics(const FeatureSource& source);
/// The same over in-memory maps, both passes over the same list.
ChannelStats channel_statistics(const std::vector<torch::Tensor>& maps);

// ---------------------------------------------------------------------------------------------
// EfficientAD
// ---------------------------------------------------------------------------------------------

/// One training step's inputs: three (N,3,256,256) images in 0..1 (already augmented) and,
/// optionally, the autoencoder's dropout keep masks.
struct EfficientAdTrainInput {
  torch::Tensor image_st;       ///< the student-teacher image
  torch::Tensor image_ae;       ///< the same image after the colour jitter
  torch::Tensor image_penalty;  ///< an image of the penalty folder, or undefined (no penalty)
  std::vector<torch::Tensor> ae_keep;  ///< empty = random dropout
};

/// Everything one training step computes (efficientad.py main() loop body).
struct EfficientAdTrainStep {
  torch::Tensor teacher_st, teacher_ae;        ///< raw teacher outputs (N,C,h,w)
  torch::Tensor teacher_st_norm, teacher_ae_norm;  ///< (t - mean) / std
  torch::Tensor student_st;       ///< student(image_st)[:, :C]
  torch::Tensor student_penalty;  ///< student(image_penalty)[:, :C] (undefined without penalty)
  torch::Tensor student_ae;       ///< student(image_ae)[:, C:]
  torch::Tensor autoencoder;      ///< autoencoder(image_ae)
  LossValues losses;
};

/// The maps of a batch (efficientad.py predict()).
struct EfficientAdMaps {
  torch::Tensor map_st, map_ae;  ///< (N,1,h,w), before normalisation
  torch::Tensor st, ae;          ///< normalised (equal to the raw maps before fit())
  torch::Tensor combined;        ///< 0.5 st + 0.5 ae (weights as configured)
};

class EfficientAd : public TrainedMethod {
 public:
  struct Options {
    std::string model_size = "small";
    int64_t out_channels = 384;
    int64_t pdn_width = 128;
    int64_t ae_width = 32;
    std::string teacher_weights;
    std::string penalty_folder;
    double penalty_grayscale = 0.3;
    double ae_jitter = 0.2;
    double dropout = 0.2;
    double validation_fraction = 0.1;
    int64_t split_seed = 42;
    double q_start = 0.9;
    double q_end = 0.995;
    double st_weight = 0.5;
    int64_t map_padding = 4;
    std::vector<LossTerm> losses;
    TrainerOptions trainer;
    Slot<ImageScoreReducer> image_score{"max"};
    PostprocessChain postprocess;
    Options();
    template <class V>
    void fields(V& v) {
      v("model_size", model_size, "PDN architecture: small or medium (EfficientAD-S / -M; default small)",
        Check::one_of({"small", "medium"}));
      v("out_channels", out_channels,
        "teacher channels C; the student has 2C (efficientad.py out_channels: 384)", Check::at_least(1));
      v("pdn_width", pdn_width,
        "PDN base width w: small uses w and 2w channels, medium 2w and 4w (common.py: 128); it must match the "
        "teacher checkpoint",
        Check::at_least(1));
      v("ae_width", ae_width, "autoencoder widths a and 2a (common.py: 32)", Check::at_least(1));
      v("teacher_weights", teacher_weights,
        "the frozen teacher: a state_dict (.pth or .safetensors) with the reference's keys (0.weight, 3.weight, "
        "...), e.g. nelson1425/EfficientAD models/teacher_small.pth or the teacher.safetensors an "
        "efficientad_teacher run writes; \"random\" = an untrained teacher (only for tests and smoke runs). "
        "Required");
      v("penalty_folder", penalty_folder,
        "images for the penalty mean(student(image)[:, :C]^2) (efficientad.py -i: ImageNet train; resized to "
        "512, central 256 crop); \"\" = no penalty term (efficientad.py -i none) (default \"\")");
      v("penalty_grayscale", penalty_grayscale,
        "probability that a penalty image is made grey (efficientad.py penalty_transform: 0.3)", Check::range(0, 1));
      v("ae_jitter", ae_jitter,
        "the autoencoder's input is the training image after one of ColorJitter(brightness | contrast | "
        "saturation = this), chosen uniformly (efficientad.py transform_ae: 0.2; 0 = no jitter)",
        Check::range(0, 1));
      v("dropout", dropout, "dropout after each decoder ReLU of the autoencoder (common.py: 0.2)", Check::range(0, 0.99));
      v("validation_fraction", validation_fraction,
        "share of the training images held out (never trained on) whose maps give the normalisation "
        "quantiles; a data set's own validation split is used instead when it has one (efficientad.py: 0.1, "
        "MVTec LOCO: its validation folder)",
        Check::open_range(0, 1));
      v("split_seed", split_seed,
        "seed of the held-out split, torch.Generator().manual_seed(seed) + randperm as random_split "
        "(efficientad.py: 42)",
        Check::at_least(0));
      v("q_start", q_start, "lower quantile q_a of the validation maps (efficientad.py: 0.9)", Check::range(0, 1));
      v("q_end", q_end, "upper quantile q_b; a map value at q_b becomes 0.1 (efficientad.py: 0.995)",
        Check::range(0, 1));
      v("st_weight", st_weight,
        "final map = w * st + (1 - w) * ae (efficientad.py: 0.5; 1 = the student-teacher map alone, 0 = the "
        "autoencoder map alone)",
        Check::range(0, 1));
      v("map_padding", map_padding,
        "the combined map is zero-padded by this many cells on each side before bilinear upsampling to the "
        "image size (efficientad.py test(): 4, which maps the 56-cell grid of the unpadded PDN onto 256 px)",
        Check::at_least(0));
      v("losses", losses,
        "loss terms; outputs: student_st (student[:, :C] on the image), student_penalty (on a penalty image), "
        "student_ae (student[:, C:] on the jittered image), autoencoder; targets: teacher_st, teacher_ae "
        "(normalised teacher outputs), autoencoder (the autoencoder output, with its gradient), zero. "
        "efficientad.py: hard_feature (q 0.999) student_st/teacher_st + l2 student_penalty/zero + l2 "
        "autoencoder/teacher_ae + l2 student_ae/autoencoder; a student_penalty term is left out without a "
        "penalty folder");
      v("trainer", trainer,
        "training (efficientad.py: Adam lr 1e-4, weight decay 1e-5, 70000 steps at batch 1, x0.1 after 95% of "
        "the steps; no flips)");
      v("image_score", image_score,
        "image score from the final map (efficientad.py: max); map = \"raw\" reads the combined map on the "
        "networks' output grid, before the zero padding and upsampling");
      v("postprocess", postprocess,
        "map post-processing parts, in order, after the zero padding by map_padding and the bilinear upsampling "
        "to the input (efficientad.py: none, [])");
    }
  };

  explicit EfficientAd(const Options& o);
  std::string normalization() const override { return "none"; }
  /// Checks the input size, then trains (TrainedMethod::fit).
  void fit(FitContext& ctx) override;
  Prediction predict(const Batch& batch, const RunContext& ctx) override;

  Pdn& teacher() { return teacher_; }
  Pdn& student() { return student_; }
  EfficientAdAutoencoder& autoencoder() { return ae_; }

  /// Streams (N,3,256,256) images in 0..1 to `visit` (each call: every image once).
  using ImageSource = std::function<void(const std::function<void(const torch::Tensor&)>& visit)>;
  /// Teacher statistics over images in 0..1, one batch at a time (teacher_normalization).
  ChannelStats teacher_statistics(const ImageSource& images01);
  ChannelStats teacher_statistics(const std::vector<torch::Tensor>& images01);
  void set_teacher_statistics(const ChannelStats& s) { stats_ = s; }
  const ChannelStats& teacher_stats() const { return stats_; }
  /// One training step on the current modes of the networks (student, autoencoder in train mode
  /// for training). Needs the teacher statistics.
  EfficientAdTrainStep train_step(const EfficientAdTrainInput& in);
  /// The maps of (N,3,256,256) images in 0..1 (eval mode, no gradient); normalised with the
  /// quantiles once they are set.
  EfficientAdMaps maps(const torch::Tensor& images01);
  /// q_start / q_end quantiles of the raw st and ae maps of held-out images (map_normalization).
  void fit_quantiles(const ImageSource& images01);
  void fit_quantiles(const std::vector<torch::Tensor>& images01);
  std::array<double, 4> quantiles() const { return {q_st_a_, q_st_b_, q_ae_a_, q_ae_b_}; }
  /// The final map at height x width (padding, bilinear upsampling) and the image scores.
  Prediction infer(const torch::Tensor& images01, int64_t height, int64_t width);
  const Options& options() const { return opt_; }

 protected:
  /// The three networks (one init stream, "efficientad/networks"); the teacher loaded and frozen.
  void build_parts(const RunContext& ctx) override;
  /// The split, the teacher statistics and the step.
  void configure_training(TrainSpec& spec, FitContext& ctx) override;
  std::optional<FitContext> training_data(FitContext& ctx) override;
  /// The map quantiles on the held-out images.
  void after_training(FitContext& ctx) override;
  const TrainerOptions& trainer_options() const override { return opt_.trainer; }
  const std::vector<LossTerm>* loss_terms() const override { return &opt_.losses; }
  void describe(nlohmann::json& summary) const override;
  std::vector<std::string> extra_state_keys() const override { return {"teacher_mean", "teacher_std", "quantiles"}; }
  bool has_extra_state() const override { return has_quantiles_; }
  StateDict save_extra_state() const override;
  void load_extra_state(const StateDict& extra, const std::string& source) override;

 private:
  torch::Tensor normalized_teacher(const torch::Tensor& x);
  torch::Tensor penalty_image(const std::vector<std::string>& files, std::mt19937_64& rng) const;
  Options opt_;
  Pdn teacher_{nullptr}, student_{nullptr};
  EfficientAdAutoencoder ae_{nullptr};
  ChannelStats stats_;
  double q_st_a_ = 0, q_st_b_ = 0, q_ae_a_ = 0, q_ae_b_ = 0;
  bool has_quantiles_ = false;
  MapScoring scoring_;
  std::vector<SampleInfo> train_set_, val_set_;  ///< fit()'s split: student training, quantiles
  int64_t n_train_ = 0, n_validation_ = 0;
  torch::Device device_ = torch::kCPU;
};

// ---------------------------------------------------------------------------------------------
// Teacher pretraining (pretraining.py)
// ---------------------------------------------------------------------------------------------

/// One distillation step's tensors.
struct TeacherDistillStep {
  torch::Tensor embed;       ///< (N,C,h,w) backbone patch features (FeatureExtractor.embed)
  torch::Tensor target;      ///< (embed - mean) / std
  torch::Tensor prediction;  ///< PDN output (N,C,h,w)
  LossValues losses;
};

class EfficientAdTeacher : public TrainedMethod {
 public:
  struct Options {
    Slot<Backbone> backbone{"resnet"};
    PatchAggregationOptions embedding;
    std::string model_size = "small";
    int64_t out_channels = 384;
    int64_t pdn_width = 128;
    int64_t extractor_size = 512;
    int64_t pdn_size = 256;
    double grayscale = 0.1;
    int64_t normalization_images = 10000;
    std::vector<std::string> folders;
    bool train_split = true;
    std::vector<LossTerm> losses;
    TrainerOptions trainer;
    Slot<ImageScoreReducer> image_score{"max"};
    PostprocessChain postprocess;
    Options();
    template <class V>
    void fields(V& v) {
      v("backbone", backbone,
        "the frozen feature extractor and its two taps (pretraining.py: wide_resnet101_2 ImageNet, layer2 + "
        "layer3)");
      v("embedding", embedding,
        "patch features (pretraining.py FeatureExtractor: 3 x 3 patches, each layer pooled to 1024, then to "
        "out_channels; target_dim is set to out_channels)");
      v("model_size", model_size, "PDN architecture: small or medium (default small)", Check::one_of({"small", "medium"}));
      v("out_channels", out_channels, "teacher channels (pretraining.py: 384)", Check::at_least(1));
      v("pdn_width", pdn_width, "PDN base width (common.py: 128)", Check::at_least(1));
      v("extractor_size", extractor_size,
        "the backbone sees the image at this size (pretraining.py: 512, for a 64 x 64 layer2 grid)",
        Check::at_least(16));
      v("pdn_size", pdn_size,
        "the PDN (padding = True) sees the image at this size (pretraining.py: 256, a 64 x 64 output); the "
        "backbone grid must equal the PDN's output grid",
        Check::at_least(16));
      v("grayscale", grayscale,
        "probability that an image is made grey for both networks (pretraining.py: RandomGrayscale(0.1))",
        Check::range(0, 1));
      v("normalization_images", normalization_images,
        "images for the per-channel mean, and as many for the variance (pretraining.py feature_normalization: "
        "10000; capped at the number of training images)",
        Check::at_least(1));
      v("folders", folders,
        "image folders (searched recursively) to distil on, besides or instead of the data set's training "
        "images (pretraining.py: ImageNet train) (default [])");
      v("train_split", train_split, "also distil on the data set's training images (default true)");
      v("losses", losses, "loss terms; output prediction, target target (pretraining.py: l2)");
      v("trainer", trainer, "training (pretraining.py: Adam lr 1e-4, weight decay 1e-5, batch 16, 60000 steps)");
      v("image_score", image_score,
        "image score of the distillation-error map (max); map = \"raw\" reads it on the PDN's output grid");
      v("postprocess", postprocess,
        "map post-processing parts, in order, after the bilinear upsampling to the input (none, [])");
    }
  };

  explicit EfficientAdTeacher(const Options& o);
  std::string normalization() const override { return "none"; }
  Prediction predict(const Batch& batch, const RunContext& ctx) override;

  Pdn& pdn() { return pdn_; }
  /// FeatureExtractor.embed from the backbone's tap maps: (N, out_channels, h, w).
  torch::Tensor embed(const std::map<std::string, torch::Tensor>& taps) const;
  /// The backbone's embedding of (N,3,H,W) images in 0..1, resized to extractor_size.
  torch::Tensor embed_images(const torch::Tensor& images01);
  void set_statistics(const ChannelStats& s) { stats_ = s; }
  const ChannelStats& statistics() const { return stats_; }
  /// One step from a given embedding and (N,3,pdn_size,pdn_size) images in 0..1.
  TeacherDistillStep train_step(const torch::Tensor& embed, const torch::Tensor& pdn_images01);

 protected:
  /// The backbone (frozen, not a part) and the PDN.
  void build_parts(const RunContext& ctx) override;
  /// The images (training split and folders), the feature statistics and the step.
  void configure_training(TrainSpec& spec, FitContext& ctx) override;
  std::optional<FitContext> training_data(FitContext& ctx) override;
  /// Writes <run>/teacher.safetensors.
  void after_training(FitContext& ctx) override;
  const TrainerOptions& trainer_options() const override { return opt_.trainer; }
  const std::vector<LossTerm>* loss_terms() const override { return &opt_.losses; }
  void describe(nlohmann::json& summary) const override;
  std::vector<std::string> extra_state_keys() const override { return {"feature_mean", "feature_std"}; }
  bool has_extra_state() const override { return stats_.mean.defined(); }
  StateDict save_extra_state() const override { return {{"feature_mean", stats_.mean}, {"feature_std", stats_.std}}; }
  void load_extra_state(const StateDict& extra, const std::string& source) override;

 private:
  Options opt_;
  std::unique_ptr<Backbone> backbone_;
  Pdn pdn_{nullptr};
  ChannelStats stats_;
  MapScoring scoring_;
  std::vector<SampleInfo> samples_;  ///< the images fit() distils on
  std::string saved_;
  torch::Device device_ = torch::kCPU;
};

}  // namespace adfw
