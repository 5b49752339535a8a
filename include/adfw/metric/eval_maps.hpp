// Evaluating anomaly maps produced elsewhere (`adfw eval-maps`).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

namespace adfw::metric {

/// Reads a 2-D .npy array (float32, float64 or uint8, little-endian, C order; (H,W), (1,H,W) or
/// (H,W,1)) as a CV_32F matrix. Throws adfw::Error naming the file for anything else.
cv::Mat read_npy(const std::filesystem::path& file);

/// One anomaly map or mask from .npy, .png, .tif/.tiff (single channel, any depth) as CV_32F.
cv::Mat read_map_file(const std::filesystem::path& file);

struct EvalMapsOptions {
  std::filesystem::path input;  ///< a .safetensors file, or a folder of maps (searched recursively)
  std::filesystem::path masks;  ///< folder of masks (only with a folder of maps)
  double fpr_limit = 0.3;
  std::vector<std::string> metrics = {"image_auroc", "image_ap",     "image_f1_max", "pixel_auroc",
                                      "pixel_ap",    "pixel_f1_max", "aupro"};
  int threads = 0;
};

/// safetensors input: anomaly_maps (N,H,W) float, masks (N,H,W) 0/1, labels (N), optional
/// image_scores (N) (else the max of each map).
/// Folder input: every map file (.png/.tif/.tiff/.npy) below `input`, matched to
/// `masks/<same relative path>` with the extension of any supported kind or a `_mask` suffix
/// (MVTec's ground_truth layout); no mask = a defect-free image. Labels come from mask emptiness.
/// Returns {"image_auroc": ..., ..., "aupro": ..., "aupro_fpr_limit": ..., "images": N, ...}.
nlohmann::json eval_maps(const EvalMapsOptions& options);

}  // namespace adfw::metric
