#include "adfw/engine/predictor.hpp"

#include <algorithm>
#include <fstream>

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include "adfw/core/checkpoint.hpp"
#include "adfw/core/config.hpp"
#include "adfw/core/error.hpp"
#include "adfw/core/plugin.hpp"
#include "adfw/core/threads.hpp"
#include "adfw/data/transforms.hpp"
#include "adfw/engine/experiment.hpp"

namespace fs = std::filesystem;

namespace adfw {

struct Predictor::Impl {
  fs::path folder;
  std::string method_name;
  nlohmann::json metrics;
  std::unique_ptr<Method> method;
  std::unique_ptr<Transform> transform;
  RunContext ctx;
};

namespace {

fs::path require_file(const fs::path& folder, const char* name, const char* what) {
  const fs::path f = folder / name;
  if (!fs::is_regular_file(f))
    throw Error("run folder " + folder.string() + " has no " + name + " (" + what + ")");
  return f;
}

/// The model-resolution map placed back into the input image's frame: undo the centre crop
/// (outside the crop window: 0), then the resize.
cv::Mat to_image_frame(const cv::Mat& model_map, const TransformOptions& t, int height, int width) {
  int rh = height, rw = width;
  if (!t.resize.empty()) {
    rh = t.resize.height;
    rw = t.resize.width;
  }
  cv::Mat canvas;
  if (!t.center_crop.empty()) {
    canvas = cv::Mat::zeros(rh, rw, CV_32F);
    // The same rounding as Transform::resize_crop (torchvision's CenterCrop).
    const int y0 = static_cast<int>(std::lround((rh - t.center_crop.height) / 2.0));
    const int x0 = static_cast<int>(std::lround((rw - t.center_crop.width) / 2.0));
    model_map.copyTo(canvas(cv::Rect(x0, y0, model_map.cols, model_map.rows)));
  } else {
    canvas = model_map;
  }
  if (canvas.rows == height && canvas.cols == width) return canvas.clone();
  cv::Mat out;
  cv::resize(canvas, out, cv::Size(width, height), 0, 0, cv::INTER_LINEAR);
  return out;
}

}  // namespace

Predictor::Predictor(const fs::path& run_folder, PredictorOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.folder = run_folder;
  if (!fs::is_directory(run_folder)) throw Error("run folder " + run_folder.string() + " does not exist");
  const fs::path config = require_file(run_folder, "config.toml", "the run's resolved configuration");
  const fs::path model = require_file(run_folder, "model.safetensors",
                                      "the fitted model; runs write it after fitting: rerun or resume the run");
  // The built-in components (and $ADFW_PLUGIN_PATH's) register when their plugins load; a
  // program that links adfw has not loaded them yet.
  load_all_plugins();
  const ExperimentOptions e = read_experiment(load_config(config));
  m.method_name = e.method.type();
  if (const fs::path f = run_folder / "metrics.json"; fs::is_regular_file(f)) {
    std::ifstream in(f);
    try {
      m.metrics = nlohmann::json::parse(in);
    } catch (const std::exception& ex) {
      throw Error(f.string() + ": not valid JSON (" + ex.what() + ")");
    }
  }
  if (options.threads >= 0) configure_threads(options.threads);
  m.ctx.device = resolve_device(options.device.empty() ? e.device : options.device);
  m.ctx.seeds.experiment = static_cast<uint64_t>(e.seed);
  m.ctx.dir = run_folder;
  m.method = e.method.make();
  TransformOptions t = e.input;
  if (t.normalize == "auto") {
    const std::string wanted = m.method->normalization();
    t.normalize = wanted.empty() ? "imagenet" : wanted;
  }
  m.transform = std::make_unique<Transform>(t);
  m.method->load_state(load_state_dict(model), m.ctx, model.string());
}

Predictor::~Predictor() = default;

const fs::path& Predictor::run_folder() const { return impl_->folder; }
const std::string& Predictor::method() const { return impl_->method_name; }
const nlohmann::json& Predictor::metrics() const { return impl_->metrics; }

PredictResult Predictor::operator()(const cv::Mat& image) { return (*this)(std::vector<cv::Mat>{image}).front(); }

std::vector<PredictResult> Predictor::operator()(const std::vector<cv::Mat>& images) {
  std::lock_guard<std::mutex> lock(mutex_);
  Impl& m = *impl_;
  std::vector<PredictResult> out(images.size());
  if (images.empty()) return out;
  std::vector<Sample> samples;
  samples.reserve(images.size());
  for (std::size_t i = 0; i < images.size(); ++i) {
    const std::string label = "#" + std::to_string(i) + " of the batch";
    DecodedImage d = m.transform->from_image(images[i], label);
    m.transform->resize_crop(d);
    SampleInfo info;
    info.path = label;
    Sample s = m.transform->to_sample(d, info);
    m.transform->normalize(s);
    samples.push_back(std::move(s));
  }
  // Images of different sizes (no resize in the run's input pipeline) go one at a time.
  auto same_size = [&](const Sample& s) { return s.image.sizes() == samples.front().image.sizes(); };
  const bool one_batch = std::all_of(samples.begin(), samples.end(), same_size);
  std::vector<std::vector<std::size_t>> groups;
  if (one_batch) {
    groups.emplace_back();
    for (std::size_t i = 0; i < samples.size(); ++i) groups.back().push_back(i);
  } else {
    for (std::size_t i = 0; i < samples.size(); ++i) groups.push_back({i});
  }
  torch::NoGradGuard ng;
  for (const auto& g : groups) {
    std::vector<Sample> part;
    for (std::size_t i : g) part.push_back(samples[i]);
    const Batch b = collate(part);
    const Prediction p = m.method->predict(b, m.ctx);
    const torch::Tensor maps = p.maps.to(torch::kCPU, torch::kFloat32).contiguous();
    const torch::Tensor scores = p.scores.to(torch::kCPU, torch::kFloat32).contiguous();
    for (std::size_t k = 0; k < g.size(); ++k) {
      const torch::Tensor mk = maps[static_cast<int64_t>(k)][0].contiguous();
      cv::Mat model_map(static_cast<int>(mk.size(0)), static_cast<int>(mk.size(1)), CV_32F, mk.data_ptr<float>());
      PredictResult& r = out[g[k]];
      r.model_map = model_map.clone();
      r.score = scores[static_cast<int64_t>(k)].item<float>();
      r.map = to_image_frame(r.model_map, m.transform->options(), images[g[k]].rows, images[g[k]].cols);
    }
  }
  return out;
}

}  // namespace adfw
