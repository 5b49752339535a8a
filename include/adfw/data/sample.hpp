// What flows from data sets through loaders into methods and the evaluator.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace adfw {

/// How much a training sample tells about its anomaly (mixed supervision).
enum class Supervision {
  normal,       ///< known defect-free
  image_label,  ///< anomalous, image label only (no usable pixel mask)
  pixel_mask,   ///< anomalous with a pixel mask
};
const char* to_string(Supervision s);
/// "normal" / "image_label" / "pixel_mask"; throws ConfigError listing the names otherwise.
Supervision supervision_from_string(const std::string& s);

enum class Split { train, test, val };
const char* to_string(Split s);
/// "train" / "test" / "val" ("validation" too); throws ConfigError listing the names otherwise.
Split split_from_string(const std::string& s);

/// One image on disk and what is known about it. Data sets produce these; nothing is decoded yet.
struct SampleInfo {
  std::string path;         ///< image file
  std::string mask_path;    ///< "" when there is no mask (normal images, image-label-only anomalies)
  int label = 0;            ///< 0 normal, 1 anomalous
  std::string defect_type;  ///< "good" for normal images
  Split split = Split::test;
  Supervision supervision = Supervision::normal;
  std::string category;     ///< data set category (bottle, magnetic_tile, ...), may be ""
};

/// A decoded, transformed sample.
struct Sample {
  torch::Tensor image;  ///< float32 (C,H,W), after the transform pipeline (normalised as configured)
  torch::Tensor mask;   ///< float32 (1,H,W) in {0,1}; zeros when there is no mask
  bool has_mask = false;
  SampleInfo info;
  /// Further per-sample tensors a loader hook adds (e.g. the clean image behind a synthetic
  /// anomaly, a blend-weight map, a diffusion step). Extras whose name starts with "image" are
  /// normalised like `image`; the rest are kept as the hook wrote them. Collated by name.
  std::map<std::string, torch::Tensor> extras;
};

/// A batch of samples stacked along dim 0.
struct Batch {
  torch::Tensor images;    ///< (N,C,H,W) float32
  torch::Tensor masks;     ///< (N,1,H,W) float32 in {0,1}; zeros where has_mask is false
  torch::Tensor labels;    ///< (N,) int64
  torch::Tensor has_mask;  ///< (N,) bool: pixel mask available (pixel losses only where true)
  std::vector<SampleInfo> info;
  std::map<std::string, torch::Tensor> extras;  ///< Sample::extras stacked along dim 0
  int64_t size() const { return static_cast<int64_t>(info.size()); }
};

/// Stacks samples into a batch. All images must have the same size; otherwise throws adfw::Error
/// naming the first two files that differ (configure a resize in the transforms), and when the
/// samples' extras differ in names or shapes.
Batch collate(std::vector<Sample> samples);

}  // namespace adfw
