#include "adfw/engine/evaluate.hpp"

#include "adfw/core/error.hpp"
#include "adfw/core/log.hpp"
#include "adfw/core/safetensors.hpp"
#include "adfw/engine/experiment.hpp"
#include "adfw/metric/evaluator.hpp"

namespace fs = std::filesystem;

namespace adfw {

namespace {

// The layout `adfw eval-maps` reads back, so a run's maps can be re-scored or analysed
// elsewhere without rerunning the method.
void write_maps_file(const fs::path& file, const EvalInput& ei) {
  const int64_t n = ei.maps.size(0), h = ei.maps.size(1), w = ei.maps.size(2);
  const torch::Tensor maps = ei.maps.contiguous();
  const torch::Tensor masks = ei.masks.to(torch::kUInt8).contiguous();
  const torch::Tensor labels = ei.labels.to(torch::kInt64).contiguous();
  const torch::Tensor scores = ei.image_scores.to(torch::kFloat32).contiguous();
  const auto count = static_cast<std::size_t>(n * h * w);
  std::vector<safetensors::TensorData> t;
  t.push_back(safetensors::make_tensor("anomaly_maps", {n, h, w}, maps.data_ptr<float>(), count));
  t.push_back(safetensors::make_tensor("masks", {n, h, w}, masks.data_ptr<uint8_t>(), count));
  t.push_back(safetensors::make_tensor("labels", {n}, labels.data_ptr<int64_t>(), static_cast<std::size_t>(n)));
  t.push_back(safetensors::make_tensor("image_scores", {n}, scores.data_ptr<float>(), static_cast<std::size_t>(n)));
  safetensors::write(file, t,
                     {{"paths", nlohmann::json(ei.paths).dump()}, {"defect_types", nlohmann::json(ei.defect_types).dump()}});
}

}  // namespace

void EvalInputs::add(const Batch& batch, const Prediction& p) {
  const int64_t n = batch.size();
  if (!p.maps.defined() || p.maps.dim() != 4 || p.maps.size(0) != n || p.maps.size(1) != 1)
    throw Error("method returned anomaly maps of an unexpected shape; expected (N,1,H,W) with N = " + std::to_string(n));
  if (!p.scores.defined() || p.scores.numel() != n)
    throw Error("method returned " + std::to_string(p.scores.defined() ? p.scores.numel() : 0) + " image scores for " +
                std::to_string(n) + " images");
  torch::Tensor maps = p.maps.detach().to(torch::kCPU, torch::kFloat32);
  torch::Tensor masks = batch.masks.to(torch::kCPU);
  if (maps.size(2) != masks.size(2) || maps.size(3) != masks.size(3))
    throw Error("method returned maps of " + std::to_string(maps.size(2)) + "x" + std::to_string(maps.size(3)) +
                " for inputs of " + std::to_string(masks.size(2)) + "x" + std::to_string(masks.size(3)) +
                "; maps must be at the input resolution");
  torch::Tensor scores = p.scores.detach().to(torch::kCPU, torch::kFloat32).reshape({n});
  for (int64_t i = 0; i < n; ++i) {
    this->maps.push_back(maps[i][0].contiguous());
    this->masks.push_back((masks[i][0] > 0.5).to(torch::kUInt8).contiguous());
    this->scores.push_back(scores[i].item<float>());
    labels.push_back(static_cast<int>(batch.labels[i].item<int64_t>()));
    has_mask.push_back(batch.has_mask[i].item<bool>());
    info.push_back(batch.info[static_cast<std::size_t>(i)]);
  }
}

nlohmann::json evaluate_and_report(const EvalInputs& in, const EvalOptions& options, const fs::path& dir,
                                   const nlohmann::json& protocol) {
  if (in.maps.empty()) throw Error("nothing to evaluate: the test split is empty");
  for (std::size_t i = 1; i < in.maps.size(); ++i)
    if (!in.maps[i].sizes().equals(in.maps[0].sizes()))
      throw ConfigError("test images have different sizes after the input pipeline (" + in.info[0].path + " vs " +
                        in.info[i].path + "); set input.resize so every map has the same size");
  EvalInput ei;
  ei.maps = torch::stack(in.maps);
  ei.masks = torch::stack(in.masks);
  ei.labels = torch::tensor(std::vector<int64_t>(in.labels.begin(), in.labels.end()), torch::kInt64);
  ei.image_scores = torch::tensor(in.scores, torch::kFloat32);
  for (const auto& s : in.info) {
    ei.defect_types.push_back(s.defect_type);
    ei.paths.push_back(s.path);
  }
  EvalOptions eo = options;
  nlohmann::json proto = protocol;
  // Pixel metrics need a mask for every anomalous image; a set with image-label-only anomalies
  // is scored at image level only (and the report says so).
  bool all_masked = true;
  for (std::size_t i = 0; i < in.labels.size(); ++i)
    if (in.labels[i] == 1 && !in.has_mask[i]) all_masked = false;
  if (!all_masked) {
    std::vector<std::string> kept;
    for (const auto& m : eo.metrics)
      if (m.rfind("image_", 0) == 0) kept.push_back(m);
    if (kept.size() != eo.metrics.size()) {
      log_warn("some anomalous test images have no pixel mask: pixel metrics are skipped");
      proto["pixel_metrics_skipped"] = "anomalous test images without pixel masks";
    }
    eo.metrics = kept;
    ei.maps = torch::Tensor();
    ei.masks = torch::Tensor();
  }
  EvalResult r = evaluate(ei, eo);
  nlohmann::json out = r.to_json();
  out["protocol"] = proto;
  if (!dir.empty()) {
    write_per_image_csv(dir / "per_image.csv", ei, r);
    if (options.overlays > 0 && ei.maps.defined()) {
      OverlayOptions oo;
      oo.count = options.overlays;
      write_overlays(dir / "maps", ei, r, oo);
    }
    if (options.save_maps && ei.maps.defined()) write_maps_file(dir / "maps.safetensors", ei);
  }
  return out;
}

}  // namespace adfw
