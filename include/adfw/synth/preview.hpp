// Contact sheet of synthesized samples, for eyeballing a synthesizer's settings
// (`adfw synth preview`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "adfw/synth/synthesizer.hpp"

namespace adfw {

struct PreviewOptions {
  int n = 16;            ///< samples shown
  int size = 256;        ///< images are resized to size x size before synthesis
  int per_row = 4;       ///< (input, augmented, mask) triplets per grid row
  uint64_t seed = 0;     ///< picks the images and drives the synthesizer
  bool only_anomalous = false;  ///< redraw (up to 20 times) until the sample has an anomaly
};

/// Image files (recursive, sorted) under `folder`; ConfigError when none.
std::vector<std::string> list_images(const std::string& folder);
/// Loads an image file as a (3,size,size) float 0..1 RGB tensor.
torch::Tensor load_image_tensor(const std::string& path, int size);
/// 8-bit BGR grid: each tile is input | augmented | mask (mask in white, its outline in red on
/// the augmented image).
cv::Mat synth_preview_grid(const Synthesizer& synth, const std::vector<std::string>& images,
                           const PreviewOptions& options);
/// Writes an image atomically (temporary file in the same folder, then rename).
void write_image_atomic(const std::string& path, const cv::Mat& image);

}  // namespace adfw
