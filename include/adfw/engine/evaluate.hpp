// Collects a method's predictions over the test split and turns them into metrics.json,
// per_image.csv and heatmap overlays in the run folder.
#pragma once

#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "adfw/data/sample.hpp"
#include "adfw/method/method.hpp"
#include "adfw/metric/evaluator.hpp"

namespace adfw {


/// Everything the evaluator needs, gathered batch by batch (CPU, float32 maps, uint8 masks).
struct EvalInputs {
  std::vector<torch::Tensor> maps;    ///< per image (H,W) float32
  std::vector<torch::Tensor> masks;   ///< per image (H,W) uint8 0/1
  std::vector<float> scores;
  std::vector<int> labels;
  std::vector<bool> has_mask;
  std::vector<SampleInfo> info;

  void add(const Batch& batch, const Prediction& p);
};

/// Computes the configured metrics, writes per_image.csv and overlays into `dir` (when not
/// empty), and returns the metrics.json content (values + `protocol`).
nlohmann::json evaluate_and_report(const EvalInputs& in, const EvalOptions& options, const std::filesystem::path& dir,
                                   const nlohmann::json& protocol);

}  // namespace adfw
