// A fitted model from a run folder, as a function from images to anomaly maps and scores.
//
//   #include <adfw/engine/predictor.hpp>
//   adfw::Predictor p("runs/draem/20261205-101500-ab12");
//   adfw::PredictResult r = p(cv::imread("part.png"));   // r.score, r.map (CV_32F, image size)
//
// The predictor rebuilds the method from the run's config.toml and loads model.safetensors
// (Method::load_state); nothing is fitted again. Paths inside the config (backbone weights) are
// read as the run read them, relative to the working directory.
//
// Thread safety: calls on one Predictor are serialised by a mutex, so concurrent calls are safe but
// do not run in parallel (LibTorch already uses every configured thread inside one call). For
// parallel pipelines, make one Predictor per worker.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

namespace adfw {

struct PredictorOptions {
  std::string device = "";  ///< "" = the run's device setting; "cpu", "cuda" or "auto"
  int threads = -1;         ///< intra-op threads; -1 = leave the process setting as it is, 0 = all cores
};

struct PredictResult {
  float score = 0;  ///< image score (larger = more anomalous), as the run's metrics ranked them
  /// CV_32F anomaly map at the size of the image passed in. With a centre crop in the run's input
  /// pipeline, the map covers the crop's window; pixels outside it are 0.
  cv::Mat map;
  /// CV_32F anomaly map at the model's input resolution (after resize and crop), as the run's
  /// evaluation saw it.
  cv::Mat model_map;
};

class Predictor {
 public:
  /// Loads `run_folder`/config.toml and `run_folder`/model.safetensors. Throws adfw::Error naming
  /// the folder and the missing file, or the state entries that do not match the config.
  explicit Predictor(const std::filesystem::path& run_folder, PredictorOptions options = {});
  ~Predictor();
  Predictor(const Predictor&) = delete;
  Predictor& operator=(const Predictor&) = delete;

  /// One image: 8- or 16-bit, grey, BGR or BGRA (as cv::imread returns it). Throws adfw::Error for
  /// an empty image or another channel count.
  PredictResult operator()(const cv::Mat& image);
  /// Several images in one forward pass (they may differ in size: each is resized as the run's
  /// input pipeline says).
  std::vector<PredictResult> operator()(const std::vector<cv::Mat>& images);

  const std::filesystem::path& run_folder() const;
  /// The method's registered name ("draem", "patchcore", ...).
  const std::string& method() const;
  /// The run's metrics.json, or null when the run has none (e.g. it was interrupted in testing).
  const nlohmann::json& metrics() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::mutex mutex_;
};

}  // namespace adfw
